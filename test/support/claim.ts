import { randomUUID } from 'node:crypto';
import { type Job, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import type { JobPayload } from '../../src/domain/schemas/job.js';
import { Keys } from '../../src/redis/keys.js';
import { REDIS_URL } from './redis.js';

/**
 * Claims jobs the way an agent does: a real BullMQ worker fetching manually with a token, so
 * the lock the API checks is a real one.
 */
export class TestClaimer {
  private readonly workers = new Map<string, Worker<JobPayload>>();
  private readonly connection = new Redis(REDIS_URL, { maxRetriesPerRequest: null });

  constructor(
    private readonly prefix: string,
    private readonly lockDuration = 30_000,
  ) {}

  private worker(tier: string): Worker<JobPayload> {
    let w = this.workers.get(tier);
    if (w === undefined) {
      w = new Worker<JobPayload>(tier, null, {
        connection: this.connection,
        prefix: new Keys(this.prefix).queuePrefix(tier),
        autorun: false,
        lockDuration: this.lockDuration,
      });
      this.workers.set(tier, w);
    }
    return w;
  }

  async claim(tier: string): Promise<{ job: Job<JobPayload>; token: string }> {
    const token = randomUUID();
    const job = await this.worker(tier).getNextJob(token, { block: false });
    if (job === undefined) throw new Error(`nothing to claim in ${tier}`);
    return { job, token };
  }

  async close(): Promise<void> {
    await Promise.all([...this.workers.values()].map((w) => w.close(true)));
    this.connection.disconnect();
  }
}
