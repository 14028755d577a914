import type { Queue } from 'bullmq';
import type passport from 'passport';
import type { Logger } from 'pino';
import type { ApiConfig } from '../config/api-config.js';
import type { AgentConfig } from '../domain/schemas/agent.js';
import type { ApiMetrics } from '../metrics/api-metrics.js';
import type { RedisClient } from '../redis/connection.js';
import type { Accounting } from '../services/accounting.js';
import type { FleetOverview } from '../services/fleet-overview.js';
import type { Idempotency } from '../services/idempotency.js';
import type { JobEventFeed } from '../services/job-events.js';
import type { JobReports } from '../services/job-reports.js';
import type { JobService } from '../services/job-service.js';
import type { NodeRegistry } from '../services/node-registry.js';
import type { WebhookSecrets } from '../services/webhooks/secrets.js';
import type { RateLimits } from './rate-limit.js';
import type { Sessions } from './session.js';
import type { Shutdown } from './shutdown.js';

/** What route modules are given: services to call, never Redis keys to touch. */
export interface RouteContext {
  readonly config: ApiConfig;
  readonly passport: passport.PassportStatic;
  readonly nodes: NodeRegistry;
  readonly jobs: JobService;
  /** Idempotency-Keys on submissions. */
  readonly idempotency: Idempotency;
  readonly reports: JobReports;
  readonly accounting: Accounting;
  readonly agentConfig: (nodeId: string, agentId: string) => AgentConfig;
  readonly logger: Logger;
  /** This server's Prometheus metrics (its own registry). */
  readonly metrics: ApiMetrics;
  /** Live job status changes, tailed once per process. */
  readonly events: JobEventFeed;
  /** Queues, fleet and timeline for the dashboard. */
  readonly overview: FleetOverview;
  /** Dashboard session cookies. */
  readonly sessions: Sessions;
  /** Rate limits on submissions, registrations, sign-ins and refused tokens. */
  readonly rateLimits: RateLimits;
  /** Lists every job queue now and as each new one is made (for Bull Board). */
  readonly watchQueues: (onQueue: (q: Queue) => void) => void;
  /** A new connection for one blocking reader (log following); the caller closes it. */
  readonly blockingConnection: () => RedisClient;
  /** Users' webhook signing secrets. */
  readonly webhookSecrets: WebhookSecrets;
  /** Resolves when the store answers. */
  readonly ping: () => Promise<void>;
  /** Set once the server is stopping: /readyz says so, streams and waits end early. */
  readonly shutdown: Shutdown;
}
