import { gpuFamilies } from './gpu.js';
import type { JobRequirements } from './schemas/job.js';

/**
 * A job's requirements as one short string at the head of its BullMQ payload, e.g.
 * `g=2;m=40000;f=h100,h200;c=8;r=65536`. The claim script reads it with a pattern match
 * instead of decoding the whole payload (whose input_data may be large), so agents can scan
 * many waiting jobs cheaply. `f=*` means any GPU family.
 */
export function compactRequirements(r: JobRequirements): string {
  const families = r.gpu_type === null ? '*' : gpuFamilies(r.gpu_type).join(',');
  return `g=${r.gpu_count};m=${r.gpu_memory_mib};f=${families};c=${r.cpu_cores};r=${r.memory_mib}`;
}

export interface CompactRequirements {
  readonly gpuCount: number;
  readonly gpuMemoryMiB: number;
  /** null: any family. */
  readonly families: readonly string[] | null;
  readonly cpuCores: number;
  readonly memoryMiB: number;
}

export function parseCompactRequirements(s: string): CompactRequirements | null {
  const m = /^g=(\d+);m=(\d+);f=([^;]+);c=([\d.]+);r=(\d+)$/.exec(s);
  if (!m?.[1] || !m[2] || !m[3] || !m[4] || !m[5]) return null;
  return {
    gpuCount: Number(m[1]),
    gpuMemoryMiB: Number(m[2]),
    families: m[3] === '*' ? null : m[3].split(','),
    cpuCores: Number(m[4]),
    memoryMiB: Number(m[5]),
  };
}
