import type { CompactRequirements } from '../src/domain/requirements.js';

/**
 * What this node has and what its running jobs hold. Every placement decision reads from here
 * and every claim reserves here first, so the agent never promises the same MiB twice.
 */

export interface Device {
  readonly index: number;
  readonly uuid: string | null;
  readonly name: string;
  readonly family: string;
  readonly memoryTotal: number;
}

/** What nvidia-smi (or the simulation) last said about a device. */
export interface DeviceLive {
  readonly index: number;
  readonly memoryFree: number;
  readonly memoryUsed: number | null;
  readonly utilization: number | null;
  readonly temperature: number | null;
  readonly healthy: boolean;
  readonly error: string | null;
}

export interface Placement {
  /** Device indices, distinct, all of one GPU family. */
  readonly gpuIndices: readonly number[];
  readonly gpuMemoryMiB: number;
  readonly cpuCores: number;
  readonly memoryMiB: number;
}

export interface HostShape {
  readonly cpuCores: number;
  readonly memoryMiB: number;
  readonly maxJobs: number;
  readonly reservedCpuCores: number;
  readonly reservedMemoryMiB: number;
}

/** Free resources in the form the claim script takes (see claim-job.lua). */
export interface ClaimResources {
  /** [family, MiB free] per healthy device. */
  readonly gpus: [string, number][];
  readonly cpu: number;
  readonly ram: number;
  readonly slots: number;
}

export class ResourceBook {
  private readonly devices: ReadonlyMap<number, Device>;
  private live = new Map<number, DeviceLive>();
  private readonly jobs = new Map<string, Placement>();

  constructor(
    devices: readonly Device[],
    private readonly host: HostShape,
  ) {
    this.devices = new Map(devices.map((d) => [d.index, d]));
  }

  get deviceList(): Device[] {
    return [...this.devices.values()];
  }

  updateLive(live: readonly DeviceLive[]): void {
    this.live = new Map(live.map((l) => [l.index, l]));
  }

  liveOf(index: number): DeviceLive | undefined {
    return this.live.get(index);
  }

  isHealthy(index: number): boolean {
    return this.live.get(index)?.healthy ?? true;
  }

  reservedOn(index: number): number {
    let sum = 0;
    for (const p of this.jobs.values()) if (p.gpuIndices.includes(index)) sum += p.gpuMemoryMiB;
    return sum;
  }

  /**
   * MiB a new job can have on a device: what is left of its total after reservations, and never
   * more than the driver says is free (another process, or a job using more than it declared).
   */
  freeOn(index: number): number {
    const d = this.devices.get(index);
    if (d === undefined || !this.isHealthy(index)) return 0;
    const reported = this.live.get(index)?.memoryFree ?? d.memoryTotal;
    return Math.max(0, Math.min(reported, d.memoryTotal - this.reservedOn(index)));
  }

  get cpuFree(): number {
    let used = this.host.reservedCpuCores;
    for (const p of this.jobs.values()) used += p.cpuCores;
    return Math.max(0, this.host.cpuCores - used);
  }

  get memoryFree(): number {
    let used = this.host.reservedMemoryMiB;
    for (const p of this.jobs.values()) used += p.memoryMiB;
    return Math.max(0, this.host.memoryMiB - used);
  }

  get slotsFree(): number {
    return Math.max(0, this.host.maxJobs - this.jobs.size);
  }

  get runningJobIds(): string[] {
    return [...this.jobs.keys()];
  }

  placementOf(jobId: string): Placement | undefined {
    return this.jobs.get(jobId);
  }

  /**
   * Where a job would run now: for each GPU family it accepts, the devices with the least free
   * memory that still hold it (best fit, so large devices stay free for large jobs), and of the
   * families the one that strands the least memory. A reason instead when it does not fit.
   */
  place(req: CompactRequirements): Placement | { reason: string } {
    if (this.slotsFree === 0) return { reason: `all ${this.host.maxJobs} job slots are taken` };
    if (req.cpuCores > this.cpuFree) return { reason: `needs ${req.cpuCores} CPU cores, ${this.cpuFree} free` };
    if (req.memoryMiB > this.memoryFree) return { reason: `needs ${req.memoryMiB} MiB RAM, ${this.memoryFree} free` };
    const base = { gpuMemoryMiB: req.gpuMemoryMiB, cpuCores: req.cpuCores, memoryMiB: req.memoryMiB };
    if (req.gpuCount === 0) return { ...base, gpuIndices: [] };

    const families = req.families ?? [...new Set(this.deviceList.map((d) => d.family))];
    let best: { indices: number[]; stranded: number } | null = null;
    for (const family of families) {
      const fitting = this.deviceList
        .filter((d) => d.family === family && this.freeOn(d.index) >= req.gpuMemoryMiB)
        .map((d) => ({ index: d.index, free: this.freeOn(d.index) }))
        .sort((a, b) => a.free - b.free || a.index - b.index)
        .slice(0, req.gpuCount);
      if (fitting.length < req.gpuCount) continue;
      const stranded = fitting.reduce((s, g) => s + g.free - req.gpuMemoryMiB, 0);
      if (best === null || stranded < best.stranded) best = { indices: fitting.map((g) => g.index).sort((a, b) => a - b), stranded };
    }
    if (best === null) {
      const which = req.families === null ? 'GPUs' : `${req.families.join('|')} GPUs`;
      return { reason: `needs ${req.gpuCount} ${which} with ${req.gpuMemoryMiB} MiB free each` };
    }
    return { ...base, gpuIndices: best.indices };
  }

  /** Would the job fit if nothing else ran here? (Used to decide whether to hold room for it.) */
  couldEverFit(req: CompactRequirements): boolean {
    if (req.cpuCores > this.host.cpuCores - this.host.reservedCpuCores) return false;
    if (req.memoryMiB > this.host.memoryMiB - this.host.reservedMemoryMiB) return false;
    if (req.gpuCount === 0) return true;
    const families = req.families ?? [...new Set(this.deviceList.map((d) => d.family))];
    return families.some(
      (f) =>
        this.deviceList.filter((d) => d.family === f && this.isHealthy(d.index) && d.memoryTotal >= req.gpuMemoryMiB).length >=
        req.gpuCount,
    );
  }

  reserve(jobId: string, placement: Placement): void {
    this.jobs.set(jobId, placement);
  }

  release(jobId: string): void {
    this.jobs.delete(jobId);
  }

  forClaim(): ClaimResources {
    return {
      gpus: this.deviceList.filter((d) => this.isHealthy(d.index)).map((d) => [d.family, this.freeOn(d.index)]),
      cpu: this.cpuFree,
      ram: this.memoryFree,
      slots: this.slotsFree,
    };
  }

  /** The same, as if the node were empty: what it could ever take. */
  capacityForClaim(): ClaimResources {
    return {
      gpus: this.deviceList.filter((d) => this.isHealthy(d.index)).map((d) => [d.family, d.memoryTotal]),
      cpu: Math.max(0, this.host.cpuCores - this.host.reservedCpuCores),
      ram: Math.max(0, this.host.memoryMiB - this.host.reservedMemoryMiB),
      slots: this.host.maxJobs,
    };
  }
}
