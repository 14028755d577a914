import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';

export const REDIS_URL = process.env.IMAGEPOD_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** A key prefix no other test file uses, so files can share the Redis on 6379. */
export function uniquePrefix(name: string): string {
  return `imagepod-test-${name}-${randomBytes(4).toString('hex')}`;
}

/** Deletes every key under `prefix` (never FLUSHALL: the server is shared). */
export async function deletePrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

export function testRedis(url = REDIS_URL): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, lazyConnect: false });
}
