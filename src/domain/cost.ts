/**
 * What a job costs. A node has prices per GPU-hour, per CPU-core-hour and per GiB-hour of RAM; a
 * job pays for what it holds while its container runs. On a GPU it shares, a job pays for the
 * share of the GPU's memory it declared (a job that declared none holds the whole GPU).
 */
export interface Prices {
  readonly price_per_gpu_hour: number;
  readonly price_per_cpu_core_hour: number;
  readonly price_per_gib_ram_hour: number;
}

export interface Held {
  readonly gpuMemoryMiB: number;
  readonly cpuCores: number;
  readonly memoryMiB: number;
}

/** The share of one GPU a job pays for. */
export function gpuShare(declaredMiB: number, deviceTotalMiB: number): number {
  if (declaredMiB <= 0 || deviceTotalMiB <= 0) return 1;
  return Math.min(1, declaredMiB / deviceTotalMiB);
}

/** Cost per hour of a job holding `held` on devices of these totals (MiB), at these prices. */
export function hourlyRate(p: Prices, held: Held, deviceTotalsMiB: readonly number[]): number {
  let gpu = 0;
  for (const total of deviceTotalsMiB) gpu += p.price_per_gpu_hour * gpuShare(held.gpuMemoryMiB, total);
  return roundMoney(gpu + held.cpuCores * p.price_per_cpu_core_hour + (held.memoryMiB / 1024) * p.price_per_gib_ram_hour);
}

/** GPU-hours a job holds for `ms`: its share of each GPU, summed. */
export function gpuHours(held: Held, deviceTotalsMiB: readonly number[], ms: number): number {
  let shares = 0;
  for (const total of deviceTotalsMiB) shares += gpuShare(held.gpuMemoryMiB, total);
  return (shares * ms) / 3_600_000;
}

/** Money is kept to a millionth of the currency unit. */
export function roundMoney(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** What an attempt that ran `ranMs` cost, at the rate and GPU share fixed when it was placed. */
export function attemptCost(
  f: { readonly hourly_rate?: string; readonly gpu_share?: string },
  ranMs: number,
): { cost: number; gpuHours: number } {
  const rate = Number(f.hourly_rate ?? 0);
  const share = Number(f.gpu_share ?? 0);
  return { cost: roundMoney(rate * (ranMs / 3_600_000)), gpuHours: (share * ranMs) / 3_600_000 };
}
