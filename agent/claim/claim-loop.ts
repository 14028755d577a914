import type { Logger } from 'pino';
import { type CompactRequirements, parseCompactRequirements } from '../../src/domain/requirements.js';
import type { Placement, ResourceBook } from '../resources.js';
import type { AgentState, Claimed, QueueHandle, ScanResult, Starving } from './queue-handle.js';

export interface ClaimLoopOptions {
  readonly scanLimit: number;
  /** At most this many jobs taken in one claim (a busy agent takes small jobs by the handful). */
  readonly claimBatch: number;
  /** A job that would fit this node when empty and has waited this long gets a reservation. */
  readonly starvationMs: number;
  /** Look again this often even without a wake-up (a stalled job's return emits none). */
  readonly rescanIntervalMs: number;
  /** How long each look at all the queues took (for the metrics). */
  readonly onScan?: (seconds: number) => void;
}

/** What the claim scripts need to know of this node besides its resources. */
export interface NodeSelf {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly prices: [number, number, number];
  /** Owners (as they appear in requirement strings: URI-encoded) at their running-jobs cap. */
  readonly capped: readonly string[];
}

interface Reservation {
  readonly queue: QueueHandle;
  readonly jobId: string;
  readonly req: CompactRequirements;
  /** Since when the books have said the job's room is free, though it did not fit. */
  dueSince: number | null;
}

const SKIP_MS = 30_000;
/** How long a reserved job may be due by the books and still not fit before it is let go. */
const DUE_GRACE_MS = 15_000;

/**
 * Decides when to claim and what. A pass scans every queue this node serves (in parallel) and
 * takes, of the jobs that fit now, the highest priority, then the best fit: the one leaving the
 * least GPU memory stranded on the devices it would use, across tiers. It repeats while claims
 * succeed and stops when nothing fits.
 *
 * A job that would fit this node empty and has waited past the starvation bound gets a
 * reservation, held by one node at a time: the first to ask, until another node could start it
 * clearly sooner (an earlier shadow time: when, with every running job stopped at its time limit,
 * the held devices have room). The holder holds back the devices, cores and RAM the job needs,
 * keeps taking jobs that fit on the rest and, on the held devices, jobs whose time limit ends
 * before the shadow time (EASY backfill), and claims the job as soon as the held devices have
 * drained enough.
 */
export class ClaimLoop {
  private busy = false;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private reservation: Reservation | null = null;
  private readonly skip = new Map<string, number>();
  private readonly requirements = new Map<string, CompactRequirements>();

  constructor(
    private readonly queues: readonly QueueHandle[],
    private readonly resources: ResourceBook,
    private readonly self: () => NodeSelf,
    private readonly mayClaim: () => boolean,
    private readonly run: (claimed: Claimed, placement: Placement) => void,
    private readonly opts: ClaimLoopOptions,
    private readonly logger: Logger,
  ) {}

  /** The job this node holds room for, if any. */
  get holdingFor(): string | null {
    return this.reservation?.jobId ?? null;
  }

  start(): void {
    this.timer = setInterval(() => this.wake(), this.opts.rescanIntervalMs);
    this.timer.unref();
    this.wake();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** Leave this job to other agents for a while (the API refused it to this one). */
  avoid(jobId: string): void {
    this.skip.set(jobId, Date.now() + SKIP_MS);
  }

  /** Something changed (a job arrived, one ended here): look again, once, soon. */
  wake(): void {
    if (this.stopped) return;
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    void this.passes().finally(() => {
      this.busy = false;
    });
  }

  private async passes(): Promise<void> {
    do {
      this.again = false;
      try {
        while (!this.stopped && this.mayClaim() && (await this.pass())) {
          /* claimed one (or changed the reservation): look again with what is left */
        }
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, 'claim pass failed; will look again');
      }
    } while (this.again && !this.stopped);
  }

  private state(): { state: AgentState; capacity: AgentState } {
    const self = this.self();
    const now = Date.now();
    for (const [id, until] of this.skip) if (until < now) this.skip.delete(id);
    const common = { node: self.name, labels: self.labels, prices: self.prices, skip: [...this.skip.keys()] };
    return {
      state: { ...this.resources.forClaim(), ...common, capped: self.capped },
      capacity: { ...this.resources.capacityForClaim(), ...common, capped: [] },
    };
  }

  /** One pass; true when something changed and another pass may claim more. */
  private async pass(): Promise<boolean> {
    // The reservation is renewed even when every slot is taken, or it would lapse meanwhile.
    const reserved = await this.serveReservation();
    if (reserved) return true;
    if (this.resources.slotsFree === 0) return false;

    const { state, capacity } = this.state();
    const { scanLimit, starvationMs } = this.opts;
    const batch = Math.max(1, Math.min(this.opts.claimBatch, this.resources.slotsFree));
    // One queue: look and take in one step. Several: look at all, then take from the best one
    // (in one step again, so agents racing for it each get a job rather than the same one).
    const single = this.queues.length === 1;
    const scanStart = performance.now();
    const scans = await Promise.all(
      this.queues.map(async (q) => ({ q, r: await q.scan(state, capacity, scanLimit, starvationMs, single ? batch : 0) })),
    );
    this.opts.onScan?.((performance.now() - scanStart) / 1000);

    if (this.reservation === null && (await this.considerReservation(scans))) {
      // Hand back what the single-queue scan took, if anything: the reservation changes what fits.
      for (const taken of scans[0]?.r.claimed ?? []) await taken.job.moveToWait(taken.token).catch(() => {});
      return true;
    }

    let pick: { q: QueueHandle; priority: number; stranded: number; enqueuedAt: number } | null = null;
    for (const { q, r } of scans) {
      const b = r.best;
      if (b === null) continue;
      const better =
        pick === null ||
        b.priority < pick.priority ||
        (b.priority === pick.priority && (b.stranded < pick.stranded || (b.stranded === pick.stranded && b.enqueuedAt < pick.enqueuedAt)));
      if (better) pick = { q, ...b };
    }
    if (pick === null) return false;
    const claimed = single ? (scans[0]?.r.claimed ?? []) : (await pick.q.scan(state, capacity, scanLimit, starvationMs, batch)).claimed;
    // None left means another agent was quicker: look again.
    for (const c of claimed) this.accept(c, null);
    return true;
  }

  /** Renews this node's reservation and claims its job once the held devices can take it. */
  private async serveReservation(): Promise<boolean> {
    const res = this.reservation;
    if (res === null) return false;
    const renewed = await res.queue.reserve(res.jobId, this.self().name, this.reservationTtl, this.shadowIn(this.resources.shadowTime()));
    if (renewed !== 'held') {
      this.dropReservation(renewed === 'gone' ? 'it no longer waits' : 'another node would start it sooner, or holds it');
      // Something else may fit on what was held.
      return renewed === 'gone';
    }
    const placement = this.resources.place(res.req, true);
    if ('reason' in placement) {
      // Due now by the books, yet it does not fit: something the books do not see (a failed GPU,
      // memory used outside any job). Let the job go to a node that can start it.
      const now = Date.now();
      const shadow = this.resources.shadowTime(now);
      res.dueSince = shadow !== null && shadow <= now ? (res.dueSince ?? now) : null;
      if (res.dueSince !== null && now - res.dueSince > DUE_GRACE_MS) {
        // A shadow time far away lets any node take it over at once; this one leaves it alone a while.
        await res.queue.reserve(res.jobId, this.self().name, this.reservationTtl, this.shadowIn(null));
        this.avoid(res.jobId);
        this.dropReservation(`its room is due but it does not fit: ${placement.reason}`);
      }
      return false;
    }
    const claimed = await res.queue.claim(res.jobId);
    this.dropReservation(claimed === null ? 'it is no longer waiting' : null);
    if (claimed !== null) this.accept(claimed, placement);
    return true;
  }

  private get reservationTtl(): number {
    return 2 * this.opts.rescanIntervalMs + 10_000;
  }

  /**
   * How long until a shadow time, in the form the reservation script compares (Redis keeps the
   * time by its own clock); without one (a job without a time limit), a year.
   */
  private shadowIn(shadow: number | null, now = Date.now()): number {
    const far = 365 * 86_400_000;
    return shadow === null || !Number.isFinite(shadow) ? far : Math.max(0, Math.min(shadow - now, far));
  }

  /**
   * Takes a reservation for the oldest starving job this node could hold: one no node holds, or
   * one another node holds but this node would start sooner (its shadow time is earlier).
   */
  private async considerReservation(scans: readonly { q: QueueHandle; r: ScanResult }[]): Promise<boolean> {
    const me = this.self().name;
    // Jobs nobody holds first, oldest first: a takeover only moves a job that has a holder already.
    const candidates = scans
      .flatMap(({ q, r }) => [r.starving, r.starvingElsewhere].filter((s): s is Starving => s !== null).map((s) => ({ q, s })))
      .sort((a, b) => Number(a.s.holder !== null) - Number(b.s.holder !== null) || a.s.enqueuedAt - b.s.enqueuedAt);
    for (const { q, s } of candidates.slice(0, 3)) {
      const req = await this.requirementsOf(q, s.jobId);
      if (req === null) continue;
      const hold = this.resources.planHold(s.jobId, req);
      if (hold === null) continue;
      const now = Date.now();
      const mine = this.shadowIn(this.resources.shadowTime(now, hold), now);
      const theirs = s.holder?.shadowInMs ?? null;
      // Another node's reservation: only worth taking over when this node would start the job
      // clearly sooner, by a tenth of the holder's wait (the script checks again, atomically).
      if (s.holder !== null && s.holder.node !== me && theirs !== null && mine >= theirs * 0.9) continue;
      if ((await q.reserve(s.jobId, me, this.reservationTtl, mine)) !== 'held') continue;
      this.resources.setHold(hold);
      this.reservation = { queue: q, jobId: s.jobId, req, dueSince: null };
      this.logger.info(
        {
          jobId: s.jobId,
          queue: q.name,
          waitedMs: now - s.enqueuedAt,
          devices: hold.devices,
          startsWithinMs: mine,
          ...(s.holder && s.holder.node !== me && { from: s.holder.node }),
        },
        'reserved room for a job that waited too long: its devices drain for it',
      );
      return true;
    }
    return false;
  }

  /** A waiting job's requirements (they never change, so they are kept a while). */
  private async requirementsOf(q: QueueHandle, jobId: string): Promise<CompactRequirements | null> {
    const known = this.requirements.get(jobId);
    if (known) return known;
    const raw = await q.requirementsOf(jobId);
    const req = raw === null ? null : parseCompactRequirements(raw);
    if (req === null) return null;
    if (this.requirements.size >= 1000) this.requirements.clear();
    this.requirements.set(jobId, req);
    return req;
  }

  private dropReservation(why: string | null): void {
    if (this.reservation && why) this.logger.info({ jobId: this.reservation.jobId, why }, 'dropped a reservation');
    this.reservation = null;
    this.resources.setHold(null);
  }

  /** Re-checks the fit and picks the devices; a job that does not fit after all goes back. */
  private accept(claimed: Claimed, placement: Placement | null): void {
    const id = claimed.job.id ?? '';
    const req = parseCompactRequirements((claimed.job.data as { req?: string }).req ?? '');
    let chosen: Placement | { reason: string };
    if (placement !== null) chosen = placement;
    else if (claimed.deferredFailure !== null || req === null) chosen = { gpuIndices: [], gpuMemoryMiB: 0, cpuCores: 0, memoryMiB: 0 };
    else chosen = this.resources.place(req);
    if ('reason' in chosen) {
      this.logger.warn({ jobId: id, reason: chosen.reason }, 'claimed a job that does not fit after all: handing it back');
      this.avoid(id);
      void claimed.job.moveToWait(claimed.token).catch(() => {});
      return;
    }
    // Gone at the latest one time limit (and the allowance) from now: what shadow times reckon with.
    this.resources.reserve(id, chosen, this.resources.deadlineFor(req));
    this.run(claimed, chosen);
  }
}
