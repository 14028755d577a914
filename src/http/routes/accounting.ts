import { Router } from 'express';
import { ForbiddenError } from '../../domain/errors.js';
import { isAdmin } from '../../domain/roles.js';
import { usageQuery, userLimitsBody } from '../../domain/schemas/accounting.js';
import { allow, Caller, principalOf } from '../auth.js';
import type { RouteContext } from '../context.js';
import { userIdOf } from '../ids.js';
import { parse } from '../validate.js';

export function accountingRoutes(ctx: RouteContext): Router {
  const r = Router();
  const { accounting } = ctx;

  /** Usage from the ledger: own for users; admins any user's, grouped by user or node. */
  r.get('/usage', allow(Caller.User), async (req, res) => {
    const p = principalOf(req);
    const q = parse(usageQuery, req.query, 'query');
    const admin = isAdmin(p);
    const self = p.kind === 'user' ? p.userId : '';
    if (!admin && q.user_id !== undefined && q.user_id !== self) throw new ForbiddenError("only admins see other users' usage");
    const to = q.to ? Date.parse(q.to) : Date.now();
    const from = q.from ? Date.parse(q.from) : to - 30 * 86_400_000;
    const usage = await accounting.usage(from, to, q.group_by, admin ? q.user_id : self);
    res.json({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), group_by: q.group_by, ...usage });
  });

  const view = async (userId: string) => ({
    user_id: userId,
    ...(await accounting.limits(userId)),
    running_jobs: await accounting.runningCount(userId),
    ...(await accounting.standing(userId)),
  });

  r.get('/users/:userId/limits', allow(Caller.User), async (req, res) => {
    const p = principalOf(req);
    const userId = userIdOf(req.params);
    if (!isAdmin(p) && !(p.kind === 'user' && p.userId === userId)) throw new ForbiddenError("only admins see other users' limits");
    res.json(await view(userId));
  });

  r.put('/users/:userId/limits', allow(Caller.Admin), async (req, res) => {
    const userId = userIdOf(req.params);
    await accounting.setLimits(userId, parse(userLimitsBody, req.body));
    res.json(await view(userId));
  });

  return r;
}
