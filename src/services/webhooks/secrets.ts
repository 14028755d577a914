import { randomBytes } from 'node:crypto';
import type { WebhookSecretView } from '../../domain/schemas/webhook-secret.js';
import type { RedisClient } from '../../redis/connection.js';
import type { Keys } from '../../redis/keys.js';

interface Stored {
  readonly secret: string;
  readonly created_at: number;
}

const newSecret = (): Stored => ({ secret: `whsec_${randomBytes(32).toString('base64url')}`, created_at: Date.now() });

function parse(raw: string | null): Stored | null {
  if (raw === null) return null;
  try {
    const v = JSON.parse(raw) as Partial<Stored>;
    return typeof v.secret === 'string' && typeof v.created_at === 'number' ? { secret: v.secret, created_at: v.created_at } : null;
  } catch {
    return null;
  }
}

/**
 * One signing secret per user, made on first use and replaced by rotation. It is kept as it is
 * (not hashed): the API needs it to sign every delivery.
 */
export class WebhookSecrets {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  /** The user's secret, made now if there is none (SET NX, so two first reads agree). */
  async get(userId: string): Promise<WebhookSecretView> {
    const key = this.keys.webhookSecret(userId);
    const existing = parse(await this.redis.get(key));
    if (existing !== null) return view(userId, existing);
    const fresh = newSecret();
    const set = await this.redis.set(key, JSON.stringify(fresh), 'NX');
    if (set === 'OK') return view(userId, fresh);
    const raced = parse(await this.redis.get(key));
    if (raced === null) throw new Error('webhook secret vanished while being created');
    return view(userId, raced);
  }

  /** A new secret; deliveries from now on are signed with it. */
  async rotate(userId: string): Promise<WebhookSecretView> {
    const fresh = newSecret();
    await this.redis.set(this.keys.webhookSecret(userId), JSON.stringify(fresh));
    return view(userId, fresh);
  }

  /** The secret to sign with, for the delivery worker. */
  async signingSecret(userId: string): Promise<string> {
    return (await this.get(userId)).secret;
  }
}

function view(userId: string, s: Stored): WebhookSecretView {
  return { user_id: userId, secret: s.secret, created_at: new Date(s.created_at).toISOString() };
}
