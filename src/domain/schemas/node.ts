import { z } from 'zod';
import { NODE_ADMIN_STATES, NODE_HEALTH_VALUES, NODE_STATUSES } from '../node-status.js';
import { agentConfig } from './agent.js';
import { isoTime, labels, mib, pageOf, paginationQuery } from './common.js';

const NODE_NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;
export const MAX_GPUS_PER_NODE = 64;

const price = () => z.number().min(0).max(1_000_000);

/** One GPU as its node describes it at registration. */
export const gpuDevice = z.strictObject({
  index: z
    .number()
    .int()
    .min(0)
    .max(MAX_GPUS_PER_NODE - 1),
  uuid: z.string().max(128).optional(),
  name: z.string().min(1).max(200),
  memory_total: mib(),
});
export type GpuDevice = z.infer<typeof gpuDevice>;

/** `POST /nodes/register`, the original README's body, plus optional per-GPU detail, labels and prices. */
export const nodeRegisterBody = z
  .strictObject({
    node_name: z.string().regex(NODE_NAME, 'letters, digits, . _ - (max 64), starting and ending alphanumeric'),
    hostname: z.string().regex(HOSTNAME, 'a hostname'),
    gpu_count: z.number().int().min(0).max(MAX_GPUS_PER_NODE),
    gpu_type: z.string().trim().min(1).max(200).optional(),
    gpu_memory_total: mib().optional().describe('MiB per GPU'),
    cpu_cores: z.number().int().min(1).max(4096),
    memory_total: mib().describe('RAM in MiB'),
    disk_total: mib().optional(),
    max_concurrent_jobs: z.number().int().min(1).max(1024).optional(),
    gpus: z.array(gpuDevice).max(MAX_GPUS_PER_NODE).optional().describe('per-device detail; overrides gpu_type/memory'),
    labels: labels().optional(),
    price_per_gpu_hour: price().default(0),
    price_per_cpu_core_hour: price().default(0),
    price_per_gib_ram_hour: price().default(0),
    os: z.string().max(200).optional(),
    simulated_gpus: z.boolean().default(false).describe('GPUs are simulated (development only)'),
  })
  .superRefine((b, ctx) => {
    if (b.gpus !== undefined) {
      if (b.gpus.length !== b.gpu_count) {
        ctx.addIssue({ code: 'custom', path: ['gpus'], message: `lists ${b.gpus.length} GPUs but gpu_count is ${b.gpu_count}` });
      }
      const indices = new Set(b.gpus.map((g) => g.index));
      if (indices.size !== b.gpus.length) ctx.addIssue({ code: 'custom', path: ['gpus'], message: 'GPU indices must be distinct' });
      return;
    }
    if (b.gpu_count > 0) {
      if (b.gpu_type === undefined) ctx.addIssue({ code: 'custom', path: ['gpu_type'], message: 'required when gpu_count > 0' });
      if (b.gpu_memory_total === undefined || b.gpu_memory_total === 0) {
        ctx.addIssue({ code: 'custom', path: ['gpu_memory_total'], message: 'required (MiB per GPU) when gpu_count > 0' });
      }
    }
  });
export type NodeRegisterBody = z.infer<typeof nodeRegisterBody>;

/** `POST /agents/register`: an agent process registers its node and itself in one call. */
export const agentRegisterBody = z.strictObject({
  agent_name: z.string().regex(NODE_NAME).optional(),
  agent_version: z.string().max(64).default('unknown'),
  executor: z.enum(['docker', 'process']).optional(),
  node: nodeRegisterBody,
});
export type AgentRegisterBody = z.infer<typeof agentRegisterBody>;

/** One GPU's live figures in a heartbeat. */
export const gpuLive = z.strictObject({
  index: z
    .number()
    .int()
    .min(0)
    .max(MAX_GPUS_PER_NODE - 1),
  memory_free: mib().describe('MiB free for new jobs: what nvidia-smi reports free, less what running jobs reserved'),
  memory_used: mib().optional(),
  utilization: z.number().min(0).max(100).optional(),
  temperature: z.number().min(-50).max(200).optional(),
  healthy: z.boolean().default(true),
  error: z.string().max(500).optional(),
});
export type GpuLive = z.infer<typeof gpuLive>;

/**
 * `POST /nodes/{id}/heartbeat`. The original README's fields: `gpu_memory_available` is MiB free
 * on each GPU (the same on all of them); agents send `gpus` with per-device figures instead.
 */
export const heartbeatBody = z.strictObject({
  node_id: z.string().max(64).optional().describe('must match the path when given'),
  gpu_memory_available: mib().optional(),
  gpus: z.array(gpuLive).max(MAX_GPUS_PER_NODE).optional(),
  cpu_cores_available: z.number().min(0).max(4096),
  memory_available: mib().optional(),
  disk_available: mib().optional(),
  current_jobs: z.number().int().min(0).max(100_000),
  running_job_ids: z.array(z.string().max(64)).max(1024).optional(),
  health_status: z.enum(NODE_HEALTH_VALUES).default('healthy'),
  health_reasons: z.array(z.string().max(500)).max(32).optional(),
});
export type HeartbeatBody = z.infer<typeof heartbeatBody>;

export const pricing = z.object({
  price_per_gpu_hour: z.number(),
  price_per_cpu_core_hour: z.number(),
  price_per_gib_ram_hour: z.number(),
});

export const gpuView = z.object({
  index: z.number().int(),
  uuid: z.string().nullable(),
  name: z.string(),
  family: z.string(),
  memory_total: z.number().int(),
  memory_free: z.number().int().nullable(),
  memory_used: z.number().int().nullable(),
  utilization: z.number().nullable(),
  temperature: z.number().nullable(),
  healthy: z.boolean().nullable(),
  error: z.string().nullable(),
});

export const nodeView = z.object({
  node_id: z.string(),
  node_name: z.string(),
  hostname: z.string(),
  status: z.enum(NODE_STATUSES),
  admin_state: z.enum(NODE_ADMIN_STATES),
  health_status: z.enum(NODE_HEALTH_VALUES).nullable(),
  health_reasons: z.array(z.string()),
  gpu_count: z.number().int(),
  gpu_type: z.string().nullable(),
  gpu_memory_total: z.number().int().describe('MiB per GPU (the largest, on mixed nodes)'),
  gpu_memory_available: z.number().int().describe('MiB free on the GPU with the most free memory; 0 offline'),
  gpus: z.array(gpuView),
  cpu_cores: z.number().int(),
  cpu_cores_available: z.number(),
  memory_total: z.number().int(),
  memory_available: z.number().int(),
  disk_total: z.number().int().nullable(),
  disk_available: z.number().int().nullable(),
  current_jobs: z.number().int(),
  max_concurrent_jobs: z.number().int(),
  labels: z.record(z.string(), z.string()),
  ...pricing.shape,
  simulated_gpus: z.boolean(),
  os: z.string().nullable(),
  agent_id: z.string().nullable(),
  registered_at: isoTime(),
  last_heartbeat: isoTime().nullable(),
});
export type NodeView = z.infer<typeof nodeView>;
export const nodePage = pageOf(nodeView);

export const nodeRegistered = nodeView.extend({
  api_key: z.string().describe('the agent API key: shown once, stored hashed'),
});

export const agentView = z.object({
  agent_id: z.string(),
  agent_name: z.string(),
  agent_version: z.string(),
  executor: z.string().nullable(),
  node_id: z.string(),
  status: z.enum(NODE_STATUSES),
  registered_at: isoTime(),
  last_heartbeat: isoTime().nullable(),
  current_jobs: z.number().int(),
  running_job_ids: z.array(z.string()),
});
export type AgentView = z.infer<typeof agentView>;

export const agentRegistered = z.object({
  agent_id: z.string(),
  node_id: z.string(),
  api_key: z.string(),
  heartbeat_interval_ms: z.number().int(),
  config: agentConfig,
  node: nodeView,
});

export const heartbeatAck = z.object({
  node_id: z.string(),
  status: z.enum(NODE_STATUSES),
  admin_state: z.enum(NODE_ADMIN_STATES),
  next_heartbeat_ms: z.number().int(),
  cancel_job_ids: z.array(z.string()).describe('jobs on this node that were cancelled: stop them'),
  labels: z.record(z.string(), z.string()).describe("the node's labels as they stand"),
  ...pricing.shape,
  capped_users: z.array(z.string()).describe('users at their cap of running jobs: leave their jobs'),
});

export type HeartbeatAck = z.infer<typeof heartbeatAck>;

/** `PATCH /nodes/{id}`: an admin changes prices, labels or job slots. */
export const nodePatchBody = z.strictObject({
  price_per_gpu_hour: price().optional(),
  price_per_cpu_core_hour: price().optional(),
  price_per_gib_ram_hour: price().optional(),
  labels: labels().optional(),
  max_concurrent_jobs: z.number().int().min(1).max(1024).optional(),
});

export const nodeStats = z.object({
  node_id: z.string(),
  status: z.enum(NODE_STATUSES),
  uptime_seconds: z.number().describe('since the agent came online this time; 0 offline'),
  registered_seconds: z.number(),
  jobs_run: z.number().int().describe('jobs that ended on this node'),
  jobs_succeeded: z.number().int(),
  jobs_failed: z.number().int().describe('failed and timed out'),
  jobs_cancelled: z.number().int(),
  gpu_hours: z.number().describe('GPU-hours served: run time times GPUs held, summed'),
  current_jobs: z.number().int(),
  utilization: z.object({
    gpu_percent: z.number().nullable().describe('mean utilisation over healthy GPUs'),
    gpu_memory_percent: z.number().nullable().describe('share of GPU memory not free'),
    cpu_percent: z.number().nullable(),
    memory_percent: z.number().nullable(),
    job_slots_percent: z.number(),
  }),
});
export type NodeStats = z.infer<typeof nodeStats>;

/** `GET /available-nodes/` filters. */
export const availableNodesFilters = {
  gpu_memory_required: z.coerce.number().int().min(0).default(0),
  gpu_count: z.coerce.number().int().min(0).max(MAX_GPUS_PER_NODE).optional(),
  gpu_type: z.string().trim().min(1).max(200).optional(),
  cpu_cores_required: z.coerce.number().min(0).default(0),
  memory_required: z.coerce.number().int().min(0).default(0),
};

/** `GET /nodes/`. */
export const nodeListQuery = (pageSizeMax: number) =>
  z.strictObject({ ...paginationQuery(pageSizeMax), status: z.enum(NODE_STATUSES).optional() });

/** `GET /available-nodes/`. */
export const availableNodesQuery = (pageSizeMax: number) => z.strictObject({ ...paginationQuery(pageSizeMax), ...availableNodesFilters });
