import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import type { ApiConfig, ShutdownTimes } from './config/api-config.js';
import { TierTable } from './domain/tiers.js';
import { createApp } from './http/app.js';
import { configurePassport } from './http/auth.js';
import type { RouteContext } from './http/context.js';
import { Sessions } from './http/session.js';
import { Shutdown } from './http/shutdown.js';
import { createHttpsServer } from './http/tls.js';
import { ApiMetrics } from './metrics/api-metrics.js';
import { metricSources } from './metrics/api-sources.js';
import { openRedis, waitUntilReady } from './redis/connection.js';
import { logConnectionErrors } from './redis/error-log.js';
import { Keys } from './redis/keys.js';
import { loadScripts } from './redis/scripts.js';
import { Accounting } from './services/accounting.js';
import { agentConfigFor } from './services/agent-config.js';
import { Credentials } from './services/credentials.js';
import { FleetOverview } from './services/fleet-overview.js';
import { Idempotency } from './services/idempotency.js';
import { JobEventFeed } from './services/job-events.js';
import { JobQueues } from './services/job-queues.js';
import { JobReaper } from './services/job-reaper.js';
import { JobReports } from './services/job-reports.js';
import { JobService } from './services/job-service.js';
import { JobStore } from './services/job-store.js';
import { NodeRegistry } from './services/node-registry.js';
import { RateLimiter } from './services/rate-limiter.js';
import { RedisSessionStore } from './services/session-store.js';
import { WaitReasons } from './services/wait-reasons.js';
import { AddressPolicy } from './services/webhooks/address-policy.js';
import { Webhooks } from './services/webhooks/webhooks.js';

export interface ApiServer {
  readonly server: Server;
  readonly url: string;
  readonly context: RouteContext;
  readonly queues: JobQueues;
  /** Stops serving (see Shutdown; without times: at once, cutting open requests), then the rest. */
  close(times?: ShutdownTimes): Promise<void>;
}

/** Wires the API together and listens. Used by `main.ts`, tests and benchmarks alike. */
export async function startApiServer(config: ApiConfig, logger: Logger): Promise<ApiServer> {
  loadScripts();
  const redis = openRedis(config.redis, 'api', 'imagepod-api');
  // BullMQ defines its 60-odd scripts on the connection it is given, and ioredis copies every
  // script a connection knows into each pipeline it makes: the queues get a connection of their
  // own, without auto-pipelining (see the 'queues' role), so neither pays for the other.
  const queueRedis = openRedis(config.redis, 'queues', 'imagepod-api-queues');
  logConnectionErrors([redis, queueRedis], logger);
  // Connections on the request path do not queue commands while Redis is away (see redisSpec):
  // let them connect (a cluster: get its slot map) before serving. Still away after this: 503s.
  await Promise.all([redis, queueRedis].map((c) => waitUntilReady(c, 5000)));
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
    const c = openRedis(config.redis, 'blocking', 'imagepod-api-blocking');
    c.on('error', () => {});
    c.on('node error', () => {});
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
  // Ends the jobs no agent can end any more (their agent died too often, their enqueue was cut short, ...).
  const reaper = new JobReaper({
    redis,
    keys,
    tiers,
    store,
    queues,
    reports,
    nodes,
    connect: blockingConnection,
    logger,
    intervalMs: config.reaperIntervalMs,
    retentionSeconds: config.jobRetentionSeconds,
    jobLogLines: config.limits.jobLogLines,
    perTier: config.redis.kind === 'cluster',
  });
  reaper.start();

  const shutdown = new Shutdown();
  const context: RouteContext = {
    config,
    passport: configurePassport(config, credentials),
    nodes,
    jobs,
    idempotency: new Idempotency(redis, keys, config.idempotencyLeaseSeconds * 1000, logger),
    reports,
    accounting,
    agentConfig: (nodeId, agentId) => agentConfigFor(config, tiers, keys, nodeId, agentId),
    logger,
    metrics,
    events,
    overview,
    sessions: new Sessions(config, logger, new RedisSessionStore(redis, keys)),
    rateLimits: { limiter: new RateLimiter(redis, keys, config.rateLimits.windowMs), ...config.rateLimits },
    watchQueues: (onQueue) => queues.watch(onQueue),
    blockingConnection,
    webhookSecrets: webhooks.secrets,
    shutdown,
    // Both request-path connections: the queues' one is what a submission needs.
    ping: async () => {
      await Promise.all([redis.ping(), queueRedis.ping()]);
    },
  };
  const app = createApp(context);
  const server: Server = config.tls === null ? createServer(app) : createHttpsServer(app, config.tls, logger).server;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;

  return {
    server,
    url: `${config.tls === null ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    context,
    queues,
    async close(times: ShutdownTimes = { delayMs: 0, timeoutMs: 0 }) {
      await shutdown.stop(server, times);
      overview.stopSampling();
      await reaper.close();
      await events.close();
      await webhooks.close();
      await queues.close();
      redis.disconnect();
      queueRedis.disconnect();
    },
  };
}
