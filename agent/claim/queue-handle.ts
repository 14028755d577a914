import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { Job, Worker } from 'bullmq';
import type { Logger } from 'pino';
import type { JobPayload } from '../../src/domain/schemas/job.js';
import { pairsToRecord, type RedisClient } from '../../src/redis/connection.js';
import { readLua } from '../../src/redis/scripts.js';
import type { ClaimDevice } from '../resources.js';

/** A queue this agent works: a tier's, or a tier's for one GPU family. */
export interface QueueInfo {
  readonly tier: string;
  readonly name: string;
  /** BullMQ's prefix option (the tier's, with its hash tag). */
  readonly prefix: string;
  /** The largest GPU memory per GPU its jobs ask for (0 for the CPU tier). */
  readonly maxGpuMemoryMiB: number;
}

export interface Claimed {
  readonly queue: QueueHandle;
  readonly job: Job<JobPayload>;
  readonly token: string;
  /** Set when BullMQ marked the job to fail (it stalled too often): fail it, do not run it. */
  readonly deferredFailure: string | null;
}

/** A reservation asked for: this node holds it, another does, or the job no longer waits. */
export type ReserveOutcome = 'held' | 'elsewhere' | 'gone';

/** What a scan of one queue found (see scan-queue-6.lua). */
export interface ScanResult {
  readonly best: { readonly jobId: string; readonly priority: number; readonly stranded: number; readonly enqueuedAt: number } | null;
  /** The oldest starving job no other node holds a reservation for (this node may). */
  readonly starving: Starving | null;
  /** An older starving job another node holds: this node may take it over if it would start it sooner. */
  readonly starvingElsewhere: Starving | null;
  /** The jobs taken, best first, when the scan was asked to claim (none when it only looked). */
  readonly claimed: readonly Claimed[];
}

/** A job past the starvation bound that would fit this node empty. */
export interface Starving {
  readonly jobId: string;
  readonly enqueuedAt: number;
  /** Who holds its reservation, and how long until it could start there at the latest (ms). */
  readonly holder: { readonly node: string; readonly shadowInMs: number | null } | null;
}

/** The reservation key's value: "node|shadow ms" (a bare node name from older agents). */
function parseHolder(raw: string): Starving['holder'] {
  if (raw === '') return null;
  const bar = raw.lastIndexOf('|');
  if (bar < 0) return { node: raw, shadowInMs: null };
  return { node: raw.slice(0, bar), shadowInMs: Number(raw.slice(bar + 1)) };
}

/** The agent's view of itself that the scan script takes. */
export interface AgentState {
  readonly gpus: ClaimDevice[];
  readonly cpu: number;
  readonly ram: number;
  readonly slots: number;
  readonly node: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly prices: [gpuHour: number, coreHour: number, gibHour: number];
  /** Owners (URI-encoded) at their cap of running jobs. */
  readonly capped: readonly string[];
  /** Jobs this agent was just refused and should leave to others for a while. */
  readonly skip: readonly string[];
}

const lua = (file: string) => readLua(fileURLToPath(new URL(file, import.meta.url)));
const SCRIPTS = {
  scanQueue: { lua: lua('./scan-queue-6.lua'), numberOfKeys: 6 },
  claimJob: { lua: lua('./claim-job-6.lua'), numberOfKeys: 6 },
  reserveJob: { lua: lua('./reserve-job-2.lua'), numberOfKeys: 2 },
} as const;

type Commands = {
  [K in keyof typeof SCRIPTS]: (...args: (string | number)[]) => Promise<unknown>;
};

/**
 * One queue as this agent works it: a BullMQ Worker that never fetches on its own (autorun off)
 * but runs BullMQ's stalled-job check and gives claimed jobs their BullMQ methods, and the
 * agent's own scripts to choose, claim and reserve jobs.
 */
export class QueueHandle {
  readonly worker: Worker<JobPayload>;
  private readonly cmd: Commands;

  constructor(
    readonly info: QueueInfo,
    private readonly redis: RedisClient,
    private readonly opts: { lockDurationMs: number; stalledIntervalMs: number; maxStalledCount: number; workerName: string },
    logger: Logger,
  ) {
    this.worker = new Worker<JobPayload>(info.name, null, {
      connection: redis,
      prefix: info.prefix,
      autorun: false,
      lockDuration: opts.lockDurationMs,
      stalledInterval: opts.stalledIntervalMs,
      maxStalledCount: opts.maxStalledCount,
      // Locks are renewed off the main thread (see locks/), not by BullMQ's timer.
      skipLockRenewal: true,
      name: opts.workerName,
    });
    this.worker.on('error', (err) => logger.warn({ queue: info.name, err: err.message }, 'queue error'));
    for (const [name, def] of Object.entries(SCRIPTS)) {
      if (typeof (redis as unknown as Record<string, unknown>)[name] !== 'function') redis.defineCommand(name, def);
    }
    this.cmd = redis as unknown as Commands;
  }

  get name(): string {
    return this.info.name;
  }

  /** Key of a job's BullMQ hash; its lock is this plus `:lock`. */
  jobKey(jobId: string): string {
    return `${this.keyPrefix}${jobId}`;
  }

  private get keyPrefix(): string {
    return `${this.info.prefix}:${this.info.name}:`;
  }

  get stalledKey(): string {
    return `${this.keyPrefix}stalled`;
  }

  get eventsKey(): string {
    return `${this.keyPrefix}events`;
  }

  async startStalledChecks(): Promise<void> {
    await this.worker.startStalledCheckTimer();
  }

  /**
   * Looks at this queue's waiting jobs and says which one this agent should take (and which one
   * is starving); with `claim` > 0, takes it in the same step, and up to `claim` jobs in all.
   */
  async scan(state: AgentState, capacity: AgentState, scanLimit: number, starvationMs: number, claim = 0): Promise<ScanResult> {
    const k = this.worker.keys;
    const token = claim > 0 ? randomUUID() : '';
    const r = (await this.cmd.scanQueue(
      k.wait as string,
      k.prioritized as string,
      k.meta as string,
      k.active as string,
      k.events as string,
      k.marker as string,
      this.keyPrefix,
      JSON.stringify(state),
      JSON.stringify(capacity),
      scanLimit,
      Date.now(),
      starvationMs,
      token,
      this.opts.lockDurationMs,
      this.opts.workerName,
      Math.max(1, claim),
    )) as [string, number, number, number, string, number, string, [string, unknown][], string, number, string];
    const best = r[0] ? { jobId: r[0], priority: Number(r[1]), stranded: Number(r[2]), enqueuedAt: Number(r[3]) } : null;
    const claimed = (Array.isArray(r[7]) ? r[7] : []).map(([jobId, hash], i): Claimed => {
      const raw = pairsToRecord(hash);
      return {
        queue: this,
        job: Job.fromJSON<JobPayload>(this.worker, raw as never, jobId),
        // The script's tokens: the first job gets the one given, the n-th further "<token>-<n>".
        token: i === 0 ? token : `${token}-${i}`,
        deferredFailure: raw.defa ?? null,
      };
    });
    return {
      best,
      starving: r[4] ? { jobId: r[4], enqueuedAt: Number(r[5]), holder: parseHolder(r[6]) } : null,
      starvingElsewhere: r[8] ? { jobId: r[8], enqueuedAt: Number(r[9]), holder: parseHolder(r[10]) } : null,
      claimed,
    };
  }

  /** Claims a job the scan chose; null when another agent was quicker. */
  async claim(jobId: string): Promise<Claimed | null> {
    const k = this.worker.keys;
    const token = randomUUID();
    const r = (await this.cmd.claimJob(
      k.wait as string,
      k.active as string,
      k.prioritized as string,
      k.events as string,
      k.meta as string,
      k.marker as string,
      this.keyPrefix,
      jobId,
      token,
      this.opts.lockDurationMs,
      Date.now(),
      this.opts.workerName,
    )) as [number, unknown?];
    if (r[0] !== 1) return null;
    const raw = pairsToRecord(r[1]);
    const job = Job.fromJSON<JobPayload>(this.worker, raw as never, jobId);
    return { queue: this, job, token, deferredFailure: raw.defa ?? null };
  }

  /**
   * Holds, renews or takes over the reservation for a starving job, saying by when this node
   * could start it at the latest; false when another node holds it and would start it as soon.
   */
  /** Holds, renews or takes over a job's reservation (see reserve-job-2.lua). */
  async reserve(jobId: string, nodeName: string, ttlMs: number, shadowInMs: number): Promise<ReserveOutcome> {
    const jobKey = this.jobKey(jobId);
    const r = await this.cmd.reserveJob(`${jobKey}:ip-reserved`, jobKey, nodeName, ttlMs, Math.max(0, Math.round(shadowInMs)));
    return r === 1 ? 'held' : r === -1 ? 'gone' : 'elsewhere';
  }

  /** The job's requirement string, to plan a reservation. */
  async requirementsOf(jobId: string): Promise<string | null> {
    const data = await this.redis.hget(this.jobKey(jobId), 'data');
    return data === null ? null : (/^\{"v":2,"req":"([^"]*)"/.exec(data)?.[1] ?? null);
  }

  async close(): Promise<void> {
    await this.worker.close(true);
  }
}
