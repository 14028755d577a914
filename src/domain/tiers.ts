/**
 * Tiers partition the job queues by GPU memory per GPU. A job goes to the smallest tier that
 * holds its requirement; each tier is its own BullMQ queue with its own Redis hash tag.
 */

/** Default upper bounds in MiB: 8, 16, 24, 48, 80 and 141 GiB (an H200 reports 143771 MiB). */
export const DEFAULT_TIER_BOUNDS_MIB = [8192, 16384, 24576, 49152, 81920, 144384] as const;

export const TierKind = {
  Cpu: 'cpu',
  Gpu: 'gpu',
} as const;
export type TierKind = (typeof TierKind)[keyof typeof TierKind];

export const CPU_TIER_NAME = 'cpu';
/** Every GPU tier's name starts with this (Redis ACL key patterns rely on it). */
export const GPU_TIER_PREFIX = 'gpu-';

export interface Tier {
  readonly name: string;
  readonly kind: TierKind;
  /** Largest GPU memory per GPU (MiB) a job in this tier may ask for; 0 for the CPU tier. */
  readonly maxGpuMemoryMiB: number;
}

/** `gpu-24g` for whole GiB, `gpu-20000m` otherwise: readable in Bull Board and in Redis keys. */
export function gpuTierName(boundMiB: number): string {
  return boundMiB % 1024 === 0 ? `${GPU_TIER_PREFIX}${boundMiB / 1024}g` : `${GPU_TIER_PREFIX}${boundMiB}m`;
}

export class TierTable {
  readonly all: readonly Tier[];
  private readonly byName: ReadonlyMap<string, Tier>;

  constructor(boundsMiB: readonly number[]) {
    const gpu = [...boundsMiB].sort((a, b) => a - b).map((b): Tier => ({ name: gpuTierName(b), kind: TierKind.Gpu, maxGpuMemoryMiB: b }));
    this.all = [{ name: CPU_TIER_NAME, kind: TierKind.Cpu, maxGpuMemoryMiB: 0 }, ...gpu];
    this.byName = new Map(this.all.map((t) => [t.name, t]));
  }

  get gpuTiers(): readonly Tier[] {
    return this.all.filter((t) => t.kind === TierKind.Gpu);
  }

  /** The largest GPU memory any tier can hold. */
  get maxGpuMemoryMiB(): number {
    return this.all.at(-1)?.maxGpuMemoryMiB ?? 0;
  }

  get(name: string): Tier | undefined {
    return this.byName.get(name);
  }

  /**
   * The tier for a job: CPU-only jobs go to `cpu`; a GPU job to the smallest tier whose bound
   * holds its memory per GPU. Undefined when no tier is large enough.
   */
  pick(gpuCount: number, gpuMemoryMiB: number): Tier | undefined {
    if (gpuCount === 0) return this.byName.get(CPU_TIER_NAME);
    return this.gpuTiers.find((t) => gpuMemoryMiB <= t.maxGpuMemoryMiB);
  }

  /** Tiers whose jobs could fit a GPU with `freeMiB` free: every GPU tier whose lower bound is below it. */
  tiersFitting(freeMiB: number): Tier[] {
    const out: Tier[] = [];
    let lower = 0;
    for (const t of this.gpuTiers) {
      if (lower <= freeMiB) out.push(t);
      lower = t.maxGpuMemoryMiB + 1;
    }
    return out;
  }
}

/** Parses and checks tier bounds: positive, strictly ascending integers. */
export function parseTierBounds(text: string): number[] | string {
  const parts = text.split(',').map((s) => s.trim());
  const bounds: number[] = [];
  for (const p of parts) {
    if (!/^\d+$/.test(p)) return `"${p}" is not a whole number of MiB`;
    const n = Number(p);
    if (n <= 0) return 'bounds must be positive';
    const prev = bounds.at(-1);
    if (prev !== undefined && n <= prev) return 'bounds must be strictly ascending';
    bounds.push(n);
  }
  if (bounds.length === 0) return 'at least one bound is needed';
  return bounds;
}
