import { type JobsOptions, Queue } from 'bullmq';
import { CANCEL_EVENT } from '../domain/queue-events.js';
import { tierOfQueue } from '../domain/queues.js';
import type { JobPayload } from '../domain/schemas/job.js';
import type { TierTable } from '../domain/tiers.js';
import type { RedisClient } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { outsideRequest } from '../util/log-context.js';

/** A job as it goes into its queue: BullMQ's name (shown in Bull Board), priority and payload. */
export interface QueuedJob {
  readonly queue: string;
  readonly name: string;
  readonly priority: number;
  readonly payload: JobPayload;
}

/** BullMQ priorities run 1 (first) upward; ImagePod's run 0..MAX_PRIORITY with higher first. */
export const MAX_PRIORITY = 1000;
export const bullPriority = (priority: number): number => MAX_PRIORITY + 1 - priority;

/**
 * The BullMQ queues: one per tier, and per tier one per GPU family that jobs ask for alone
 * (created when first used). A queue's name is the tier's (or tier.family) and its prefix carries
 * the tier's hash tag, so a tier's queues and records share one Redis Cluster slot.
 */
export class JobQueues {
  private readonly queues = new Map<string, Queue<JobPayload>>();
  private readonly watchers: ((q: Queue<JobPayload>) => void)[] = [];

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly tiers: TierTable,
    private readonly retentionSeconds: number,
    private readonly onError: (err: Error) => void,
  ) {
    for (const t of tiers.all) this.get(t.name);
  }

  /** Every queue this API has used: the tiers' and the families' it has seen. */
  get all(): readonly Queue<JobPayload>[] {
    return [...this.queues.values()];
  }

  /** Calls `onQueue` for every queue now and for each one made later (Bull Board lists them). */
  watch(onQueue: (q: Queue<JobPayload>) => void): void {
    this.watchers.push(onQueue);
    for (const q of this.queues.values()) onQueue(q);
  }

  get(name: string): Queue<JobPayload> {
    let q = this.queues.get(name);
    if (q === undefined) {
      const tier = tierOfQueue(name);
      if (this.tiers.get(tier) === undefined) throw new Error(`no tier for queue ${name}`);
      // Made on first use, maybe inside a request: it serves every later one, so not in that one's log context.
      q = outsideRequest(() => new Queue<JobPayload>(name, { connection: this.redis, prefix: this.keys.queuePrefix(tier) }));
      // The connection's own error handler reports outages once; this keeps BullMQ from printing them.
      q.on('error', this.onError);
      this.queues.set(name, q);
      for (const w of this.watchers) w(q);
    }
    return q;
  }

  /**
   * Adds jobs, in bulk per queue. attempts: 1 because ImagePod, not BullMQ, decides retries: an
   * agent reports a failure and the API answers whether the job goes back to the queue. A lone
   * job goes through add(): addBulk builds an ioredis pipeline, which copies every script defined
   * on the connection, a cost that a single submission would pay for nothing.
   */
  async enqueue(jobs: readonly QueuedJob[]): Promise<void> {
    const byQueue = new Map<string, QueuedJob[]>();
    for (const j of jobs) byQueue.set(j.queue, [...(byQueue.get(j.queue) ?? []), j]);
    await Promise.all(
      [...byQueue].map(([name, list]) => {
        const q = this.get(name);
        const bulk = list.map((j) => this.bullJob(j));
        const [one] = bulk;
        return bulk.length === 1 && one !== undefined ? q.add(one.name, one.data, one.opts) : q.addBulk(bulk);
      }),
    );
  }

  private bullJob(j: QueuedJob): { name: string; data: JobPayload; opts: JobsOptions } {
    return {
      name: j.name.slice(0, 100),
      data: j.payload,
      opts: {
        jobId: j.payload.job_id,
        priority: bullPriority(j.priority),
        attempts: 1,
        removeOnComplete: { age: this.retentionSeconds },
        removeOnFail: { age: this.retentionSeconds },
      },
    };
  }

  /** Removes a job that no worker holds. False when it is locked (a worker took it meanwhile). */
  async removeWaiting(queue: string, jobId: string): Promise<boolean> {
    return (await this.get(queue).remove(jobId)) === 1;
  }

  /**
   * Tells the agent holding a job to stop it, through the queue's event stream that agents
   * already read (a heartbeat answer repeats it, in case this is missed).
   */
  async announceCancel(queue: string, jobId: string): Promise<void> {
    await this.redis.xadd(this.keys.bullEvents(queue), 'MAXLEN', '~', 10_000, '*', 'event', CANCEL_EVENT, 'jobId', jobId);
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((q) => q.close()));
  }
}
