import type { ApiConfig } from '../config/api-config.js';
import type { AgentConfig } from '../domain/schemas/agent.js';
import type { TierTable } from '../domain/tiers.js';
import type { Keys } from '../redis/keys.js';

/**
 * What an agent needs to know from the control plane to work its queues: where the tier queues
 * are and how their bounds run, how often to beat, and the limits the API enforces. Agents are
 * told, not configured, so they cannot drift from the API.
 */
export function agentConfigFor(config: ApiConfig, tiers: TierTable, keys: Keys, nodeId: string, agentId: string): AgentConfig {
  let lower = 0;
  return {
    agent_id: agentId,
    node_id: nodeId,
    heartbeat_interval_ms: config.heartbeatIntervalMs,
    heartbeat_ttl_ms: config.heartbeatTtlMs,
    tiers: tiers.all.map((t) => {
      const entry = {
        name: t.name,
        kind: t.kind,
        min_gpu_memory_mib: t.kind === 'cpu' ? 0 : lower,
        max_gpu_memory_mib: t.maxGpuMemoryMiB,
        queue_name: t.name,
        queue_prefix: keys.queuePrefix(t.name),
      };
      if (t.kind === 'gpu') lower = t.maxGpuMemoryMiB + 1;
      return entry;
    }),
    limits: {
      result_bytes: config.limits.resultBytes,
      log_lines: config.limits.jobLogLines,
    },
  };
}
