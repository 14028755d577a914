import { z } from 'zod';
import { parse } from './validate.js';

export const nodeIdParam = z.string().regex(/^(gpu|cpu)-[a-f0-9]{12}$/, 'a node id looks like gpu-e5be90b5e5d6');
export const jobIdParam = z.uuid('a job id is a UUID');
export const agentIdParam = z.string().regex(/^agent-[a-f0-9]{12}$/, 'an agent id looks like agent-e5be90b5e5d6');

export const nodeIdOf = (params: object) =>
  parse(z.object({ node_id: nodeIdParam }), { node_id: (params as { nodeId?: unknown }).nodeId }, 'path').node_id;
export const jobIdOf = (params: object) =>
  parse(z.object({ job_id: jobIdParam }), { job_id: (params as { jobId?: unknown }).jobId }, 'path').job_id;
export const agentIdOf = (params: object) =>
  parse(z.object({ agent_id: agentIdParam }), { agent_id: (params as { agentId?: unknown }).agentId }, 'path').agent_id;
