import { z } from 'zod';
import { annotateLog } from '../util/log-context.js';
import { parse } from './validate.js';

export const nodeIdParam = z.string().regex(/^(gpu|cpu)-[a-f0-9]{12}$/, 'a node id looks like gpu-e5be90b5e5d6');
export const jobIdParam = z.uuid('a job id is a UUID');
export const agentIdParam = z.string().regex(/^agent-[a-f0-9]{12}$/, 'an agent id looks like agent-e5be90b5e5d6');
export const userIdParam = z.string().min(1).max(128);

// Built once: a zod object compiles a fast path on its first parse, which per request cost the
// heartbeat route about a tenth of its CPU.
const nodeIdPath = z.object({ node_id: nodeIdParam });
const jobIdPath = z.object({ job_id: jobIdParam });
const agentIdPath = z.object({ agent_id: agentIdParam });
const userIdPath = z.object({ user_id: userIdParam });

export const nodeIdOf = (params: object) => {
  const nodeId = parse(nodeIdPath, { node_id: (params as { nodeId?: unknown }).nodeId }, 'path').node_id;
  annotateLog({ nodeId });
  return nodeId;
};
export const jobIdOf = (params: object) => {
  const jobId = parse(jobIdPath, { job_id: (params as { jobId?: unknown }).jobId }, 'path').job_id;
  annotateLog({ jobId });
  return jobId;
};
export const agentIdOf = (params: object) => parse(agentIdPath, { agent_id: (params as { agentId?: unknown }).agentId }, 'path').agent_id;
export const userIdOf = (params: object) => parse(userIdPath, { user_id: (params as { userId?: unknown }).userId }, 'path').user_id;
