import { NODE_STATUSES } from '../domain/node-status.js';
import { tierOfQueue } from '../domain/queues.js';
import type { JobQueues } from '../services/job-queues.js';
import type { NodeRegistry } from '../services/node-registry.js';
import { type FleetNode, type MetricSources, QUEUE_STATES } from './api-metrics.js';

/** Nodes that get per-node series (GPU memory, heartbeat age): the first registered, so series stay bounded. */
export const MAX_NODE_SERIES = 2000;
/** Nodes counted by status at one scrape; past this the counts are of the first ones registered. */
export const MAX_NODES_COUNTED = 50_000;
const PAGE = 1000;

/** Reads what the scrape-time gauges show, through the services (never Redis keys directly). */
export function metricSources(d: {
  queues: JobQueues;
  nodes: NodeRegistry;
  pendingByTier: () => Promise<Record<string, { jobs: number; gpu_memory_mib: number }>>;
}): MetricSources {
  return {
    nodeStatuses: NODE_STATUSES,
    // The tiers' queues and the per-family queues this process has used.
    queueDepths: () =>
      Promise.all(
        d.queues.all.map(async (q) => ({ tier: tierOfQueue(q.name), queue: q.name, counts: await q.getJobCounts(...QUEUE_STATES) })),
      ),
    pendingByTier: d.pendingByTier,
    fleet: async () => {
      const byStatus: Record<string, number> = {};
      const nodes: FleetNode[] = [];
      let cursor: string | undefined;
      for (let seen = 0; seen < MAX_NODES_COUNTED; ) {
        const page = await d.nodes.listNodes(PAGE, cursor);
        for (const n of page.items) {
          byStatus[n.status] = (byStatus[n.status] ?? 0) + 1;
          if (nodes.length >= MAX_NODE_SERIES) continue;
          const gpus = n.gpus.flatMap((g) =>
            g.memory_free === null ? [] : [{ index: g.index, totalMiB: g.memory_total, freeMiB: g.memory_free }],
          );
          const beat = n.last_heartbeat === null ? null : Date.parse(n.last_heartbeat);
          nodes.push({ name: n.node_name || n.node_id, lastHeartbeatMs: beat !== null && Number.isFinite(beat) ? beat : null, gpus });
        }
        seen += page.items.length;
        if (page.next_cursor === null || page.items.length === 0) break;
        cursor = page.next_cursor;
      }
      return { byStatus, nodes };
    },
  };
}
