import { z } from 'zod';
import { parseDurationSeconds } from '../duration.js';
import { ROLES } from '../roles.js';
import { isoTime } from './common.js';

/** `GET /me`: who the API takes the caller to be. */
export const meView = z.object({
  kind: z.enum(['user', 'agent', 'registrar']),
  user_id: z.string().optional().describe('people: the JWT subject'),
  role: z.enum(ROLES).optional().describe('people: user or admin'),
  node_id: z.string().optional().describe('agents: the node the key belongs to'),
});
export type MeView = z.infer<typeof meView>;

export const TOKEN_TTL_DEFAULT_SECONDS = 24 * 3600;
export const TOKEN_TTL_MAX_SECONDS = 30 * 86_400;

/** `POST /tokens`: an admin mints a person's token from the API's HS256 secret. */
export const tokenCreateBody = z.strictObject({
  user_id: z.string().min(1).max(128).describe("the token's subject"),
  role: z.enum(ROLES).default('user'),
  ttl: z
    .union([z.string().max(32), z.number()])
    .default(TOKEN_TTL_DEFAULT_SECONDS)
    .transform((v, ctx) => {
      const seconds = parseDurationSeconds(v);
      if (seconds === null || seconds < 60 || seconds > TOKEN_TTL_MAX_SECONDS) {
        ctx.addIssue({ code: 'custom', message: 'a lifetime from 60 s to 30 days: seconds, or like 90m, 12h, 7d' });
        return z.NEVER;
      }
      return seconds;
    })
    .describe('how long the token is valid: seconds, or like 90m, 12h, 7d (default 24h, at most 30 days)'),
});
export type TokenCreateBody = z.infer<typeof tokenCreateBody>;

export const tokenCreated = z.object({
  token: z.string().describe('a JWT; shown once, not stored'),
  user_id: z.string(),
  role: z.enum(ROLES),
  expires_at: isoTime(),
});
export type TokenCreated = z.infer<typeof tokenCreated>;
