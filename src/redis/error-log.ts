import type { Logger } from 'pino';
import type { RedisClient } from './connection.js';

/**
 * Logs what goes wrong with a set of Redis connections, once per change: a Redis that is away
 * repeats the same error on every reconnect attempt, and a wrong CA or password is the same
 * message forever. Says so again when a connection is ready.
 */
export function logConnectionErrors(connections: readonly RedisClient[], logger: Logger): void {
  let last = '';
  const onError = (err: Error) => {
    if (err.message !== last) logger.warn({ err: err.message }, 'redis connection error');
    last = err.message;
  };
  for (const conn of connections) {
    conn.on('error', onError);
    // A Redis Cluster reports a shard it cannot reach this way (a whole-cluster failure as `error`).
    conn.on('node error', onError);
    conn.on('ready', () => {
      if (last !== '') logger.info('redis connection restored');
      last = '';
    });
  }
}
