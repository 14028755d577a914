import { Router } from 'express';
import { agentRegisterBody } from '../../domain/schemas/node.js';
import { allow, Caller, principalOf } from '../auth.js';
import type { RouteContext } from '../context.js';
import { agentIdOf } from '../ids.js';
import { limitRegistrations } from '../rate-limit.js';
import { parse } from '../validate.js';

export function agentRoutes(ctx: RouteContext): Router {
  const r = Router();

  r.post('/agents/register', allow(Caller.Registrar, Caller.Admin), limitRegistrations(ctx.rateLimits), async (req, res) => {
    const body = parse(agentRegisterBody, req.body);
    const { node, apiKey, agentId } = await ctx.nodes.registerAgent(body);
    res
      .status(201)
      .location(`${req.baseUrl}/agents/${agentId}`)
      .json({
        agent_id: agentId,
        node_id: node.node_id,
        api_key: apiKey,
        heartbeat_interval_ms: ctx.config.heartbeatIntervalMs,
        config: ctx.agentConfig(node.node_id, agentId),
        node,
      });
  });

  // An agent sees itself (another agent is a 404, in the service); among people only admins.
  r.get('/agents/:agentId', allow(Caller.Admin, Caller.Agent), async (req, res) => {
    const p = principalOf(req);
    const agentId = agentIdOf(req.params);
    res.json(await ctx.nodes.getAgent(p, agentId));
  });

  r.get('/agents/:agentId/config', allow(Caller.Admin, Caller.Agent), async (req, res) => {
    const agent = await ctx.nodes.getAgent(principalOf(req), agentIdOf(req.params));
    res.json(ctx.agentConfig(agent.node_id, agent.agent_id));
  });

  return r;
}
