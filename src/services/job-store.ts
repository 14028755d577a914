import { tierOfQueue } from '../domain/queues.js';
import type { TierTable } from '../domain/tiers.js';
import type { RedisClient } from '../redis/connection.js';
import { pairsToRecord } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';
import { type BullFacts, type JobRecord, parseJobRecord } from './job-model.js';

export interface LoadedJob {
  readonly rec: JobRecord;
  readonly facts: BullFacts;
}

/**
 * Where jobs are and how to read one: the id -> queue index and the record read together with
 * the BullMQ facts that can overrule it. Shared by the user-facing job service and the agents'
 * reports.
 */
export class JobStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly tiers: TierTable,
  ) {}

  /** The queue a job was put in, or null for an unknown id. */
  async queueOf(id: string): Promise<string | null> {
    const queue = await this.redis.hget(this.keys.jobQueueIndex, id);
    return queue !== null && this.tiers.get(tierOfQueue(queue)) !== undefined ? queue : null;
  }

  async queuesOf(ids: readonly string[]): Promise<(string | null)[]> {
    if (ids.length === 0) return [];
    return this.redis.hmget(this.keys.jobQueueIndex, ...ids);
  }

  /** A job's record alone (no BullMQ facts), or null. */
  async record(id: string, queue: string): Promise<JobRecord | null> {
    return parseJobRecord(await this.redis.hgetall(this.keys.jobRecord(tierOfQueue(queue), id)));
  }

  /** A job's record and BullMQ facts, or null when it does not exist (any more). */
  async load(id: string, knownQueue?: string): Promise<LoadedJob | null> {
    const queue = knownQueue ?? (await this.queueOf(id));
    if (queue === null) return null;
    const tier = tierOfQueue(queue);
    const k = this.keys;
    const res = (await runScript(
      this.redis,
      ScriptName.JobView,
      [k.jobRecord(tier, id), k.bullJob(queue, id), k.bullLock(queue, id), k.bullSet(queue, 'failed'), k.bullSet(queue, 'completed')],
      [id],
    )) as [unknown, number, number, number, number, string];
    const rec = parseJobRecord(pairsToRecord(res[0]));
    if (rec === null) return null;
    return {
      rec,
      facts: { exists: res[1] === 1, locked: res[2] === 1, inFailed: res[3] === 1, inCompleted: res[4] === 1, failedReason: res[5] },
    };
  }

  /** Drops a job from the lookup and listings (it was never enqueued, or its record expired). */
  async forget(id: string, owner: string | undefined): Promise<void> {
    const k = this.keys;
    const m = this.redis.multi().hdel(k.jobQueueIndex, id).zrem(k.jobsAll, id);
    if (owner !== undefined) m.zrem(k.jobsOfUser(owner), id);
    await m.exec();
  }
}
