import { z } from 'zod';

/** What the control plane tells an agent at registration and on `GET /agents/{id}/config`. */
export const agentConfig = z.object({
  agent_id: z.string(),
  node_id: z.string(),
  heartbeat_interval_ms: z.number().int(),
  heartbeat_ttl_ms: z.number().int(),
  tiers: z.array(
    z.object({
      name: z.string(),
      kind: z.enum(['cpu', 'gpu']),
      min_gpu_memory_mib: z.number().int(),
      max_gpu_memory_mib: z.number().int(),
      queue_name: z.string(),
      queue_prefix: z.string().describe("BullMQ's prefix option for this tier's queue"),
    }),
  ),
  limits: z.object({
    result_bytes: z.number().int(),
    log_lines: z.number().int(),
  }),
});
export type AgentConfig = z.infer<typeof agentConfig>;
