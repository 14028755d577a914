import type { CompactRequirements } from '../src/domain/requirements.js';

/**
 * What this node has and what its running jobs hold. Every placement decision reads from here
 * and every claim reserves here first, so the agent never promises the same MiB twice. A node
 * may also hold devices back for a starving job (a reservation): other jobs get them only when
 * their time limit ends before the held job could start anyway (EASY backfill, as in Slurm).
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
  /**
   * How long past its time limit, counted from its claim, a job may still hold its resources: its
   * image pull (the limit counts from container start), the stop grace period, the last report.
   * A job whose pull takes longer can hold them past its deadline by the difference.
   */
  readonly endAllowanceMs: number;
}

/** Devices, cores, RAM and one job slot held back for one starving job. */
export interface Hold {
  readonly jobId: string;
  readonly devices: readonly number[];
  /** What the held job needs on each held device. */
  readonly gpuMemoryMiB: number;
  readonly cpuCores: number;
  readonly memoryMiB: number;
}

/**
 * [family, MiB free, MiB total] per device a job may get; a held device adds the time (ms since
 * the epoch) by which only jobs that will have ended may use it.
 */
export type ClaimDevice = [family: string, free: number, total: number, backfillUntil?: number];

/** Free resources in the form the scan script takes. */
export interface ClaimResources {
  readonly gpus: ClaimDevice[];
  readonly cpu: number;
  readonly ram: number;
  readonly slots: number;
}

export class ResourceBook {
  private readonly devices: ReadonlyMap<number, Device>;
  private live = new Map<number, DeviceLive>();
  private readonly jobs = new Map<string, Placement>();
  /** When each running job will have been stopped at the latest (start plus its time limit). */
  private readonly deadlines = new Map<string, number>();
  private held: Hold | null = null;

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

  private usedCpu(): number {
    let used = this.host.reservedCpuCores;
    for (const p of this.jobs.values()) used += p.cpuCores;
    return used;
  }

  private usedMemory(): number {
    let used = this.host.reservedMemoryMiB;
    for (const p of this.jobs.values()) used += p.memoryMiB;
    return used;
  }

  /** Free cores for any job (what a heartbeat reports). */
  get cpuFree(): number {
    return Math.max(0, this.host.cpuCores - this.usedCpu());
  }

  get memoryFree(): number {
    return Math.max(0, this.host.memoryMiB - this.usedMemory());
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

  get hold(): Hold | null {
    return this.held;
  }

  /**
   * The latest time the held job can start (its shadow time): when, with every running job
   * stopped at its deadline, each held device has the memory it needs and the node has the cores,
   * RAM and a job slot. Null without a hold; another hold (one being planned) may be asked about.
   */
  shadowTime(now = Date.now(), hold: Hold | null = this.held): number | null {
    if (hold === null) return null;
    const running = [...this.jobs].map(([id, p]) => ({ p, at: this.deadlines.get(id) ?? Number.POSITIVE_INFINITY }));
    const cpu = this.host.cpuCores - this.host.reservedCpuCores;
    const ram = this.host.memoryMiB - this.host.reservedMemoryMiB;
    return Math.max(
      now,
      ...hold.devices.map((index) => this.roomAt(index, hold.gpuMemoryMiB, now)),
      freedBy(running, (p) => p.cpuCores, cpu, hold.cpuCores, now),
      freedBy(running, (p) => p.memoryMiB, ram, hold.memoryMiB, now),
      freedBy(running, () => 1, this.host.maxJobs, 1, now),
    );
  }

  /** When a device will have `mib` free at the latest, its running jobs stopped at their deadlines. */
  private roomAt(index: number, mib: number, now: number): number {
    const d = this.devices.get(index);
    if (d === undefined || d.memoryTotal < mib || !this.isHealthy(index)) return Number.POSITIVE_INFINITY;
    let free = d.memoryTotal - this.reservedOn(index);
    if (free >= mib) return now;
    const ending = [...this.jobs]
      .filter(([, p]) => p.gpuIndices.includes(index))
      .map(([id, p]) => ({ at: this.deadlines.get(id) ?? Number.POSITIVE_INFINITY, mib: p.gpuMemoryMiB }))
      .sort((a, b) => a.at - b.at);
    for (const e of ending) {
      free += e.mib;
      if (free >= mib) return e.at;
    }
    return Number.POSITIVE_INFINITY;
  }

  /** When a job claimed now with this time limit will have let go of its resources at the latest. */
  deadlineFor(req: CompactRequirements | null, now = Date.now()): number {
    return req?.timeoutSeconds != null ? now + req.timeoutSeconds * 1000 + this.host.endAllowanceMs : Number.POSITIVE_INFINITY;
  }

  /** Whether a job with this time limit may use held devices: it will have ended by the shadow time. */
  private mayBackfill(req: CompactRequirements, shadow: number | null, now: number): boolean {
    return shadow !== null && Number.isFinite(shadow) && this.deadlineFor(req, now) <= shadow;
  }

  /** Job slots for jobs other than the held one. */
  private get slotsForOthers(): number {
    return Math.max(0, this.slotsFree - (this.held === null ? 0 : 1));
  }

  /**
   * Where a job would run now: for each GPU family it accepts, the devices with the least free
   * memory that still hold it (best fit, so large devices stay free for large jobs), and of the
   * families the one that strands the least memory. Devices, cores and RAM held for a starving
   * job are off limits, except to that job and, for devices, to jobs that will end before it
   * could start. A reason instead when it does not fit.
   */
  place(req: CompactRequirements, forHeldJob = false, now = Date.now()): Placement | { reason: string } {
    const hold = forHeldJob ? null : this.held;
    const cpuFree = this.cpuFree - (hold?.cpuCores ?? 0);
    const memFree = this.memoryFree - (hold?.memoryMiB ?? 0);
    if ((hold === null ? this.slotsFree : this.slotsForOthers) === 0) {
      return { reason: `all ${this.host.maxJobs} job slots are taken${hold === null ? '' : ' (one is held)'}` };
    }
    if (req.cpuCores > cpuFree) return { reason: `needs ${req.cpuCores} CPU cores, ${cpuFree} free` };
    if (req.memoryMiB > memFree) return { reason: `needs ${req.memoryMiB} MiB RAM, ${memFree} free` };
    const base = { gpuMemoryMiB: req.gpuMemoryMiB, cpuCores: req.cpuCores, memoryMiB: req.memoryMiB };
    if (req.gpuCount === 0) return { ...base, gpuIndices: [] };

    const backfill = hold !== null && this.mayBackfill(req, this.shadowTime(now), now);
    const usable = this.deviceList.filter((d) => backfill || !hold?.devices.includes(d.index));
    const families = req.families ?? [...new Set(usable.map((d) => d.family))];
    let best: { indices: number[]; stranded: number } | null = null;
    for (const family of families) {
      const fitting = usable
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

  /**
   * Which devices to hold for a starving job: of the families it accepts, the devices large
   * enough for it that will have room soonest (by their jobs' time limits), then those with the
   * most memory free now. Null if it never fits.
   */
  planHold(jobId: string, req: CompactRequirements, now = Date.now()): Hold | null {
    if (req.cpuCores > this.host.cpuCores - this.host.reservedCpuCores) return null;
    if (req.memoryMiB > this.host.memoryMiB - this.host.reservedMemoryMiB) return null;
    const base = { jobId, gpuMemoryMiB: req.gpuMemoryMiB, cpuCores: req.cpuCores, memoryMiB: req.memoryMiB };
    if (req.gpuCount === 0) return { ...base, devices: [] };
    const families = req.families ?? [...new Set(this.deviceList.map((d) => d.family))];
    let best: { devices: number[]; ready: number; free: number } | null = null;
    for (const family of families) {
      const large = this.deviceList
        .filter((d) => d.family === family && this.isHealthy(d.index) && d.memoryTotal >= req.gpuMemoryMiB)
        .map((d) => ({ index: d.index, ready: this.roomAt(d.index, req.gpuMemoryMiB, now), free: this.freeOn(d.index) }))
        .sort((a, b) => a.ready - b.ready || b.free - a.free || a.index - b.index)
        .slice(0, req.gpuCount);
      if (large.length < req.gpuCount) continue;
      const ready = Math.max(...large.map((d) => d.ready));
      const free = large.reduce((s, d) => s + d.free, 0);
      if (best === null || ready < best.ready || (ready === best.ready && free > best.free))
        best = { devices: large.map((d) => d.index).sort((a, b) => a - b), ready, free };
    }
    return best === null ? null : { ...base, devices: best.devices };
  }

  setHold(hold: Hold | null): void {
    this.held = hold;
  }

  /** Books a job's resources; `deadline` is when it will have been stopped at the latest. */
  reserve(jobId: string, placement: Placement, deadline = Number.POSITIVE_INFINITY): void {
    this.jobs.set(jobId, placement);
    this.deadlines.set(jobId, deadline);
  }

  release(jobId: string): void {
    this.jobs.delete(jobId);
    this.deadlines.delete(jobId);
  }

  /**
   * What the scan script may hand out: held cores, RAM and slot left out, held devices marked with
   * the time by which a job's limit must end for it to be done by the shadow time (or left out
   * when no job could).
   */
  forClaim(now = Date.now()): ClaimResources {
    const hold = this.held;
    const shadow = this.shadowTime(now);
    const until = shadow === null ? null : shadow - this.host.endAllowanceMs;
    const backfillUntil = until !== null && Number.isFinite(until) && until > now ? until : null;
    return {
      gpus: this.deviceList
        .filter((d) => this.isHealthy(d.index) && (backfillUntil !== null || !hold?.devices.includes(d.index)))
        .map((d): ClaimDevice => {
          const entry: ClaimDevice = [d.family, this.freeOn(d.index), d.memoryTotal];
          if (backfillUntil !== null && hold?.devices.includes(d.index)) entry.push(backfillUntil);
          return entry;
        }),
      cpu: Math.max(0, this.cpuFree - (hold?.cpuCores ?? 0)),
      ram: Math.max(0, this.memoryFree - (hold?.memoryMiB ?? 0)),
      slots: this.slotsForOthers,
    };
  }

  /** The same, as if the node were empty: what it could ever take. */
  capacityForClaim(): ClaimResources {
    return {
      gpus: this.deviceList.filter((d) => this.isHealthy(d.index)).map((d) => [d.family, d.memoryTotal, d.memoryTotal]),
      cpu: Math.max(0, this.host.cpuCores - this.host.reservedCpuCores),
      ram: Math.max(0, this.host.memoryMiB - this.host.reservedMemoryMiB),
      slots: this.host.maxJobs,
    };
  }
}

/**
 * When `need` of a resource of which the node has `capacity` is free at the latest, the running
 * jobs stopped at their deadlines (`now` if it is free already; never, if it cannot be).
 */
function freedBy(
  running: readonly { p: Placement; at: number }[],
  amount: (p: Placement) => number,
  capacity: number,
  need: number,
  now: number,
): number {
  let free = capacity - running.reduce((s, r) => s + amount(r.p), 0);
  if (free >= need) return now;
  for (const r of [...running].sort((a, b) => a.at - b.at)) {
    free += amount(r.p);
    if (free >= need) return r.at;
  }
  return Number.POSITIVE_INFINITY;
}
