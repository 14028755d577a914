import type { HeartbeatBody, NodeRegisterBody } from '../src/domain/schemas/node.js';

/** A synthetic GPU fleet for benchmarks: a seeded mix of common cards and node shapes. */
export const GPU_MODELS = [
  { name: 'NVIDIA H100 80GB HBM3', mib: 81559 },
  { name: 'NVIDIA A100-SXM4-80GB', mib: 81920 },
  { name: 'NVIDIA A100-PCIE-40GB', mib: 40960 },
  { name: 'NVIDIA GeForce RTX 4090', mib: 24564 },
  { name: 'NVIDIA L40S', mib: 46068 },
  { name: 'NVIDIA H200', mib: 143771 },
] as const;

export function seededRandom(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

export interface SyntheticNode {
  register: NodeRegisterBody;
  beat: HeartbeatBody;
}

export function syntheticNode(i: number, rand: () => number, namePrefix = 'bench'): SyntheticNode {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const model = GPU_MODELS[i % GPU_MODELS.length] ?? GPU_MODELS[0];
  const count = pick([1, 2, 4, 8, 8]);
  const cpu = pick([16, 32, 64, 128]);
  const mem = pick([65536, 262144, 1048576]);
  const max = count;
  return {
    register: {
      node_name: `${namePrefix}-${i}`,
      hostname: `${namePrefix}-${i}.cluster.local`,
      gpu_count: count,
      gpu_type: model.name,
      gpu_memory_total: model.mib,
      cpu_cores: cpu,
      memory_total: mem,
      max_concurrent_jobs: max,
      price_per_gpu_hour: 0,
      price_per_cpu_core_hour: 0,
      price_per_gib_ram_hour: 0,
      simulated_gpus: true,
    },
    beat: {
      cpu_cores_available: Math.floor(rand() * (cpu + 1)),
      memory_available: Math.floor(rand() * (mem + 1)),
      current_jobs: Math.floor(rand() * max),
      health_status: 'healthy',
      gpus: Array.from({ length: count }, (_, index) => ({ index, memory_free: Math.floor(rand() * (model.mib + 1)), healthy: true })),
    },
  };
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

export const ms = (n: number) => `${n.toFixed(2)} ms`;
