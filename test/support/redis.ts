import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';

export const REDIS_URL = process.env.IMAGEPOD_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A key prefix no other test file uses, so files can share the Redis on 6379. */
export function uniquePrefix(name: string): string {
  return `imagepod-test-${name}-${randomBytes(4).toString('hex')}`;
}

/**
 * Deletes every key under `prefix` (never FLUSHALL: the server is shared). SCAN sees one server's
 * keys only, so on a Redis Cluster every primary is scanned, and the keys found are
 * unlinked one by one through the cluster (a multi-key UNLINK must stay within one slot).
 */
export async function deletePrefix(redis: Redis | Cluster, prefix: string): Promise<void> {
  for (const node of redis instanceof Cluster ? redis.nodes('master') : [redis]) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (redis instanceof Cluster) await Promise.all(keys.map((k) => redis.unlink(k)));
      else if (keys.length > 0) await node.unlink(...keys);
    } while (cursor !== '0');
  }
}

export function testRedis(url = REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false });
}
