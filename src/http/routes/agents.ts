import { Router } from 'express';
import { NotFoundError } from '../../domain/errors.js';
import { agentRegisterBody } from '../../domain/schemas/node.js';
import { AuthKind, adminIfPerson, authenticate, principalOf } from '../auth.js';
import type { RouteContext } from '../context.js';
import { agentIdOf } from '../ids.js';
import { parse } from '../validate.js';

export function agentRoutes(ctx: RouteContext): Router {
  const r = Router();
  const registrar = authenticate(ctx.passport, AuthKind.Registration, AuthKind.Jwt);
  const peopleOrAgents = authenticate(ctx.passport, AuthKind.Jwt, AuthKind.AgentKey);

  r.post('/agents/register', registrar, async (req, res) => {
    adminIfPerson(principalOf(req));
    const body = parse(agentRegisterBody, req.body);
    const { node, apiKey, agentId } = await ctx.nodes.registerAgent(body);
    res
      .status(201)
      .location(`${req.baseUrl}/agents/${agentId}`)
      .json({ agent_id: agentId, node_id: node.node_id, api_key: apiKey, heartbeat_interval_ms: ctx.config.heartbeatIntervalMs, node });
  });

  r.get('/agents/:agentId', peopleOrAgents, async (req, res) => {
    const p = principalOf(req);
    const agentId = agentIdOf(req.params);
    // An agent sees itself; among people only admins see agents.
    if (p.kind === 'user' && p.role !== 'admin') throw new NotFoundError(`agent ${agentId}`);
    res.json(await ctx.nodes.getAgent(p, agentId));
  });

  return r;
}
