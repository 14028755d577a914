import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { ApiConfig } from './config/api-config.js';
import { TierTable } from './domain/tiers.js';
import { createApp } from './http/app.js';
import { configurePassport } from './http/auth.js';
import type { RouteContext } from './http/context.js';
import { Sessions } from './http/session.js';
import { ApiMetrics } from './metrics/api-metrics.js';
import { metricSources } from './metrics/api-sources.js';
import { createRedis } from './redis/connection.js';
import { Keys } from './redis/keys.js';
import { Accounting } from './services/accounting.js';
import { agentConfigFor } from './services/agent-config.js';
import { Credentials } from './services/credentials.js';
import { FleetOverview } from './services/fleet-overview.js';
import { JobEventFeed } from './services/job-events.js';
import { JobQueues } from './services/job-queues.js';
import { JobReports } from './services/job-reports.js';
import { JobService } from './services/job-service.js';
import { JobStore } from './services/job-store.js';
import { NodeRegistry } from './services/node-registry.js';
import { WaitReasons } from './services/wait-reasons.js';
import { AddressPolicy } from './services/webhooks/address-policy.js';
import { Webhooks } from './services/webhooks/webhooks.js';

export interface ApiServer {
  readonly server: Server;
  readonly url: string;
  readonly context: RouteContext;
  readonly queues: JobQueues;
  close(): Promise<void>;
}

/** Wires the API together and listens. Used by `main.ts`, tests and benchmarks alike. */
export async function startApiServer(config: ApiConfig, logger: Logger): Promise<ApiServer> {
  const redis = createRedis(config.redisUrl, 'api', 'imagepod-api');
  // BullMQ defines its 60-odd scripts on the connection it is given, and ioredis copies every
  // script a connection knows into each pipeline it makes (auto-pipelining makes one per tick):
  // the queues get a connection of their own so ImagePod's commands do not pay for that.
  const queueRedis = createRedis(config.redisUrl, 'api', 'imagepod-api-queues');
  let lastRedisError = '';
  for (const conn of [redis, queueRedis]) {
    conn.on('error', (err: Error) => {
      // A dead Redis repeats the same error on every reconnect attempt: log when it changes.
      if (err.message !== lastRedisError) logger.warn({ err: err.message }, 'redis connection error');
      lastRedisError = err.message;
    });
    conn.on('ready', () => {
      if (lastRedisError !== '') logger.info('redis connection restored');
      lastRedisError = '';
    });
  }
  const keys = new Keys(config.keyPrefix);
  const tiers = new TierTable(config.tierBoundsMiB);
  const credentials = new Credentials(redis, keys, config.registrationToken);
  const accounting = new Accounting(redis, keys, config.maxRunningJobsPerUser);
  const nodes = new NodeRegistry(redis, keys, credentials, {
    heartbeatIntervalMs: config.heartbeatIntervalMs,
    heartbeatTtlMs: config.heartbeatTtlMs,
    cappedUsers: () => accounting.cappedUsers(),
  });
  const queues = new JobQueues(queueRedis, keys, tiers, config.jobRetentionSeconds, () => {});
  const store = new JobStore(redis, keys, tiers);
  const waitReasons = new WaitReasons(nodes, accounting);
  // One registry per server: tests run several servers in one process.
  const metrics = new ApiMetrics();
  const webhookPolicy = new AddressPolicy(config.webhooks.allow);
  const jobs = new JobService(
    redis,
    keys,
    tiers,
    store,
    queues,
    nodes,
    accounting,
    waitReasons,
    config.limits,
    config.jobRetentionSeconds,
    metrics,
    (url) => webhookPolicy.literalProblem(url),
  );
  const reports = new JobReports(redis, keys, store, nodes, accounting, config.limits, config.jobRetentionSeconds, metrics);
  metrics.observe(metricSources({ queues, nodes, pendingByTier: () => jobs.pendingByTier() }));

  const blockingConnection = () => {
    const c = redis.duplicate({ enableAutoPipelining: false, maxRetriesPerRequest: null });
    c.on('error', () => {});
    return c;
  };
  const events = new JobEventFeed(
    keys,
    tiers.all.map((t) => t.name),
    blockingConnection,
    logger,
  );
  // Not awaited: with Redis away the API still starts (and answers 503) while the feed waits.
  void events.start();
  const webhooks = new Webhooks({ config, redis, queueRedis, keys, tiers, jobs, policy: webhookPolicy, logger });
  const overview = new FleetOverview(redis, keys, tiers, queues, store, nodes, waitReasons, logger);
  overview.startSampling();

  const context: RouteContext = {
    config,
    passport: configurePassport(config, credentials),
    nodes,
    jobs,
    reports,
    accounting,
    agentConfig: (nodeId, agentId) => agentConfigFor(config, tiers, keys, nodeId, agentId),
    logger,
    metrics,
    events,
    overview,
    sessions: new Sessions(config, logger),
    watchQueues: (onQueue) => queues.watch(onQueue),
    blockingConnection,
    webhookSecrets: webhooks.secrets,
    ping: async () => {
      await redis.ping();
    },
  };
  const app = createApp(context);
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(config.port, config.host, () => resolve(s));
    s.once('error', reject);
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;

  return {
    server,
    url: `http://${host}:${port}`,
    context,
    queues,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      overview.stopSampling();
      await events.close();
      await webhooks.close();
      await queues.close();
      redis.disconnect();
      queueRedis.disconnect();
    },
  };
}
