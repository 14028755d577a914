import { Router } from 'express';
import { NotFoundError } from '../../domain/errors.js';
import { NodeAdminState } from '../../domain/node-status.js';
import { availableNodesQuery, heartbeatBody, nodeListQuery, nodePatchBody, nodeRegisterBody } from '../../domain/schemas/node.js';
import { allow, Caller, principalOf } from '../auth.js';
import type { RouteContext } from '../context.js';
import { nodeIdOf } from '../ids.js';
import { limitRegistrations } from '../rate-limit.js';
import { parse } from '../validate.js';

export function nodeRoutes(ctx: RouteContext): Router {
  const r = Router();
  const { nodes } = ctx;
  const people = allow(Caller.User);
  const admins = allow(Caller.Admin);
  const peopleOrAgents = allow(Caller.User, Caller.Agent);
  const registrar = allow(Caller.Registrar, Caller.Admin);
  const listQuery = nodeListQuery(ctx.config.limits.pageSizeMax);
  const availableQuery = availableNodesQuery(ctx.config.limits.pageSizeMax);

  /** People see the fleet; an agent sees only its own node. */
  const mayReadNode = (p: ReturnType<typeof principalOf>, nodeId: string) =>
    p.kind === 'user' || (p.kind === 'agent' && p.nodeId === nodeId);

  r.post('/nodes/register', registrar, limitRegistrations(ctx.rateLimits), async (req, res) => {
    const body = parse(nodeRegisterBody, req.body);
    const { node, apiKey } = await nodes.registerNode(body);
    res
      .status(201)
      .location(`${req.baseUrl}/nodes/${node.node_id}`)
      .json({ ...node, api_key: apiKey });
  });

  r.get('/nodes', people, async (req, res) => {
    const q = parse(listQuery, req.query, 'query');
    res.json(await nodes.listNodes(q.limit, q.cursor, q.status));
  });

  r.get('/nodes/:nodeId', peopleOrAgents, async (req, res) => {
    const nodeId = nodeIdOf(req.params);
    if (!mayReadNode(principalOf(req), nodeId)) throw new NotFoundError(`node ${nodeId}`);
    res.json(await nodes.getNode(nodeId));
  });

  r.get('/nodes/:nodeId/stats', peopleOrAgents, async (req, res) => {
    const nodeId = nodeIdOf(req.params);
    if (!mayReadNode(principalOf(req), nodeId)) throw new NotFoundError(`node ${nodeId}`);
    res.json(await nodes.nodeStats(nodeId));
  });

  r.post('/nodes/:nodeId/heartbeat', allow(Caller.Agent, Caller.Admin), async (req, res) => {
    const p = principalOf(req);
    const nodeId = nodeIdOf(req.params);
    res.json(await nodes.heartbeat(p, nodeId, parse(heartbeatBody, req.body)));
  });

  const adminStates = { cordon: NodeAdminState.Cordoned, uncordon: NodeAdminState.Active, drain: NodeAdminState.Draining } as const;
  for (const [action, state] of Object.entries(adminStates)) {
    r.post(`/nodes/:nodeId/${action}`, admins, async (req, res) => {
      res.json(await nodes.setAdminState(nodeIdOf(req.params), state));
    });
  }

  r.patch('/nodes/:nodeId', admins, async (req, res) => {
    res.json(await nodes.patchNode(nodeIdOf(req.params), parse(nodePatchBody, req.body)));
  });

  r.delete('/nodes/:nodeId', admins, async (req, res) => {
    await nodes.deleteNode(nodeIdOf(req.params));
    res.status(204).end();
  });

  r.get('/available-nodes', people, async (req, res) => {
    const q = parse(availableQuery, req.query, 'query');
    res.json(await nodes.availableNodes(q, q.limit, q.cursor));
  });

  return r;
}
