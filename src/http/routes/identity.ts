import { Router } from 'express';
import type { Principal } from '../../domain/roles.js';
import { type MeView, tokenCreateBody } from '../../domain/schemas/identity.js';
import { TokenIssuer } from '../../services/token-issuer.js';
import { allow, Caller, principalOf } from '../auth.js';
import type { RouteContext } from '../context.js';
import { parse } from '../validate.js';

function meOf(p: Principal): MeView {
  switch (p.kind) {
    case 'user':
      return { kind: 'user', user_id: p.userId, role: p.role };
    case 'agent':
      return { kind: 'agent', node_id: p.nodeId };
    case 'registrar':
      return { kind: 'registrar' };
  }
}

/** Who am I (any credential), and tokens for people, minted by admins. */
export function identityRoutes(ctx: RouteContext): Router {
  const r = Router();
  const issuer = new TokenIssuer(ctx.config.jwt);

  r.get('/me', (req, res) => {
    res.json(meOf(principalOf(req)));
  });

  r.post('/tokens', allow(Caller.Admin), (req, res) => {
    const body = parse(tokenCreateBody, req.body);
    const created = issuer.issue(body.user_id, body.role, body.ttl);
    const by = principalOf(req);
    req.log.info({ sub: body.user_id, role: body.role, ttl_s: body.ttl, by: by.kind === 'user' ? by.userId : by.kind }, 'token minted');
    res.status(201).json(created);
  });

  return r;
}
