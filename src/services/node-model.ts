import { gpuFamily } from '../domain/gpu.js';
import {
  deriveNodeStatus,
  NodeHealth as Health,
  NODE_ADMIN_STATES,
  NODE_HEALTH_VALUES,
  type NodeAdminState,
  type NodeHealth,
} from '../domain/node-status.js';
import type { GpuLive, NodeRegisterBody, NodeView } from '../domain/schemas/node.js';
import type { Keys } from '../redis/keys.js';
import { iso, isoOrNull } from '../util/time.js';

/**
 * How a node is kept in Redis (two hashes of strings) and how it is shown. The record lasts;
 * the live hash is rewritten by every heartbeat and expires when they stop.
 */

export interface GpuSpec {
  readonly index: number;
  readonly uuid: string | null;
  readonly name: string;
  readonly family: string;
  readonly memory_total: number;
}

export interface NodeRecord {
  readonly node_id: string;
  readonly node_name: string;
  readonly hostname: string;
  readonly gpus: readonly GpuSpec[];
  readonly cpu_cores: number;
  readonly memory_total: number;
  readonly disk_total: number | null;
  readonly max_concurrent_jobs: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly price_per_gpu_hour: number;
  readonly price_per_cpu_core_hour: number;
  readonly price_per_gib_ram_hour: number;
  readonly os: string | null;
  readonly simulated_gpus: boolean;
  readonly admin_state: NodeAdminState;
  readonly registered_at: number;
  readonly agent_id: string | null;
  readonly last_heartbeat: number | null;
}

export interface GpuLiveState {
  readonly index: number;
  readonly memory_free: number;
  readonly memory_used: number | null;
  readonly utilization: number | null;
  readonly temperature: number | null;
  readonly healthy: boolean;
  readonly error: string | null;
}

export interface NodeLive {
  readonly gpus: readonly GpuLiveState[];
  readonly cpu_free: number;
  readonly mem_free: number;
  readonly disk_free: number | null;
  readonly current_jobs: number;
  readonly running_job_ids: readonly string[];
  readonly health: NodeHealth;
  readonly health_reasons: readonly string[];
  readonly last_heartbeat: number;
  readonly up_since: number;
}

/** The GPUs a registration describes: its per-device list, or gpu_count copies of gpu_type. */
export function gpuSpecsFrom(body: NodeRegisterBody): GpuSpec[] {
  if (body.gpus !== undefined) {
    return [...body.gpus]
      .sort((a, b) => a.index - b.index)
      .map((g) => ({
        index: g.index,
        uuid: g.uuid ?? null,
        name: g.name,
        family: gpuFamily(g.name),
        memory_total: g.memory_total,
      }));
  }
  const name = body.gpu_type ?? '';
  return Array.from({ length: body.gpu_count }, (_, index) => ({
    index,
    uuid: null,
    name,
    family: gpuFamily(name),
    memory_total: body.gpu_memory_total ?? 0,
  }));
}

const num = (s: string | undefined, fallback = 0): number => {
  if (s === undefined || s === '') return fallback;
  const n = Number(s);
  return Number.isFinite(n) ? n : fallback;
};
const numOrNull = (s: string | undefined): number | null => (s === undefined || s === '' ? null : num(s));
const json = <T>(s: string | undefined, fallback: T): T => {
  if (s === undefined || s === '') return fallback;
  try {
    return JSON.parse(s) as T;
  } catch {
    return fallback;
  }
};

export function recordFields(r: Omit<NodeRecord, 'last_heartbeat'>): Record<string, string> {
  return {
    node_id: r.node_id,
    node_name: r.node_name,
    hostname: r.hostname,
    gpus: JSON.stringify(r.gpus),
    cpu_cores: String(r.cpu_cores),
    memory_total: String(r.memory_total),
    disk_total: r.disk_total === null ? '' : String(r.disk_total),
    max_concurrent_jobs: String(r.max_concurrent_jobs),
    labels: JSON.stringify(r.labels),
    price_per_gpu_hour: String(r.price_per_gpu_hour),
    price_per_cpu_core_hour: String(r.price_per_cpu_core_hour),
    price_per_gib_ram_hour: String(r.price_per_gib_ram_hour),
    os: r.os ?? '',
    simulated_gpus: r.simulated_gpus ? '1' : '0',
    admin_state: r.admin_state,
    registered_at: String(r.registered_at),
    agent_id: r.agent_id ?? '',
    idx: '[]',
  };
}

export function parseRecord(h: Record<string, string>): NodeRecord | null {
  if (h.node_id === undefined) return null;
  const admin = NODE_ADMIN_STATES.find((s) => s === h.admin_state) ?? 'active';
  return {
    node_id: h.node_id,
    node_name: h.node_name ?? '',
    hostname: h.hostname ?? '',
    gpus: json<GpuSpec[]>(h.gpus, []),
    cpu_cores: num(h.cpu_cores),
    memory_total: num(h.memory_total),
    disk_total: numOrNull(h.disk_total),
    max_concurrent_jobs: num(h.max_concurrent_jobs, 1),
    labels: json<Record<string, string>>(h.labels, {}),
    price_per_gpu_hour: num(h.price_per_gpu_hour),
    price_per_cpu_core_hour: num(h.price_per_cpu_core_hour),
    price_per_gib_ram_hour: num(h.price_per_gib_ram_hour),
    os: h.os || null,
    simulated_gpus: h.simulated_gpus === '1',
    admin_state: admin,
    registered_at: num(h.registered_at),
    agent_id: h.agent_id || null,
    last_heartbeat: numOrNull(h.last_heartbeat),
  };
}

export function liveFields(live: Omit<NodeLive, 'up_since' | 'last_heartbeat'>, slotsFree: number): Record<string, string> {
  const healthyFree = live.gpus.filter((g) => g.healthy).map((g) => g.memory_free);
  return {
    gpus: JSON.stringify(live.gpus),
    gpu_free_max: String(healthyFree.length > 0 ? Math.max(...healthyFree) : 0),
    cpu_free: String(live.cpu_free),
    mem_free: String(live.mem_free),
    disk_free: live.disk_free === null ? '' : String(live.disk_free),
    slots_free: String(slotsFree),
    current_jobs: String(live.current_jobs),
    running_job_ids: JSON.stringify(live.running_job_ids),
    health: live.health,
    health_reasons: JSON.stringify(live.health_reasons),
  };
}

export function parseLive(h: Record<string, string>): NodeLive | null {
  if (h.last_heartbeat === undefined) return null;
  return {
    gpus: json<GpuLiveState[]>(h.gpus, []),
    cpu_free: num(h.cpu_free),
    mem_free: num(h.mem_free),
    disk_free: numOrNull(h.disk_free),
    current_jobs: num(h.current_jobs),
    running_job_ids: json<string[]>(h.running_job_ids, []),
    health: NODE_HEALTH_VALUES.find((v) => v === h.health) ?? Health.Healthy,
    health_reasons: json<string[]>(h.health_reasons, []),
    last_heartbeat: num(h.last_heartbeat),
    up_since: num(h.up_since),
  };
}

/** Per-GPU live state from a heartbeat, checked against the GPUs the node registered. */
export function gpuLiveFrom(
  specs: readonly GpuSpec[],
  reported: readonly GpuLive[] | undefined,
  uniformFree: number | undefined,
): GpuLiveState[] | { field: string; message: string } {
  if (specs.length === 0) return [];
  if (reported === undefined) {
    if (uniformFree === undefined) {
      return { field: 'gpu_memory_available', message: 'this node has GPUs: send gpu_memory_available or gpus' };
    }
    return specs.map((s) => ({
      index: s.index,
      memory_free: Math.min(uniformFree, s.memory_total),
      memory_used: null,
      utilization: null,
      temperature: null,
      healthy: true,
      error: null,
    }));
  }
  const byIndex = new Map(specs.map((s) => [s.index, s]));
  const out: GpuLiveState[] = [];
  for (const [i, g] of reported.entries()) {
    const spec = byIndex.get(g.index);
    if (spec === undefined) return { field: `gpus.${i}.index`, message: `this node has no GPU ${g.index}` };
    if (g.memory_free > spec.memory_total) {
      return { field: `gpus.${i}.memory_free`, message: `exceeds the GPU's ${spec.memory_total} MiB` };
    }
    out.push({
      index: g.index,
      memory_free: g.memory_free,
      memory_used: g.memory_used ?? null,
      utilization: g.utilization ?? null,
      temperature: g.temperature ?? null,
      healthy: g.healthy,
      error: g.error ?? null,
    });
  }
  return out;
}

export type FitEntry = readonly [key: string, score: number];

/**
 * The node's entries in the fit and capacity indexes. For every GPU family it has (and for
 * `any`), fit index k scores the node by the free memory of its k-th freest healthy GPU, so "k
 * GPUs with X MiB free each" is one range read; capacity index k does the same with the GPUs'
 * total memory. Index `any:0` holds every schedulable node, scored by healthy GPU count so
 * CPU-only queries see CPU nodes first. An unhealthy node has no entries.
 */
export function fitEntries(keys: Keys, specs: readonly GpuSpec[], gpus: readonly GpuLiveState[], health: NodeHealth): FitEntry[] {
  if (health === Health.Unhealthy) return [];
  const specOf = new Map(specs.map((s) => [s.index, s]));
  const free = new Map<string, number[]>([['any', []]]);
  const total = new Map<string, number[]>([['any', []]]);
  for (const g of gpus) {
    if (!g.healthy) continue;
    const spec = specOf.get(g.index);
    const family = spec?.family ?? 'unknown';
    for (const f of ['any', family]) {
      if (f === family && f === 'any') continue;
      free.set(f, [...(free.get(f) ?? []), g.memory_free]);
      total.set(f, [...(total.get(f) ?? []), spec?.memory_total ?? g.memory_free]);
    }
  }
  const count = free.get('any')?.length ?? 0;
  const entries: FitEntry[] = [
    [keys.fitIndex('any', 0), count],
    [keys.capIndex('any', 0), count],
  ];
  for (const [family, list] of free) {
    list.sort((a, b) => b - a);
    for (const [i, mib] of list.entries()) entries.push([keys.fitIndex(family, i + 1), mib]);
  }
  for (const [family, list] of total) {
    list.sort((a, b) => b - a);
    for (const [i, mib] of list.entries()) entries.push([keys.capIndex(family, i + 1), mib]);
  }
  return entries;
}

export function toNodeView(r: NodeRecord, live: NodeLive | null): NodeView {
  const liveByIndex = new Map((live?.gpus ?? []).map((g) => [g.index, g]));
  const names = [...new Set(r.gpus.map((g) => g.name))];
  const healthyFree = (live?.gpus ?? []).filter((g) => g.healthy).map((g) => g.memory_free);
  const currentJobs = live?.current_jobs ?? 0;
  return {
    node_id: r.node_id,
    node_name: r.node_name,
    hostname: r.hostname,
    status: deriveNodeStatus(live !== null, live?.health, r.admin_state, currentJobs),
    admin_state: r.admin_state,
    health_status: live?.health ?? null,
    health_reasons: [...(live?.health_reasons ?? [])],
    gpu_count: r.gpus.length,
    gpu_type: names.length === 0 ? null : names.join(', '),
    gpu_memory_total: r.gpus.reduce((m, g) => Math.max(m, g.memory_total), 0),
    gpu_memory_available: healthyFree.length > 0 ? Math.max(...healthyFree) : 0,
    gpus: r.gpus.map((g) => {
      const l = liveByIndex.get(g.index);
      return {
        index: g.index,
        uuid: g.uuid,
        name: g.name,
        family: g.family,
        memory_total: g.memory_total,
        memory_free: l?.memory_free ?? null,
        memory_used: l?.memory_used ?? null,
        utilization: l?.utilization ?? null,
        temperature: l?.temperature ?? null,
        healthy: l?.healthy ?? null,
        error: l?.error ?? null,
      };
    }),
    cpu_cores: r.cpu_cores,
    cpu_cores_available: live?.cpu_free ?? 0,
    memory_total: r.memory_total,
    memory_available: live?.mem_free ?? 0,
    disk_total: r.disk_total,
    disk_available: live?.disk_free ?? null,
    current_jobs: currentJobs,
    max_concurrent_jobs: r.max_concurrent_jobs,
    labels: { ...r.labels },
    price_per_gpu_hour: r.price_per_gpu_hour,
    price_per_cpu_core_hour: r.price_per_cpu_core_hour,
    price_per_gib_ram_hour: r.price_per_gib_ram_hour,
    simulated_gpus: r.simulated_gpus,
    os: r.os,
    agent_id: r.agent_id,
    registered_at: iso(r.registered_at),
    last_heartbeat: isoOrNull(live ? String(live.last_heartbeat) : r.last_heartbeat === null ? undefined : String(r.last_heartbeat)),
  };
}
