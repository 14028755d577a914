import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Principal } from '../domain/roles.js';
import type { RedisClient } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

/** `ipk_<key id>_<secret>`: the id finds the record, the secret is only ever stored hashed. */
const AGENT_KEY = /^ipk_([a-f0-9]{16})_([A-Za-z0-9_-]{43})$/;

const sha256 = (s: string): Buffer => createHash('sha256').update(s).digest();

/** Compares two secrets in constant time, whatever their lengths. */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

export interface IssuedAgentKey {
  /** Shown to the agent once. */
  readonly plain: string;
  readonly keyId: string;
  /** The fields of the key's record: the secret's hash, never the secret. */
  readonly record: Readonly<Record<string, string>>;
}

type AgentPrincipal = Extract<Principal, { kind: 'agent' }>;

/**
 * Agent API keys and the registration token. Verified keys are remembered for a few seconds so
 * a fleet's heartbeats do not cost a Redis read each; deleting a node forgets its keys at once
 * on this replica, and on the others within that time.
 */
export class Credentials {
  private readonly cache = new Map<string, { principal: AgentPrincipal; until: number }>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly registrationToken: string,
    private readonly cacheMs = 5000,
  ) {}

  isRegistrationToken(token: string): boolean {
    return secretsEqual(token, this.registrationToken);
  }

  static looksLikeAgentKey(token: string): boolean {
    return token.startsWith('ipk_');
  }

  issueAgentKey(nodeId: string, agentId: string, now: number): IssuedAgentKey {
    const keyId = randomBytes(8).toString('hex');
    const secret = randomBytes(32).toString('base64url');
    return {
      plain: `ipk_${keyId}_${secret}`,
      keyId,
      record: {
        key_id: keyId,
        secret_sha256: sha256(secret).toString('hex'),
        node_id: nodeId,
        agent_id: agentId,
        created_at: String(now),
      },
    };
  }

  async verifyAgentKey(token: string): Promise<AgentPrincipal | null> {
    const m = AGENT_KEY.exec(token);
    if (!m?.[1] || !m[2]) return null;
    const cacheKey = sha256(token).toString('hex');
    const hit = this.cache.get(cacheKey);
    if (hit !== undefined && hit.until > Date.now()) return hit.principal;

    const [hash, nodeId, agentId] = await this.redis.hmget(this.keys.apiKey(m[1]), 'secret_sha256', 'node_id', 'agent_id');
    if (!hash || !nodeId || !agentId) return null;
    const given = sha256(m[2]);
    const stored = Buffer.from(hash, 'hex');
    if (stored.length !== given.length || !timingSafeEqual(given, stored)) return null;
    const principal: AgentPrincipal = { kind: 'agent', nodeId, agentId, keyId: m[1] };
    if (this.cache.size > 50_000) this.cache.clear();
    this.cache.set(cacheKey, { principal, until: Date.now() + this.cacheMs });
    return principal;
  }

  forgetNode(nodeId: string): void {
    for (const [k, v] of this.cache) if (v.principal.nodeId === nodeId) this.cache.delete(k);
  }
}
