import { Redis, type RedisOptions } from 'ioredis';
import { defineScripts } from './scripts.js';

export type ConnectionRole =
  /** The API's request path: fail a command fast when Redis is away, so the caller gets 503. */
  | 'api'
  /** Blocking reads (log following): no per-command retry limit, one per follower. */
  | 'blocking'
  /** BullMQ workers: BullMQ requires maxRetriesPerRequest null and retries forever. */
  | 'worker';

export function createRedis(url: string, role: ConnectionRole, name: string): Redis {
  const options: RedisOptions = {
    connectionName: name,
    connectTimeout: 5000,
    retryStrategy: (times) => Math.min(100 * times, 2000),
    enableAutoPipelining: role === 'api',
    maxRetriesPerRequest: role === 'api' ? 2 : null,
    lazyConnect: false,
  };
  const redis = new Redis(url, options);
  defineScripts(redis);
  return redis;
}

/** Parses the `[a, b, ...]` flat list HGETALL-style replies arrive as in Lua results. */
export function pairsToRecord(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(flat)) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
}
