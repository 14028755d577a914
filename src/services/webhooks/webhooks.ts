import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { ApiConfig } from '../../config/api-config.js';
import type { TierTable } from '../../domain/tiers.js';
import type { RedisClient } from '../../redis/connection.js';
import { openRedis } from '../../redis/connection.js';
import type { Keys } from '../../redis/keys.js';
import type { JobService } from '../job-service.js';
import type { AddressPolicy } from './address-policy.js';
import { WebhookDeliveries } from './delivery-queue.js';
import { DEFAULT_DISPATCHER_OPTIONS, WebhookDispatcher } from './dispatcher.js';
import { WebhookSecrets } from './secrets.js';
import { WebhookSender } from './sender.js';

export interface WebhooksDeps {
  readonly config: ApiConfig;
  readonly redis: RedisClient;
  /** Shared with the job queues (BullMQ defines its scripts on it). */
  readonly queueRedis: RedisClient;
  readonly keys: Keys;
  readonly tiers: TierTable;
  readonly jobs: JobService;
  readonly policy: AddressPolicy;
  readonly logger: Logger;
}

/**
 * Job webhooks in one API process: users' signing secrets, the dispatcher that turns job events
 * into deliveries, and the worker that delivers them. Every API process runs both; Redis shares
 * the work out.
 */
export class Webhooks {
  readonly secrets: WebhookSecrets;
  private readonly deliveries: WebhookDeliveries;
  private readonly dispatcher: WebhookDispatcher;
  private readonly connections: RedisClient[];

  constructor(d: WebhooksDeps) {
    const c = d.config.webhooks;
    this.secrets = new WebhookSecrets(d.redis, d.keys);
    const workerRedis = openRedis(d.config.redis, 'worker', 'imagepod-api-webhooks');
    // Outages are reported by the API's main connections; this would only repeat them.
    workerRedis.on('error', () => {});
    this.connections = [workerRedis];
    this.deliveries = new WebhookDeliveries(
      d.queueRedis,
      workerRedis,
      d.redis,
      d.keys,
      d.jobs,
      this.secrets,
      new WebhookSender(d.policy, c.timeoutMs),
      {
        attempts: c.attempts,
        backoffMs: c.backoffMs,
        concurrency: c.concurrency,
        retentionSeconds: d.config.jobRetentionSeconds,
        timeoutMs: c.timeoutMs,
      },
      d.logger,
    );
    const consumer = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.dispatcher = new WebhookDispatcher(
      () => {
        const conn = openRedis(d.config.redis, 'blocking', 'imagepod-api-webhook-events');
        conn.on('error', () => {});
        return conn;
      },
      d.tiers.all.map((t) => ({ tier: t.name, key: d.keys.webhookEvents(t.name) })),
      consumer,
      (hooks) => this.deliveries.add(hooks),
      d.logger,
      DEFAULT_DISPATCHER_OPTIONS,
    );
    this.dispatcher.start();
  }

  /** Stops reading events, lets deliveries in flight finish, and closes its connections. */
  async close(): Promise<void> {
    await this.dispatcher.close();
    await this.deliveries.close();
    for (const conn of this.connections) conn.disconnect();
  }
}
