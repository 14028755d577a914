import type { SessionStore } from '../http/session.js';
import type { RedisClient } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

/** Dashboard sessions in Redis: one key per session, expiring with it. */
export class RedisSessionStore implements SessionStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  async save(id: string, userId: string, ttlSeconds: number): Promise<void> {
    await this.redis.set(this.keys.session(id), userId, 'EX', ttlSeconds);
  }

  async exists(id: string): Promise<boolean> {
    return (await this.redis.exists(this.keys.session(id))) === 1;
  }

  async remove(id: string): Promise<void> {
    await this.redis.del(this.keys.session(id));
  }
}
