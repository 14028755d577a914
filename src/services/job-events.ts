import type { Logger } from 'pino';
import { type JobStatus, parseJobStatus } from '../domain/job-status.js';
import type { RedisClient } from '../redis/connection.js';
import { pairsToRecord } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

/** One status change of a job, as the status scripts append it to its tier's event stream. */
export interface JobEvent {
  readonly stream_id: string;
  readonly job_id: string;
  readonly user_id: string;
  readonly tier: string;
  readonly status: JobStatus;
  readonly previous: JobStatus | null;
  readonly node_id: string | null;
  /** When the change was made (ms since the epoch). */
  readonly at: number;
  /** The job has ended for good: its final status, cost and log are written. */
  readonly final: boolean;
  readonly progress: number | null;
  /** The job has a webhook_url. */
  readonly webhook: boolean;
}

export type JobEventListener = (e: JobEvent) => void;

/** Parses one stream entry; null for one this version does not understand. */
export function parseJobEvent(tier: string, streamId: string, kv: string[]): JobEvent | null {
  const f = pairsToRecord(kv);
  const status = parseJobStatus(f.status);
  if (!f.job || status === undefined) return null;
  return {
    stream_id: streamId,
    job_id: f.job,
    user_id: f.user ?? '',
    tier,
    status,
    previous: parseJobStatus(f.prev) ?? null,
    node_id: f.node || null,
    at: Number(f.at ?? 0),
    final: f.final === '1',
    progress: f.progress ? Number(f.progress) : null,
    webhook: f.hook === '1',
  };
}

/** How long a job's final event is remembered for a `waitForFinal` that asks just too late. */
const RECENT_FINAL_MS = 60_000;
const BLOCK_MS = 5_000;

/**
 * Tails every tier's job event stream once per API process and hands each event to whoever
 * listens here: live dashboards, requests waiting for a job to end. One blocking connection per
 * tier, because a tier's keys share one Redis Cluster slot and the tiers may not.
 */
export class JobEventFeed {
  private readonly listeners = new Set<JobEventListener>();
  private readonly waiters = new Map<string, Set<(e: JobEvent) => void>>();
  private readonly recentFinal = new Map<string, JobEvent>();
  private readonly connections: RedisClient[] = [];
  private started: Promise<void> | null = null;
  private closed = false;

  constructor(
    private readonly keys: Keys,
    private readonly tiers: readonly string[],
    private readonly connect: () => RedisClient,
    private readonly logger: Logger,
  ) {}

  /** Starts tailing from each stream's current end, so nothing written after this is missed. */
  start(): Promise<void> {
    this.started ??= Promise.all(this.tiers.map((tier) => this.tail(tier))).then(() => undefined);
    return this.started;
  }

  subscribe(listener: JobEventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The job's final event, or null when it has not ended within `timeoutMs` (or `signal` aborts). */
  waitForFinal(jobId: string, timeoutMs: number, signal?: AbortSignal): Promise<JobEvent | null> {
    const seen = this.recentFinal.get(jobId);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => {
      let set = this.waiters.get(jobId);
      if (set === undefined) {
        set = new Set();
        this.waiters.set(jobId, set);
      }
      const done = (e: JobEvent | null) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        set.delete(onEvent);
        if (set.size === 0) this.waiters.delete(jobId);
        resolve(e);
      };
      const onEvent = (e: JobEvent) => done(e);
      const onAbort = () => done(null);
      const timer = setTimeout(() => done(null), timeoutMs);
      set.add(onEvent);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.connections) c.disconnect();
  }

  /** Reads one tier's stream from its end as of the first read, for as long as the feed is open. */
  private async tail(tier: string): Promise<void> {
    const key = this.keys.jobEvents(tier);
    const conn = this.connect();
    this.connections.push(conn);
    let from: string | null = null;
    let ready: () => void = () => {};
    const positioned = new Promise<void>((resolve) => {
      ready = resolve;
    });
    void (async () => {
      while (!this.closed) {
        try {
          if (from === null) {
            const last = await conn.xrevrange(key, '+', '-', 'COUNT', 1);
            from = last[0]?.[0] ?? '0-0';
            ready();
          }
          const reply: [string, [string, string[]][]][] | null = await conn.xread('COUNT', 1000, 'BLOCK', BLOCK_MS, 'STREAMS', key, from);
          for (const [id, kv] of reply?.[0]?.[1] ?? []) {
            from = id;
            const e = parseJobEvent(tier, id, kv);
            if (e !== null) this.dispatch(e);
          }
        } catch (err) {
          if (this.closed) break;
          this.logger.warn({ err: (err as Error).message, tier }, 'job event feed: read failed, retrying');
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      ready();
    })();
    return positioned;
  }

  private dispatch(e: JobEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(e);
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'job event listener failed');
      }
    }
    if (!e.final) return;
    this.rememberFinal(e);
    const waiting = this.waiters.get(e.job_id);
    if (waiting !== undefined) for (const w of [...waiting]) w(e);
  }

  private rememberFinal(e: JobEvent): void {
    this.recentFinal.set(e.job_id, e);
    // Oldest first (insertion order): drop what is older than the window.
    for (const [id, old] of this.recentFinal) {
      if (e.at - old.at <= RECENT_FINAL_MS && this.recentFinal.size <= 10_000) break;
      this.recentFinal.delete(id);
    }
  }
}
