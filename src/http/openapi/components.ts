import type { z } from 'zod';
import { usageView, userLimitsBody, userLimitsView } from '../../domain/schemas/accounting.js';
import { agentConfig } from '../../domain/schemas/agent.js';
import { errorBody } from '../../domain/schemas/common.js';
import { meView, tokenCreateBody, tokenCreated } from '../../domain/schemas/identity.js';
import {
  jobBatchBody,
  jobBatchCreated,
  jobCreateBody,
  jobLogAppend,
  jobLogLine,
  jobLogPage,
  jobPage,
  jobStatusBatch,
  jobStatusBatchResults,
  jobStatusReport,
  jobView,
} from '../../domain/schemas/job.js';
import {
  agentRegisterBody,
  agentRegistered,
  agentView,
  gpuView,
  heartbeatAck,
  heartbeatBody,
  nodePage,
  nodePatchBody,
  nodeRegisterBody,
  nodeRegistered,
  nodeStats,
  nodeView,
} from '../../domain/schemas/node.js';
import { fleetSummary, jobEventView, queueList, queueSummary, tickView, timeline } from '../../domain/schemas/overview.js';
import { sessionBody } from '../../domain/schemas/session.js';

/**
 * The schemas the document names in `components.schemas`, so that operations and other schemas
 * point at them with `$ref`. Request bodies are converted as zod's input (defaults make a field
 * optional), responses as its output; a schema used both ways would need a name in each list.
 */
export const REQUEST_COMPONENTS: Readonly<Record<string, z.ZodType>> = {
  NodeRegister: nodeRegisterBody,
  NodePatch: nodePatchBody,
  Heartbeat: heartbeatBody,
  AgentRegister: agentRegisterBody,
  JobCreate: jobCreateBody,
  JobBatch: jobBatchBody,
  JobStatusReport: jobStatusReport,
  JobStatusBatch: jobStatusBatch,
  JobLogAppend: jobLogAppend,
  UserLimitsUpdate: userLimitsBody,
  TokenCreate: tokenCreateBody,
  SessionCreate: sessionBody,
};

export const RESPONSE_COMPONENTS: Readonly<Record<string, z.ZodType>> = {
  Error: errorBody,
  Gpu: gpuView,
  Node: nodeView,
  NodePage: nodePage,
  NodeRegistered: nodeRegistered,
  NodeStats: nodeStats,
  HeartbeatAck: heartbeatAck,
  Agent: agentView,
  AgentConfig: agentConfig,
  AgentRegistered: agentRegistered,
  Job: jobView,
  JobPage: jobPage,
  JobBatchCreated: jobBatchCreated,
  JobStatusBatchResults: jobStatusBatchResults,
  JobLogLine: jobLogLine,
  JobLogPage: jobLogPage,
  UserLimits: userLimitsView,
  Usage: usageView,
  Me: meView,
  TokenCreated: tokenCreated,
  QueueSummary: queueSummary,
  QueueList: queueList,
  FleetSummary: fleetSummary,
  Timeline: timeline,
  JobEvent: jobEventView,
  Tick: tickView,
};
