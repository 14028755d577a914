import { setTimeout as sleep } from 'node:timers/promises';
import { type Job, Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Logger } from 'pino';
import { NotFoundError } from '../../domain/errors.js';
import { Role } from '../../domain/roles.js';
import { WebhookStatus } from '../../domain/webhooks.js';
import type { RedisClient } from '../../redis/connection.js';
import type { Keys } from '../../redis/keys.js';
import { runScript, ScriptName } from '../../redis/scripts.js';
import type { JobService } from '../job-service.js';
import { settledJobView } from '../settled-job.js';
import type { StoredAttempt } from './record-fields.js';
import type { WebhookSecrets } from './secrets.js';
import type { AttemptOutcome, WebhookSender } from './sender.js';

export const WEBHOOK_QUEUE = 'webhooks';

/** A job that ended and has a webhook to deliver. */
export interface FinishedJobHook {
  readonly job_id: string;
  readonly user_id: string;
  readonly tier: string;
}

export interface DeliveryOptions {
  readonly attempts: number;
  /** The first retry waits this long, each next one twice as long (with 20% jitter). */
  readonly backoffMs: number;
  readonly concurrency: number;
  readonly retentionSeconds: number;
  /** The sender's time limit for one attempt: how long close() lets deliveries in flight run. */
  readonly timeoutMs: number;
}

/** Beyond the deliveries' own time limit, how long close() waits for BullMQ to let go. */
const CLOSE_GRACE_MS = 2_000;

/**
 * The delivery queue: one BullMQ job per finished job (its id is the job's, so a repeated event
 * never delivers twice), retried with exponential backoff. Each attempt is recorded on the job.
 */
export class WebhookDeliveries {
  private readonly queue: Queue<FinishedJobHook>;
  private readonly worker: Worker<FinishedJobHook>;

  constructor(
    queueConnection: RedisClient,
    private readonly workerConnection: RedisClient,
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly jobs: JobService,
    private readonly secrets: WebhookSecrets,
    private readonly sender: WebhookSender,
    private readonly options: DeliveryOptions,
    private readonly logger: Logger,
  ) {
    const prefix = keys.webhookQueuePrefix;
    this.queue = new Queue<FinishedJobHook>(WEBHOOK_QUEUE, { connection: queueConnection, prefix });
    this.queue.on('error', () => {});
    this.worker = new Worker<FinishedJobHook>(WEBHOOK_QUEUE, (job) => this.deliver(job), {
      connection: workerConnection,
      prefix,
      concurrency: options.concurrency,
      // A delivery takes at most the sender's time limit; a lock lost to a dead API process
      // puts it back for another.
      lockDuration: 60_000,
      autorun: true,
    });
    this.worker.on('error', (err) => logger.debug({ err: err.message }, 'webhook worker error'));
  }

  /** Queues deliveries; a job already queued (or delivered, within retention) is not added again. */
  async add(hooks: readonly FinishedJobHook[]): Promise<void> {
    if (hooks.length === 0) return;
    const age = this.options.retentionSeconds;
    await this.queue.addBulk(
      hooks.map((h) => ({
        name: 'job.finished',
        data: h,
        opts: {
          jobId: h.job_id,
          attempts: this.options.attempts,
          backoff: { type: 'exponential', delay: this.options.backoffMs, jitter: 0.2 },
          removeOnComplete: { age },
          removeOnFail: { age },
        },
      })),
    );
  }

  private async deliver(job: Job<FinishedJobHook>): Promise<void> {
    const { job_id, user_id, tier } = job.data;
    let view: Awaited<ReturnType<JobService['get']>>;
    try {
      // Read as its owner: the same view GET /jobs/{id} gives them.
      view = await settledJobView(() => this.jobs.get({ kind: 'user', userId: user_id, role: Role.User }, job_id));
    } catch (err) {
      if (err instanceof NotFoundError) throw new UnrecoverableError(`job ${job_id} no longer exists`);
      throw err;
    }
    if (view.webhook_url === null || view.webhook_status === WebhookStatus.Delivered) return;
    const secret = await this.secrets.signingSecret(user_id);
    const at = new Date().toISOString();
    const outcome = await this.sender.send(view.webhook_url, secret, JSON.stringify(view), view.id);
    const last = outcome.refused || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const status = outcome.delivered ? WebhookStatus.Delivered : last ? WebhookStatus.Failed : WebhookStatus.Pending;
    await this.record(tier, job_id, at, outcome, status);
    const log = { job_id, attempt: job.attemptsMade + 1, status_code: outcome.statusCode, ms: outcome.durationMs };
    if (outcome.delivered) {
      this.logger.debug(log, 'webhook delivered');
      return;
    }
    this.logger.info({ ...log, error: outcome.error, final: last }, 'webhook delivery failed');
    const message = outcome.error ?? 'not delivered';
    throw outcome.refused ? new UnrecoverableError(message) : new Error(message);
  }

  private async record(tier: string, jobId: string, at: string, o: AttemptOutcome, status: WebhookStatus): Promise<void> {
    const attempt: StoredAttempt = { at, status_code: o.statusCode, error: o.error, duration_ms: o.durationMs };
    await runScript(this.redis, ScriptName.RecordWebhookAttempt, [this.keys.jobRecord(tier, jobId)], [JSON.stringify(attempt), status]);
  }

  async close(): Promise<void> {
    // The worker first: in-flight deliveries finish (each within the sender's time limit). With
    // Redis away (never reached: a wrong CA, say) there are none, and BullMQ's graceful close would
    // wait for Redis for ever. Even with it there, a graceful close ends with QUIT on the worker's
    // blocking connection, which on a Redis Cluster still recovering from an outage can wait for
    // ever too (seen in test/cluster/redis-cluster.test.ts): so the wait is bounded, and what is
    // left is cut with the worker's connections.
    const closing = this.worker.close(this.workerConnection.status !== 'ready');
    const closed = await Promise.race([closing.then(() => true), sleep(this.options.timeoutMs + CLOSE_GRACE_MS, false, { ref: false })]);
    if (!closed) {
      this.logger.warn('webhook deliveries: the worker did not close in time; cutting its connections');
      closing.catch(() => {});
      await Promise.race([this.worker.disconnect().catch(() => {}), sleep(CLOSE_GRACE_MS, undefined, { ref: false })]);
    }
    await this.queue.close();
  }
}
