import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Job, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { AgentConfig as ControlPlaneConfig } from '../../src/domain/schemas/agent.js';
import type { JobPayload } from '../../src/domain/schemas/job.js';
import { pairsToRecord } from '../../src/redis/connection.js';
import type { ClaimResources } from '../resources.js';

type TierInfo = ControlPlaneConfig['tiers'][number];

export interface Claimed {
  readonly tier: TierQueue;
  readonly job: Job<JobPayload>;
  readonly token: string;
  /** Set when BullMQ marked the job to fail (it stalled too often): fail it, do not run it. */
  readonly deferredFailure: string | null;
}

export type ClaimOutcome =
  | { readonly kind: 'claimed'; readonly claimed: Claimed }
  /** Nothing fits now; `blocked` is the first job that would fit this node were it empty. */
  | { readonly kind: 'none'; readonly blocked: { readonly jobId: string; readonly enqueuedAt: number } | null };

const CLAIM_LUA = readFileSync(new URL('./claim-job-6.lua', import.meta.url), 'utf8');

interface ClaimCommand {
  claimJob(...args: (string | number)[]): Promise<[number, string, unknown, number?]>;
}

/**
 * One tier's BullMQ queue as this agent works it: a BullMQ Worker that never fetches on its own
 * (autorun off) but runs BullMQ's stalled-job check and gives claimed jobs their BullMQ methods,
 * and the fit-aware claim script.
 */
export class TierQueue {
  readonly worker: Worker<JobPayload>;

  constructor(
    readonly info: TierInfo,
    private readonly redis: Redis,
    private readonly opts: { lockDurationMs: number; stalledIntervalMs: number; maxStalledCount: number; workerName: string },
    logger: Logger,
  ) {
    this.worker = new Worker<JobPayload>(info.queue_name, null, {
      connection: redis,
      prefix: info.queue_prefix,
      autorun: false,
      lockDuration: opts.lockDurationMs,
      stalledInterval: opts.stalledIntervalMs,
      maxStalledCount: opts.maxStalledCount,
      // Locks are renewed off the main thread (see locks/), not by BullMQ's timer.
      skipLockRenewal: true,
      name: opts.workerName,
    });
    this.worker.on('error', (err) => logger.warn({ tier: info.name, err: err.message }, 'queue error'));
    if (typeof (redis as unknown as Partial<ClaimCommand>).claimJob !== 'function') {
      redis.defineCommand('claimJob', { lua: CLAIM_LUA, numberOfKeys: 6 });
    }
  }

  get name(): string {
    return this.info.name;
  }

  /** Key of a job's BullMQ hash; its lock is this plus `:lock`. */
  jobKey(jobId: string): string {
    return `${this.info.queue_prefix}:${this.info.queue_name}:${jobId}`;
  }

  get stalledKey(): string {
    return this.worker.keys.stalled ?? `${this.info.queue_prefix}:${this.info.queue_name}:stalled`;
  }

  get eventsKey(): string {
    return this.worker.keys.events ?? `${this.info.queue_prefix}:${this.info.queue_name}:events`;
  }

  async startStalledChecks(): Promise<void> {
    await this.worker.startStalledCheckTimer();
  }

  async claim(free: ClaimResources, capacity: ClaimResources, scanLimit: number): Promise<ClaimOutcome> {
    const k = this.worker.keys;
    const token = randomUUID();
    const keys = [k.wait, k.active, k.prioritized, k.events, k.meta, k.marker] as string[];
    const [claimed, id, rest, _scanned] = await (this.redis as unknown as ClaimCommand).claimJob(
      ...keys,
      `${this.info.queue_prefix}:${this.info.queue_name}:`,
      token,
      this.opts.lockDurationMs,
      Date.now(),
      this.opts.workerName,
      JSON.stringify(free),
      JSON.stringify(capacity),
      scanLimit,
    );
    if (claimed === 1) {
      const raw = pairsToRecord(rest);
      const job = Job.fromJSON<JobPayload>(this.worker, raw as never, id);
      return { kind: 'claimed', claimed: { tier: this, job, token, deferredFailure: raw.defa ?? null } };
    }
    return { kind: 'none', blocked: id ? { jobId: id, enqueuedAt: Number(rest) } : null };
  }

  async close(): Promise<void> {
    await this.worker.close(true);
  }
}
