import type { Logger } from 'pino';
import { parseCompactRequirements } from '../../src/domain/requirements.js';
import type { ResourceBook } from '../resources.js';
import type { Claimed, TierQueue } from './tier-queues.js';

export interface ClaimLoopOptions {
  readonly scanLimit: number;
  /** A job that would fit this node when empty and has waited this long gets room held for it. */
  readonly starvationMs: number;
  /** Look again this often even without a wake-up (a stalled job's return emits none). */
  readonly rescanIntervalMs: number;
}

/**
 * Decides when to claim and from where. A pass visits the tiers this node could ever serve,
 * largest first, so the largest job that fits now is taken first; it repeats while claims
 * succeed and stops when nothing fits. If a job that would fit the empty node has waited past
 * the starvation bound, the pass stops before the smaller tiers: the node takes nothing smaller
 * until that job fits, so a stream of small jobs cannot starve a big one.
 */
export class ClaimLoop {
  private busy = false;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** The job this node is holding room for, if any. */
  holdingFor: string | null = null;

  constructor(
    /** Largest tier first. */
    private readonly tiers: readonly TierQueue[],
    private readonly resources: ResourceBook,
    private readonly mayClaim: () => boolean,
    private readonly run: (claimed: Claimed, placement: Parameters<ResourceBook['reserve']>[1]) => void,
    private readonly opts: ClaimLoopOptions,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.wake(), this.opts.rescanIntervalMs);
    this.timer.unref();
    this.wake();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
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
          /* claimed one: look again with what is left */
        }
      } catch (err) {
        this.logger.warn({ err: (err as Error).message }, 'claim pass failed; will look again');
      }
    } while (this.again && !this.stopped);
  }

  /** One visit over the tiers; true when a job was claimed. */
  private async pass(): Promise<boolean> {
    const free = this.resources.forClaim();
    if (free.slots === 0) return false;
    const capacity = this.resources.capacityForClaim();
    const now = Date.now();
    for (const tier of this.tiers) {
      const outcome = await tier.claim(free, capacity, this.opts.scanLimit);
      if (outcome.kind === 'claimed') {
        this.accept(outcome.claimed);
        return true;
      }
      const blocked = outcome.blocked;
      if (blocked !== null && now - blocked.enqueuedAt >= this.opts.starvationMs) {
        if (this.holdingFor !== blocked.jobId) {
          this.logger.info(
            { jobId: blocked.jobId, tier: tier.name, waitedMs: now - blocked.enqueuedAt },
            'holding room for a job that waited too long',
          );
        }
        this.holdingFor = blocked.jobId;
        return false;
      }
    }
    this.holdingFor = null;
    return false;
  }

  /** Re-checks the exact fit and picks the devices; a job that does not fit after all goes back. */
  private accept(claimed: Claimed): void {
    const id = claimed.job.id ?? '';
    const req = parseCompactRequirements((claimed.job.data as { req?: string }).req ?? '');
    const placement =
      claimed.deferredFailure !== null || req === null
        ? { gpuIndices: [], gpuMemoryMiB: 0, cpuCores: 0, memoryMiB: 0 }
        : this.resources.place(req);
    if ('reason' in placement) {
      this.logger.warn({ jobId: id, reason: placement.reason }, 'claimed a job that does not fit after all: handing it back');
      void claimed.job.moveToWait(claimed.token).catch(() => {});
      return;
    }
    this.resources.reserve(id, placement);
    this.run(claimed, placement);
  }
}
