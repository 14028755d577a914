import type { Logger } from 'pino';
import { queryComputeApps } from './discovery/nvidia-smi.js';
import type { Executor } from './executor/types.js';
import type { ResourceBook } from './resources.js';

export interface MemoryMargin {
  /** Allowed above what a job declared, in percent of it ... */
  readonly percent: number;
  /** ... plus this much, for allocator slack. */
  readonly mib: number;
}

/** The most a job that declared `declaredMiB` per GPU may use on one before it is stopped. */
export function memoryLimit(declaredMiB: number, margin: MemoryMargin): number {
  return declaredMiB * (1 + margin.percent / 100) + margin.mib;
}

/**
 * Watches what each running job really uses on its GPUs (`nvidia-smi --query-compute-apps`,
 * matched to the job's processes) and names the jobs over what they declared plus the margin, so
 * one tenant cannot crowd out another on a shared GPU.
 */
export class GpuMemoryWatch {
  constructor(
    private readonly nvidiaSmi: string,
    private readonly executor: Executor,
    private readonly resources: ResourceBook,
    private readonly margin: MemoryMargin,
    private readonly logger: Logger,
  ) {}

  /** Jobs over their declared GPU memory, with what they used and may use. */
  async overLimit(jobIds: readonly string[]): Promise<{ jobId: string; device: number; usedMiB: number; limitMiB: number }[]> {
    const watched = jobIds
      .map((jobId) => ({ jobId, p: this.resources.placementOf(jobId) }))
      .filter((j) => j.p !== undefined && j.p.gpuIndices.length > 0 && j.p.gpuMemoryMiB > 0);
    if (watched.length === 0) return [];
    const q = await queryComputeApps(this.nvidiaSmi);
    if (q.kind !== 'ok') {
      if (q.kind === 'error') this.logger.debug({ reason: q.reason }, 'could not read per-process GPU memory');
      return [];
    }
    const indexOf = new Map(this.resources.deviceList.filter((d) => d.uuid !== null).map((d) => [d.uuid, d.index]));
    const over: { jobId: string; device: number; usedMiB: number; limitMiB: number }[] = [];
    for (const { jobId, p } of watched) {
      if (p === undefined) continue;
      const pids = new Set(await this.executor.processIds(jobId));
      const used = new Map<number, number>();
      for (const app of q.apps) {
        const device = indexOf.get(app.gpu_uuid);
        if (device === undefined || !pids.has(app.pid)) continue;
        used.set(device, (used.get(device) ?? 0) + app.used_memory);
      }
      const limit = memoryLimit(p.gpuMemoryMiB, this.margin);
      for (const device of p.gpuIndices) {
        const u = used.get(device) ?? 0;
        if (u > limit) over.push({ jobId, device, usedMiB: u, limitMiB: Math.floor(limit) });
      }
    }
    return over;
  }
}
