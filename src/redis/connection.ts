import { Cluster, type ClusterOptions, Redis, type RedisOptions } from 'ioredis';
import type { HostPort, RedisTarget } from '../config/redis-env.js';

/** One server (or a Sentinel-found primary), or a Redis Cluster: the rest of the code takes either. */
export type RedisClient = Redis | Cluster;

export type ConnectionRole =
  /** The API's request path: fail a command at once when Redis is away, so the caller gets 503. */
  | 'api'
  /**
   * The API's BullMQ queues: as 'api', but without auto-pipelining. ioredis copies every script
   * a connection knows into each pipeline it makes (auto-pipelining makes one per tick), and
   * BullMQ defines its 60-odd scripts on this connection: each batch would pay for all of them.
   */
  | 'queues'
  /** Blocking reads (log following, event streams): no per-command retry limit, one per reader. */
  | 'blocking'
  /** BullMQ workers: BullMQ requires maxRetriesPerRequest null and retries forever. */
  | 'worker'
  /** The agent's lock renewal: one retry, then the next round tries again. */
  | 'locks';

/**
 * A connection as plain data (no functions), so the agent's lock-renewal thread can open exactly
 * the connection the main thread would: `openRedisSpec` adds the retry strategies.
 */
export type RedisSpec =
  | { readonly kind: 'redis'; readonly url: string | null; readonly options: RedisOptions }
  | { readonly kind: 'cluster'; readonly nodes: readonly HostPort[]; readonly options: ClusterOptions };

/** What every connection of `role` to `target` is opened with. */
export function redisSpec(target: RedisTarget, role: ConnectionRole, name: string): RedisSpec {
  const perRole: RedisOptions = {
    connectionName: name,
    connectTimeout: 5000,
    maxRetriesPerRequest: role === 'api' || role === 'queues' ? 2 : role === 'locks' ? 1 : null,
    ...(target.username !== undefined && { username: target.username }),
    ...(target.password !== undefined && { password: target.password }),
  };
  const tls =
    target.tls === null
      ? undefined
      : {
          ...(target.tls.ca !== undefined && { ca: target.tls.ca }),
          ...(target.tls.cert !== undefined && { cert: target.tls.cert, key: target.tls.key }),
          ...(target.tls.servername !== undefined && { servername: target.tls.servername }),
        };
  const pipelining = role === 'api';
  // A command sent while the connection is down would wait in ioredis' offline queue through
  // reconnection attempts (seconds each, and a request sends several): on the request path it
  // fails at once instead, so a client gets its 503 (and Retry-After) in milliseconds.
  const offlineQueue = role !== 'api' && role !== 'queues';
  switch (target.kind) {
    case 'server':
      return {
        kind: 'redis',
        url: target.url,
        options: { ...perRole, enableAutoPipelining: pipelining, enableOfflineQueue: offlineQueue, ...(tls && { tls }) },
      };
    case 'sentinel':
      return {
        kind: 'redis',
        url: null,
        options: {
          ...perRole,
          enableAutoPipelining: pipelining,
          enableOfflineQueue: offlineQueue,
          sentinels: target.sentinels.map((s) => ({ host: s.host, port: s.port })),
          name: target.master,
          role: 'master',
          // Hear a failover from the sentinels at once, rather than at the old primary's next error.
          failoverDetector: true,
          ...(target.sentinelPassword !== undefined && { sentinelPassword: target.sentinelPassword }),
          // With TLS on, both the sentinels and the primary they name are spoken to over TLS.
          ...(tls && { tls, sentinelTLS: tls, enableTLSForSentinelMode: true }),
        },
      };
    case 'cluster':
      return {
        kind: 'cluster',
        nodes: target.nodes,
        options: {
          enableAutoPipelining: pipelining,
          // The cluster client queues commands while it has no slot map, with no limit: on the
          // request path a command fails at once instead, so a cluster that is away answers 503
          // as one server does (`waitUntilReady` covers the start).
          enableOfflineQueue: offlineQueue,
          // A slot map older than this is asked again; a moved slot is followed at once anyway.
          slotsRefreshTimeout: 2000,
          redisOptions: { ...perRole, ...(tls && { tls }) },
        },
      };
  }
}

const backoff = (times: number) => Math.min(100 * times, 2000);
/**
 * A primary demoted to replica (a Sentinel failover, a managed service's switch) answers writes
 * with READONLY: reconnect, which finds the new primary, and send the command again.
 */
const reconnectOnReadonly = (err: Error) => (err.message.startsWith('READONLY') ? 2 : false);

/** Opens the connection a spec describes (the lock-renewal thread mirrors this in plain JS). */
export function openRedisSpec(spec: RedisSpec): RedisClient {
  if (spec.kind === 'cluster') {
    return new Cluster(
      spec.nodes.map((n) => ({ host: n.host, port: n.port })),
      { ...spec.options, clusterRetryStrategy: backoff },
    );
  }
  const options: RedisOptions = {
    ...spec.options,
    retryStrategy: backoff,
    sentinelRetryStrategy: backoff,
    reconnectOnError: reconnectOnReadonly,
  };
  return spec.url === null ? new Redis(options) : new Redis(spec.url, options);
}

/** A connection to `target` for `role`. */
export function openRedis(target: RedisTarget, role: ConnectionRole, name: string): RedisClient {
  return openRedisSpec(redisSpec(target, role, name));
}

/**
 * Resolves once the client is ready, or after `ms` (whichever comes first; never rejects). The API
 * waits for its cluster connections this way before it listens, since they do not queue commands.
 */
export async function waitUntilReady(client: RedisClient, ms: number): Promise<boolean> {
  if (client.status === 'ready') return true;
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), ms);
    client.once('ready', onReady);
  });
}

/** Parses the `[a, b, ...]` flat list HGETALL-style replies arrive as in Lua results. */
export function pairsToRecord(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(flat)) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
}
