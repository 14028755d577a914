import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { CANCEL_EVENT } from '../domain/queue-events.js';
import type { JobPayload } from '../domain/schemas/job.js';
import type { TierTable } from '../domain/tiers.js';
import type { Keys } from '../redis/keys.js';

/** BullMQ priorities run 1 (first) upward; ImagePod's run 0..MAX_PRIORITY with higher first. */
export const MAX_PRIORITY = 1000;
export const bullPriority = (priority: number): number => MAX_PRIORITY + 1 - priority;

/**
 * One BullMQ queue per tier. The queue name is the tier name and the prefix carries the tier's
 * hash tag, so a tier's keys share one Redis Cluster slot.
 */
export class JobQueues {
  private readonly queues = new Map<string, Queue<JobPayload>>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    tiers: TierTable,
    private readonly retentionSeconds: number,
    onError: (err: Error) => void,
  ) {
    for (const t of tiers.all) {
      const q = new Queue<JobPayload>(t.name, { connection: redis, prefix: keys.queuePrefix(t.name) });
      // The connection's own error handler reports outages once; this keeps BullMQ from printing them.
      q.on('error', onError);
      this.queues.set(t.name, q);
    }
  }

  get all(): readonly Queue<JobPayload>[] {
    return [...this.queues.values()];
  }

  get(tier: string): Queue<JobPayload> {
    const q = this.queues.get(tier);
    if (q === undefined) throw new Error(`no queue for tier ${tier}`);
    return q;
  }

  async enqueue(payload: JobPayload): Promise<void> {
    // attempts: 1 because ImagePod, not BullMQ, decides retries: an agent reports a failure and
    // the API answers whether the job goes back to the queue (see update-job-status.lua).
    await this.get(payload.tier).add(payload.spec.job_name.slice(0, 100), payload, {
      jobId: payload.job_id,
      priority: bullPriority(payload.spec.priority),
      attempts: 1,
      removeOnComplete: { age: this.retentionSeconds },
      removeOnFail: { age: this.retentionSeconds },
    });
  }

  /** Removes a job that no worker holds. False when it is locked (a worker took it meanwhile). */
  async removeWaiting(tier: string, jobId: string): Promise<boolean> {
    return (await this.get(tier).remove(jobId)) === 1;
  }

  /**
   * Tells the agent holding a job to stop it, through the queue's event stream that agents
   * already read (a heartbeat answer repeats it, in case this is missed).
   */
  async announceCancel(tier: string, jobId: string): Promise<void> {
    await this.redis.xadd(this.keys.bullEvents(tier), 'MAXLEN', '~', 10_000, '*', 'event', CANCEL_EVENT, 'jobId', jobId);
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((q) => q.close()));
  }
}
