import { type Request, Router } from 'express';
import { ForbiddenError } from '../../domain/errors.js';
import { isAdmin } from '../../domain/roles.js';
import { allow, Caller, principalOf } from '../auth.js';
import type { RouteContext } from '../context.js';
import { userIdOf } from '../ids.js';

/** A user's own secret, or any user's for an admin; 403 otherwise. */
function ownUserId(req: Request): string {
  const p = principalOf(req);
  const userId = userIdOf(req.params);
  if (!isAdmin(p) && !(p.kind === 'user' && p.userId === userId)) throw new ForbiddenError("only admins see other users' webhook secrets");
  return userId;
}

/** The secret that signs a user's job webhooks: read (made on first use) and rotate. */
export function webhookRoutes(ctx: RouteContext): Router {
  const r = Router();
  const people = allow(Caller.User);

  r.get('/users/:userId/webhook-secret', people, async (req, res) => {
    res.set('Cache-Control', 'no-store').json(await ctx.webhookSecrets.get(ownUserId(req)));
  });

  r.post('/users/:userId/webhook-secret/rotate', people, async (req, res) => {
    res.set('Cache-Control', 'no-store').json(await ctx.webhookSecrets.rotate(ownUserId(req)));
  });

  return r;
}
