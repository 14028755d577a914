import type { RedisClient } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';

/** What the API limits, each with its own counters. */
export const RateLimitRule = {
  /** Jobs submitted, per user (a batch counts its jobs). */
  Submit: 'submit',
  /** Node and agent registrations, per client address. */
  Register: 'register',
  /** Dashboard sign-ins, per client address. */
  Session: 'session',
  /** Bearer tokens refused, per client address (agent keys aside). */
  AuthFailures: 'auth-failures',
} as const;
export type RateLimitRule = (typeof RateLimitRule)[keyof typeof RateLimitRule];

export interface RateLimitVerdict {
  readonly allowed: boolean;
  readonly limit: number;
  /** What is left in the window after this request (when it was counted). */
  readonly remaining: number;
  /** Milliseconds until the current fixed window ends and its count starts to fade. */
  readonly resetMs: number;
  /** Milliseconds until a request of the same cost would be allowed (0 when allowed). */
  readonly retryAfterMs: number;
}

/**
 * Sliding-window counters in Redis (lua/rate-limit-1.lua), so every API replica on the same
 * Redis and key prefix shares one budget per subject. The clock is Redis' own.
 */
export class RateLimiter {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    readonly windowMs: number,
  ) {}

  /** Counts `cost` against `subject`'s budget under `rule` when it fits; refuses it otherwise. */
  take(rule: RateLimitRule, subject: string, limit: number, cost = 1): Promise<RateLimitVerdict> {
    return this.run(rule, subject, limit, cost, true);
  }

  /** Whether a request of `cost` would fit now, without counting it. */
  peek(rule: RateLimitRule, subject: string, limit: number, cost = 1): Promise<RateLimitVerdict> {
    return this.run(rule, subject, limit, cost, false);
  }

  private async run(rule: RateLimitRule, subject: string, limit: number, cost: number, commit: boolean): Promise<RateLimitVerdict> {
    const [allowed, remaining, resetMs, retryAfterMs] = (await runScript(
      this.redis,
      ScriptName.RateLimit,
      [this.keys.rateLimit(rule, subject)],
      [limit, cost, this.windowMs, commit ? '1' : '0'],
    )) as [number, number, number, number];
    return { allowed: allowed === 1, limit, remaining, resetMs, retryAfterMs };
  }
}
