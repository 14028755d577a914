import { Router } from 'express';
import { UnauthorizedError } from '../../domain/errors.js';
import { sessionBody } from '../../domain/schemas/session.js';
import type { PersonTokenVerifier } from '../auth.js';
import type { RouteContext } from '../context.js';
import { limitSignIns } from '../rate-limit.js';
import { clearedSessionCookie, readCookie, SESSION_COOKIE, sessionCookie } from '../session.js';
import { parse } from '../validate.js';

/**
 * Signing in and out of the dashboard. Mounted before authentication: the token to check comes in
 * the body. Agent keys and the registration token make no session: only people use browsers.
 */
export function sessionRoutes(ctx: RouteContext, verifyPerson: PersonTokenVerifier): Router {
  const r = Router();

  r.post('/session', limitSignIns(ctx.rateLimits), async (req, res) => {
    const { token } = parse(sessionBody, req.body);
    const verified = verifyPerson(token);
    if (verified === null) throw new UnauthorizedError("the token was not accepted: sign in with a person's JWT");
    const session = await ctx.sessions.mint(verified.principal, verified.expiresAt);
    res.setHeader('Set-Cookie', sessionCookie(session.token, session.maxAgeSeconds, req.secure));
    res.status(204).end();
  });

  r.delete('/session', async (req, res) => {
    // Ended for every copy of the cookie, not only this browser's.
    const cookie = readCookie(req, SESSION_COOKIE);
    if (cookie !== null) await ctx.sessions.end(cookie);
    res.setHeader('Set-Cookie', clearedSessionCookie(req.secure));
    res.status(204).end();
  });

  return r;
}
