import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { tierOfQueue } from '../domain/queues.js';
import type { TierTable } from '../domain/tiers.js';
import type { RedisClient } from '../redis/connection.js';
import { pairsToRecord } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';
import { ENQUEUE_GRACE_MS } from './job-model.js';
import type { JobQueues } from './job-queues.js';
import type { JobReports } from './job-reports.js';
import type { JobStore } from './job-store.js';
import type { NodeRegistry } from './node-registry.js';
import { judgeOrphan, mayBeOrphan, ORPHAN_HINT_FIELDS, OrphanSign } from './orphan-end.js';
import { QueueFailureFeed } from './queue-failures.js';

/** How far back a first sweep looks (later sweeps start where the last one stopped). */
const FIRST_LOOKBACK_MS = 24 * 3_600_000;
/** Agents stamp a finished BullMQ job with their own clock: each sweep overlaps the last by this. */
const CLOCK_SKEW_MS = 60_000;
const PAGE = 500;

export interface JobReaperDeps {
  readonly redis: RedisClient;
  readonly keys: Keys;
  readonly tiers: TierTable;
  readonly store: JobStore;
  readonly queues: JobQueues;
  readonly reports: JobReports;
  readonly nodes: NodeRegistry;
  /** A new blocking connection, for the queue event readers. */
  readonly connect: () => RedisClient;
  readonly logger: Logger;
  readonly intervalMs: number;
  readonly retentionSeconds: number;
  readonly jobLogLines: number;
  /** Redis Cluster: one event reader per tier. */
  readonly perTier: boolean;
}

/** What examining one job came to. */
export type ReapOutcome = 'ended' | 'settled' | 'left' | 'gone';

export interface SweepCounts {
  examined: number;
  ended: number;
}

/**
 * Ends the jobs that no agent can end any more, so every job ends exactly once as its user sees
 * it: one final status, event, webhook and ledger settlement. They are the jobs the user already
 * sees as over (see judgeOrphan) whose record is not: BullMQ failed them (their agent died too
 * often) or completed them without a report, their enqueue was cut short, or they were cancelled
 * on a node that then died. It hears of BullMQ failures as they happen (QueueFailureFeed) and
 * sweeps every `intervalMs`, one API replica at a time, over jobs created since its last sweep,
 * the queues' failed and completed sets since then, and the nodes' unconfirmed cancels. Ending a
 * job is one script that re-checks what it was judged on, so two replicas end it once.
 */
export class JobReaper {
  private readonly feed: QueueFailureFeed;
  private readonly seenQueues = new Set<string>();
  private readonly examining = new Set<string>();
  private readonly token = randomUUID();
  private timer: NodeJS.Timeout | null = null;
  private sweeping = false;
  private failures = 0;

  constructor(private readonly d: JobReaperDeps) {
    this.feed = new QueueFailureFeed(
      d.keys,
      d.tiers.all.map((t) => t.name),
      () => this.knownQueues(),
      d.connect,
      (queue, jobId) => void this.onFailed(queue, jobId),
      d.logger,
      d.perTier,
    );
  }

  start(): void {
    this.feed.start();
    this.timer = setInterval(() => void this.sweepIfTurn(), this.d.intervalMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.feed.close();
  }

  /** Sweeps unless another replica swept within the interval (or this one is still at it). */
  async sweepIfTurn(): Promise<SweepCounts | null> {
    if (this.sweeping) return null;
    this.sweeping = true;
    try {
      const mine = await this.d.redis.set(this.d.keys.reaperTurn, this.token, 'PX', this.d.intervalMs, 'NX');
      if (mine !== 'OK') return null;
      const counts = await this.sweep();
      this.failures = 0;
      return counts;
    } catch (err) {
      if (this.failures++ % 20 === 0) this.d.logger.warn({ err: (err as Error).message }, 'reaper: sweep failed; trying again later');
      return null;
    } finally {
      this.sweeping = false;
    }
  }

  /** One sweep, whoever else sweeps. */
  async sweep(): Promise<SweepCounts> {
    const now = Date.now();
    const marks = await this.d.redis.hgetall(this.d.keys.reaperMarks);
    const counts: SweepCounts = { examined: 0, ended: 0 };
    const tally = (o: ReapOutcome) => {
      counts.examined++;
      if (o === 'ended') counts.ended++;
    };
    await this.sweepCreated(marks, now, tally);
    await this.sweepFinished(marks, now, tally);
    await this.sweepCancels(tally);
    return counts;
  }

  /**
   * Ends one job if no agent can end it any more (or settles what follows the end a reaper wrote
   * but may not have settled). Safe to call for any job, any number of times, from any replica.
   */
  async examine(id: string, queue?: string): Promise<ReapOutcome> {
    const loaded = await this.d.store.load(id, queue);
    if (loaded === null) return 'gone';
    const { rec } = loaded;
    const verdict = judgeOrphan(rec, loaded.facts, Date.now());
    if (verdict === null) return 'left';
    if (verdict.kind === 'settle') {
      await this.d.reports.settleReaped(rec.queue, id, rec.status, rec.fields, false);
      return 'settled';
    }
    const k = this.d.keys;
    const now = Date.now();
    const res = (await runScript(
      this.d.redis,
      ScriptName.ReapJob,
      [
        k.jobRecord(rec.tier, id),
        k.bullJob(rec.queue, id),
        k.bullLock(rec.queue, id),
        k.bullSet(rec.queue, 'failed'),
        k.bullSet(rec.queue, 'completed'),
        k.jobLog(rec.tier, id),
        ...k.jobWatchKeys(rec.tier, now),
      ],
      [
        id,
        rec.status,
        verdict.sign,
        verdict.status,
        verdict.reason ?? '',
        verdict.message ?? '',
        now,
        this.d.retentionSeconds,
        this.d.jobLogLines,
      ],
    )) as [string, string, unknown?];
    if (res[0] === 'skip') return 'left';
    const fields = pairsToRecord(res[2]);
    await this.d.reports.settleReaped(rec.queue, id, res[1], fields, res[0] === 'ok');
    // A cancelled job back in the queue would only be claimed to be thrown away.
    if (verdict.sign === OrphanSign.Unheld) await this.d.queues.removeWaiting(rec.queue, id).catch(() => false);
    if (res[0] !== 'ok') return 'settled';
    this.d.logger.info(
      { jobId: id, status: verdict.status, reason: fields.status_reason || null, was: res[1], sign: verdict.sign },
      'reaper: ended a job no agent can end any more',
    );
    return 'ended';
  }

  private async onFailed(queue: string, jobId: string): Promise<void> {
    if (this.examining.has(jobId)) return;
    this.examining.add(jobId);
    try {
      const hint = await this.d.redis.hmget(this.d.keys.jobRecord(tierOfQueue(queue), jobId), ...ORPHAN_HINT_FIELDS);
      if (mayBeOrphan(hint)) await this.examine(jobId, queue);
    } catch (err) {
      this.d.logger.warn({ jobId, err: (err as Error).message }, 'reaper: could not examine a failed job; the next sweep will');
    } finally {
      this.examining.delete(jobId);
    }
  }

  /** Every queue there may be: the tiers', the families' this API used, and those seen in jobs. */
  private knownQueues(marks: Readonly<Record<string, string>> = {}): string[] {
    const all = new Set<string>([...this.d.tiers.all.map((t) => t.name), ...this.d.queues.all.map((q) => q.name), ...this.seenQueues]);
    for (const field of Object.keys(marks)) {
      const q = /^(?:failed|completed):(.+)$/.exec(field)?.[1];
      if (q !== undefined) all.add(q);
    }
    return [...all].filter((q) => this.d.tiers.get(tierOfQueue(q)) !== undefined);
  }

  /** Jobs created since the last sweep and past the enqueue grace that BullMQ never got. */
  private async sweepCreated(marks: Record<string, string>, now: number, tally: (o: ReapOutcome) => void): Promise<void> {
    const { redis, keys } = this.d;
    const from = Number(marks.created ?? now - FIRST_LOOKBACK_MS);
    const to = now - ENQUEUE_GRACE_MS;
    if (to < from) return;
    for (let offset = 0; ; offset += PAGE) {
      const ids = await redis.zrangebyscore(keys.jobsAll, from, to, 'LIMIT', offset, PAGE);
      const queues = await this.d.store.queuesOf(ids);
      const present = await Promise.all(ids.map((id, i) => (queues[i] ? redis.exists(keys.bullJob(queues[i] ?? '', id)) : 1)));
      for (const [i, id] of ids.entries()) {
        const queue = queues[i];
        if (!queue || this.d.tiers.get(tierOfQueue(queue)) === undefined) continue;
        this.seenQueues.add(queue);
        if (present[i] === 0) tally(await this.examine(id, queue));
      }
      if (ids.length < PAGE) break;
    }
    await redis.hset(keys.reaperMarks, 'created', String(to));
  }

  /** Jobs BullMQ failed or completed since the last sweep whose record has not ended. */
  private async sweepFinished(marks: Record<string, string>, now: number, tally: (o: ReapOutcome) => void): Promise<void> {
    const { redis, keys } = this.d;
    const reached: Record<string, string> = {};
    for (const queue of this.knownQueues(marks)) {
      this.seenQueues.add(queue);
      const tier = tierOfQueue(queue);
      for (const set of ['failed', 'completed'] as const) {
        const field = `${set}:${queue}`;
        const from = Number(marks[field] ?? now - FIRST_LOOKBACK_MS) - CLOCK_SKEW_MS;
        for (let offset = 0; ; offset += PAGE) {
          const ids = await redis.zrangebyscore(keys.bullSet(queue, set), from, now, 'LIMIT', offset, PAGE);
          const hints = await Promise.all(ids.map((id) => redis.hmget(keys.jobRecord(tier, id), ...ORPHAN_HINT_FIELDS)));
          for (const [i, id] of ids.entries()) if (mayBeOrphan(hints[i] ?? [])) tally(await this.examine(id, queue));
          if (ids.length < PAGE) break;
        }
        reached[field] = String(now);
      }
    }
    if (Object.keys(reached).length > 0) await redis.hset(keys.reaperMarks, reached);
  }

  /** Cancelled jobs whose node has not confirmed the stop: ended if no node holds them any more. */
  private async sweepCancels(tally: (o: ReapOutcome) => void): Promise<void> {
    for (const { nodeId, jobId } of await this.d.nodes.allPendingCancels()) {
      const queue = await this.d.store.queueOf(jobId);
      const outcome = queue === null ? 'gone' : await this.examine(jobId, queue);
      if (outcome === 'gone') await this.d.nodes.clearPendingCancel(nodeId, jobId);
      else tally(outcome);
    }
  }
}
