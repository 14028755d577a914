import { randomBytes } from 'node:crypto';
import type { Prices } from '../domain/cost.js';
import { ConflictError, NotFoundError, ValidationError } from '../domain/errors.js';
import { gpuFamilies } from '../domain/gpu.js';
import { deriveNodeStatus, NODE_ADMIN_STATES, NodeAdminState, type NodeStatus } from '../domain/node-status.js';
import type { Principal } from '../domain/roles.js';
import type { Page } from '../domain/schemas/common.js';
import type {
  AgentRegisterBody,
  AgentView,
  HeartbeatAck,
  HeartbeatBody,
  NodeRegisterBody,
  NodeStats,
  NodeView,
} from '../domain/schemas/node.js';
import type { RedisClient } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';
import { iso, isoOrNull } from '../util/time.js';
import type { Credentials } from './credentials.js';
import { decodeOffsetCursor, decodeScoreCursor, encodeCursor } from './cursor.js';
import {
  fitEntries,
  type GpuSpec,
  gpuLiveFrom,
  gpuSpecsFrom,
  liveFields,
  type NodeLive,
  type NodeRecord,
  parseLive,
  parseRecord,
  recordFields,
  toNodeView,
} from './node-model.js';

export interface RegisteredNode {
  readonly node: NodeView;
  readonly apiKey: string;
  readonly agentId: string;
}

export interface NodePatch {
  readonly price_per_gpu_hour?: number | undefined;
  readonly price_per_cpu_core_hour?: number | undefined;
  readonly price_per_gib_ram_hour?: number | undefined;
  readonly labels?: Record<string, string> | undefined;
  readonly max_concurrent_jobs?: number | undefined;
}

export interface AvailableNodesQuery {
  readonly gpu_memory_required: number;
  readonly gpu_count?: number | undefined;
  readonly gpu_type?: string | undefined;
  readonly cpu_cores_required: number;
  readonly memory_required: number;
}

export interface NodeRegistryOptions {
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTtlMs: number;
  /** Users at their running-jobs cap, told to agents with each heartbeat. */
  readonly cappedUsers: () => Promise<string[]>;
}

/** The node registry: lasting records, live heartbeats with TTL, the fit index, agents. */
export class NodeRegistry {
  private readonly shapeCache = new Map<string, { shape: NodeShape; until: number }>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly credentials: Credentials,
    private readonly options: NodeRegistryOptions,
  ) {}

  /** A node registered on its own still gets an agent record: the process that will drive it. */
  async registerNode(body: NodeRegisterBody): Promise<RegisteredNode> {
    return this.register(body, { agent_name: body.node_name, agent_version: 'unknown', executor: '' });
  }

  async registerAgent(body: AgentRegisterBody): Promise<RegisteredNode> {
    return this.register(body.node, {
      agent_name: body.agent_name ?? body.node.node_name,
      agent_version: body.agent_version,
      executor: body.executor ?? '',
    });
  }

  private async register(
    body: NodeRegisterBody,
    agent: { agent_name: string; agent_version: string; executor: string },
  ): Promise<RegisteredNode> {
    const now = Date.now();
    const gpus = gpuSpecsFrom(body);
    const nodeId = `${gpus.length > 0 ? 'gpu' : 'cpu'}-${randomBytes(6).toString('hex')}`;
    const agentId = `agent-${randomBytes(6).toString('hex')}`;
    const key = this.credentials.issueAgentKey(nodeId, agentId, now);
    const record: Omit<NodeRecord, 'last_heartbeat'> = {
      node_id: nodeId,
      node_name: body.node_name,
      hostname: body.hostname,
      gpus,
      cpu_cores: body.cpu_cores,
      memory_total: body.memory_total,
      disk_total: body.disk_total ?? null,
      max_concurrent_jobs: body.max_concurrent_jobs ?? Math.max(1, gpus.length),
      labels: body.labels ?? {},
      price_per_gpu_hour: body.price_per_gpu_hour,
      price_per_cpu_core_hour: body.price_per_cpu_core_hour,
      price_per_gib_ram_hour: body.price_per_gib_ram_hour,
      os: body.os ?? null,
      simulated_gpus: body.simulated_gpus,
      admin_state: NodeAdminState.Active,
      registered_at: now,
      agent_id: agentId,
    };
    const fields = {
      ...recordFields(record),
      api_key_key: this.keys.apiKey(key.keyId),
      agent_key: this.keys.agent(agentId),
    };
    const agentFields = {
      agent_id: agentId,
      node_id: nodeId,
      registered_at: String(now),
      ...agent,
    };
    const res = (await runScript(
      this.redis,
      ScriptName.RegisterNode,
      [this.keys.nodeNames, this.keys.nodes, this.keys.node(nodeId), this.keys.apiKey(key.keyId), this.keys.agent(agentId)],
      [body.node_name, nodeId, now, JSON.stringify(fields), JSON.stringify(key.record), JSON.stringify(agentFields)],
    )) as [number, string?];
    if (res[0] === 1) await this.raisePriceCeiling(record);
    if (res[0] === 0) {
      throw new ConflictError(
        `node_name "${body.node_name}" is already registered (node ${res[1]}); an agent keeps its node id and key on disk, or an admin deletes the old node first`,
        'node_name_taken',
      );
    }
    return { node: toNodeView({ ...record, last_heartbeat: null }, null), apiKey: key.plain, agentId };
  }

  async heartbeat(principal: Principal, nodeId: string, body: HeartbeatBody): Promise<HeartbeatAck> {
    // Another node is one an agent may not see (GET /nodes/{id} is a 404 too), whether it exists or not.
    if (principal.kind === 'agent' && principal.nodeId !== nodeId) throw new NotFoundError(`node ${nodeId}`);
    if (body.node_id !== undefined && body.node_id !== nodeId) {
      throw ValidationError.field('node_id', 'does not match the node id in the path');
    }
    const record = await this.cachedShape(nodeId);
    if (record === null) throw new ConflictError(`node ${nodeId} is not registered`, 'node_not_registered');
    if (body.cpu_cores_available > record.cpu_cores) {
      throw ValidationError.field('cpu_cores_available', `exceeds the node's ${record.cpu_cores} cores`);
    }
    if (body.memory_available !== undefined && body.memory_available > record.memory_total) {
      throw ValidationError.field('memory_available', `exceeds the node's ${record.memory_total} MiB`);
    }
    const gpus = gpuLiveFrom(record.gpus, body.gpus, body.gpu_memory_available);
    if (!Array.isArray(gpus)) throw ValidationError.field(gpus.field, gpus.message);

    const live = {
      gpus,
      cpu_free: body.cpu_cores_available,
      mem_free: body.memory_available ?? record.memory_total,
      disk_free: body.disk_available ?? null,
      current_jobs: body.current_jobs,
      running_job_ids: body.running_job_ids ?? [],
      health: body.health_status,
      health_reasons: body.health_reasons ?? [],
    };
    const slotsFree = Math.max(0, record.max_concurrent_jobs - body.current_jobs);
    const entries = fitEntries(this.keys, record.gpus, gpus, body.health_status);
    const now = Date.now();
    const res = (await runScript(
      this.redis,
      ScriptName.Heartbeat,
      [this.keys.node(nodeId), this.keys.live(nodeId), this.keys.nodeCancels(nodeId)],
      [nodeId, now, this.options.heartbeatTtlMs, JSON.stringify(liveFields(live, slotsFree)), JSON.stringify(entries)],
    )) as string[];
    if (res[0] !== 'ok') {
      this.shapeCache.delete(nodeId);
      throw new ConflictError(`node ${nodeId} is not registered`, 'node_not_registered');
    }
    const admin = NODE_ADMIN_STATES.find((s) => s === res[1]) ?? NodeAdminState.Active;
    return {
      node_id: nodeId,
      status: deriveNodeStatus(true, body.health_status, admin, body.current_jobs),
      admin_state: admin,
      next_heartbeat_ms: this.options.heartbeatIntervalMs,
      cancel_job_ids: res.slice(2),
      labels: { ...record.labels },
      ...record.prices,
      capped_users: await this.options.cappedUsers(),
    };
  }

  /**
   * What heartbeats and assignments need of a node's record. It changes only through this
   * service, so it is cached briefly rather than read on every beat; an admin's change reaches
   * other API replicas within the cache time.
   */
  async shape(nodeId: string): Promise<NodeShape | null> {
    return this.cachedShape(nodeId);
  }

  private async cachedShape(nodeId: string): Promise<NodeShape | null> {
    const hit = this.shapeCache.get(nodeId);
    if (hit !== undefined && hit.until > Date.now()) return hit.shape;
    const [gpus, cpu, mem, max, name, labels, pg, pc, pr] = await this.redis.hmget(
      this.keys.node(nodeId),
      'gpus',
      'cpu_cores',
      'memory_total',
      'max_concurrent_jobs',
      'node_name',
      'labels',
      'price_per_gpu_hour',
      'price_per_cpu_core_hour',
      'price_per_gib_ram_hour',
    );
    if (!gpus || !cpu || !mem || !max) return null;
    const shape: NodeShape = {
      gpus: JSON.parse(gpus) as GpuSpec[],
      cpu_cores: Number(cpu),
      memory_total: Number(mem),
      max_concurrent_jobs: Number(max),
      node_name: name ?? '',
      labels: labels ? (JSON.parse(labels) as Record<string, string>) : {},
      prices: {
        price_per_gpu_hour: Number(pg ?? 0),
        price_per_cpu_core_hour: Number(pc ?? 0),
        price_per_gib_ram_hour: Number(pr ?? 0),
      },
    };
    if (this.shapeCache.size > 100_000) this.shapeCache.clear();
    this.shapeCache.set(nodeId, { shape, until: Date.now() + SHAPE_CACHE_MS });
    return shape;
  }

  async getNode(nodeId: string): Promise<NodeView> {
    const [views] = await this.loadViews([nodeId]);
    if (views === undefined || views === null) throw new NotFoundError(`node ${nodeId}`);
    return views;
  }

  private async loadRaw(nodeIds: readonly string[]): Promise<({ record: NodeRecord; live: NodeLive | null } | null)[]> {
    return Promise.all(
      nodeIds.map(async (id) => {
        const [rec, live] = await Promise.all([this.redis.hgetall(this.keys.node(id)), this.redis.hgetall(this.keys.live(id))]);
        const record = parseRecord(rec);
        return record === null ? null : { record, live: parseLive(live) };
      }),
    );
  }

  private async loadViews(nodeIds: readonly string[]): Promise<(NodeView | null)[]> {
    const raw = await this.loadRaw(nodeIds);
    return raw.map((r) => (r === null ? null : toNodeView(r.record, r.live)));
  }

  /** All registered nodes, oldest registration first, optionally of one status. */
  async listNodes(limit: number, cursor: string | undefined, status?: NodeStatus): Promise<Page<NodeView>> {
    const after = decodeScoreCursor(cursor);
    const items: NodeView[] = [];
    let min = after === undefined ? '-inf' : String(after.score);
    let skipUpTo = after?.member;
    let next: string | null = null;
    // Scan in batches until the page is full; a status filter may skip many nodes.
    for (;;) {
      const batch = await this.redis.zrangebyscore(this.keys.nodes, min, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 64);
      const pairs: [string, number][] = [];
      for (let i = 0; i + 1 < batch.length; i += 2) pairs.push([batch[i] as string, Number(batch[i + 1])]);
      const fresh = pairs.filter(
        ([id, score]) => !(after !== undefined && score === Number(min) && skipUpTo !== undefined && id <= skipUpTo),
      );
      if (fresh.length === 0) break;
      const views = await this.loadViews(fresh.map(([id]) => id));
      for (const [i, [id, score]] of fresh.entries()) {
        const v = views[i];
        if (v === undefined || v === null) continue;
        if (status !== undefined && v.status !== status) {
          min = String(score);
          skipUpTo = id;
          continue;
        }
        if (items.length === limit) {
          return { items, next_cursor: next };
        }
        items.push(v);
        next = encodeCursor({ score, member: id });
        min = String(score);
        skipUpTo = id;
      }
      if (pairs.length < limit + 64) break;
    }
    return { items, next_cursor: null };
  }

  /**
   * Live, healthy, schedulable nodes that can hold a job of this shape right now, best fit first
   * (the least free memory on the GPUs the job would use that still holds it). One range read
   * on the fit index per GPU family asked for, then a check of free CPU, RAM and job slots.
   */
  async availableNodes(q: AvailableNodesQuery, limit: number, cursor: string | undefined): Promise<Page<NodeView>> {
    const offset = decodeOffsetCursor(cursor);
    const gpuCount = q.gpu_count ?? (q.gpu_memory_required > 0 ? 1 : 0);
    if (gpuCount === 0 && q.gpu_memory_required > 0) {
      throw ValidationError.field('gpu_count', 'must be at least 1 when gpu_memory_required > 0');
    }
    const families = q.gpu_type === undefined || gpuCount === 0 ? ['any'] : gpuFamilies(q.gpu_type);
    const wanted = offset + limit;
    // One walk per family asked for; a class ("H100|H200") merges them, each node at its best
    // fit. Nodes of two families can collapse, so fetch deeper until the page is known.
    for (let depth = wanted; ; depth *= 2) {
      const perFamily = await Promise.all(families.map((family) => this.walkFitIndex(family, gpuCount, q, depth)));
      const best = new Map<string, number>();
      for (const f of perFamily) {
        for (const [i, id] of f.ids.entries()) {
          const score = f.scores[i] ?? 0;
          const seen = best.get(id);
          if (seen === undefined || score < seen) best.set(id, score);
        }
      }
      const more = perFamily.some((f) => f.more);
      if (best.size < wanted && more) continue;
      const ranked = [...best].sort(([a, x], [b, y]) => x - y || (a < b ? -1 : a > b ? 1 : 0));
      const views = (await this.loadViews(ranked.slice(offset, wanted).map(([id]) => id))).filter((v): v is NodeView => v !== null);
      return { items: views, next_cursor: ranked.length > wanted || more ? encodeCursor({ offset: wanted }) : null };
    }
  }

  private async walkFitIndex(
    family: string,
    gpuCount: number,
    q: AvailableNodesQuery,
    limit: number,
  ): Promise<{ ids: string[]; scores: number[]; more: boolean }> {
    const res = (await runScript(
      this.redis,
      ScriptName.AvailableNodes,
      [this.keys.fitIndex(family, gpuCount)],
      [q.gpu_memory_required, q.cpu_cores_required, q.memory_required, 0, limit, this.keys.livePrefix, '1'],
    )) as [string[], string[], number];
    return { ids: res[0], scores: res[1].map(Number), more: res[2] === 1 };
  }

  async setAdminState(nodeId: string, state: NodeAdminState): Promise<NodeView> {
    const ok = await runScript(this.redis, ScriptName.SetAdminState, [this.keys.node(nodeId), this.keys.live(nodeId)], [nodeId, state]);
    if (ok === 0) throw new NotFoundError(`node ${nodeId}`);
    return this.getNode(nodeId);
  }

  async deleteNode(nodeId: string): Promise<void> {
    const k = this.keys;
    const ok = await runScript(
      this.redis,
      ScriptName.DeleteNode,
      [k.node(nodeId), k.live(nodeId), k.nodeNames, k.nodes, k.nodeStats(nodeId), k.nodeCancels(nodeId)],
      [nodeId],
    );
    if (ok === 0) throw new NotFoundError(`node ${nodeId}`);
    this.shapeCache.delete(nodeId);
    this.credentials.forgetNode(nodeId);
  }

  /** An admin changes a node's prices, labels or job slots; agents learn it from their next heartbeat. */
  async patchNode(nodeId: string, patch: NodePatch): Promise<NodeView> {
    const key = this.keys.node(nodeId);
    if ((await this.redis.exists(key)) === 0) throw new NotFoundError(`node ${nodeId}`);
    const fields: Record<string, string> = {};
    if (patch.price_per_gpu_hour !== undefined) fields.price_per_gpu_hour = String(patch.price_per_gpu_hour);
    if (patch.price_per_cpu_core_hour !== undefined) fields.price_per_cpu_core_hour = String(patch.price_per_cpu_core_hour);
    if (patch.price_per_gib_ram_hour !== undefined) fields.price_per_gib_ram_hour = String(patch.price_per_gib_ram_hour);
    if (patch.labels !== undefined) fields.labels = JSON.stringify(patch.labels);
    if (patch.max_concurrent_jobs !== undefined) fields.max_concurrent_jobs = String(patch.max_concurrent_jobs);
    if (Object.keys(fields).length > 0) await this.redis.hset(key, fields);
    this.shapeCache.delete(nodeId);
    const view = await this.getNode(nodeId);
    await this.raisePriceCeiling(view);
    return view;
  }

  /**
   * The highest prices any node asks, so a job that names no price limit can be told its worst
   * case. Only ever raised (a node leaving does not lower it): a conservative bound.
   */
  async priceCeiling(): Promise<Prices> {
    if (this.ceiling !== null && this.ceiling.until > Date.now()) return this.ceiling.prices;
    const [g, c, r] = await this.redis.hmget(this.keys.priceCeiling, 'gpu', 'cpu', 'ram');
    const prices = { price_per_gpu_hour: Number(g ?? 0), price_per_cpu_core_hour: Number(c ?? 0), price_per_gib_ram_hour: Number(r ?? 0) };
    this.ceiling = { prices, until: Date.now() + 5000 };
    return prices;
  }

  private ceiling: { prices: Prices; until: number } | null = null;

  private async raisePriceCeiling(p: Prices): Promise<void> {
    const cur = await this.priceCeiling();
    const raise: Record<string, string> = {};
    if (p.price_per_gpu_hour > cur.price_per_gpu_hour) raise.gpu = String(p.price_per_gpu_hour);
    if (p.price_per_cpu_core_hour > cur.price_per_cpu_core_hour) raise.cpu = String(p.price_per_cpu_core_hour);
    if (p.price_per_gib_ram_hour > cur.price_per_gib_ram_hour) raise.ram = String(p.price_per_gib_ram_hour);
    if (Object.keys(raise).length > 0) await this.redis.hset(this.keys.priceCeiling, raise);
    this.ceiling = null;
  }

  /**
   * Live nodes that could ever hold k GPUs of a family with `mib` each (whatever they run now),
   * from the capacity index; for explaining why a job waits. At most `limit`.
   */
  async nodesThatCouldHold(
    families: readonly string[],
    k: number,
    mib: number,
    limit: number,
  ): Promise<{ record: NodeRecord; live: NodeLive | null }[]> {
    const ids = new Set<string>();
    for (const family of families) {
      const res = (await runScript(
        this.redis,
        ScriptName.AvailableNodes,
        [this.keys.capIndex(family, k)],
        [mib, 0, 0, 0, limit, this.keys.livePrefix, '0'],
      )) as [string[], string[], number];
      for (const id of res[0]) ids.add(id);
    }
    return (await this.loadRaw([...ids])).filter((r): r is { record: NodeRecord; live: NodeLive | null } => r !== null);
  }

  /** Whether any live node has a GPU of this family at all. */
  async anyNodeWithFamily(family: string): Promise<boolean> {
    return (await this.nodesThatCouldHold([family], 1, 0, 1)).length > 0;
  }

  async nodeStats(nodeId: string): Promise<NodeStats> {
    const [raw] = await this.loadRaw([nodeId]);
    if (raw === undefined || raw === null) throw new NotFoundError(`node ${nodeId}`);
    const s = await this.redis.hgetall(this.keys.nodeStats(nodeId));
    const { record, live } = raw;
    const view = toNodeView(record, live);
    const now = Date.now();
    const n = (k: string) => Number(s[k] ?? 0);
    const healthy = (live?.gpus ?? []).filter((g) => g.healthy);
    const utils = healthy.map((g) => g.utilization).filter((u): u is number => u !== null);
    const specTotal = new Map(record.gpus.map((g) => [g.index, g.memory_total]));
    const memTotal = healthy.reduce((a, g) => a + (specTotal.get(g.index) ?? 0), 0);
    const memFree = healthy.reduce((a, g) => a + g.memory_free, 0);
    const pct = (x: number) => Math.round(x * 1000) / 10;
    return {
      node_id: nodeId,
      status: view.status,
      uptime_seconds: live ? Math.max(0, (now - live.up_since) / 1000) : 0,
      registered_seconds: Math.max(0, (now - record.registered_at) / 1000),
      jobs_run: n('jobs_run'),
      jobs_succeeded: n('jobs_succeeded'),
      jobs_failed: n('jobs_failed'),
      jobs_cancelled: n('jobs_cancelled'),
      gpu_hours: Math.round(n('gpu_ms') / 36_000) / 100,
      current_jobs: live?.current_jobs ?? 0,
      utilization: {
        gpu_percent: utils.length > 0 ? pct(utils.reduce((a, b) => a + b, 0) / utils.length / 100) : null,
        gpu_memory_percent: live && memTotal > 0 ? pct(1 - memFree / memTotal) : null,
        cpu_percent: live && record.cpu_cores > 0 ? pct(1 - live.cpu_free / record.cpu_cores) : null,
        memory_percent: live && record.memory_total > 0 ? pct(1 - live.mem_free / record.memory_total) : null,
        job_slots_percent: pct((live?.current_jobs ?? 0) / Math.max(1, record.max_concurrent_jobs)),
      },
    };
  }

  /** Counts a job that ended on a node into its stats. */
  async recordJobEnd(nodeId: string, outcome: 'succeeded' | 'failed' | 'cancelled', gpuMs: number): Promise<void> {
    const key = this.keys.nodeStats(nodeId);
    await Promise.all([
      this.redis.hincrby(key, 'jobs_run', 1),
      this.redis.hincrby(key, `jobs_${outcome}`, 1),
      gpuMs > 0 ? this.redis.hincrby(key, 'gpu_ms', Math.round(gpuMs)) : Promise.resolve(0),
    ]);
  }

  async addPendingCancel(nodeId: string, jobId: string): Promise<void> {
    await this.redis.sadd(this.keys.nodeCancels(nodeId), jobId);
  }

  async clearPendingCancel(nodeId: string, jobId: string): Promise<void> {
    await this.redis.srem(this.keys.nodeCancels(nodeId), jobId);
  }

  /** Every node's cancelled jobs it has yet to confirm stopped (for the reaper: one read per node). */
  async allPendingCancels(): Promise<{ nodeId: string; jobId: string }[]> {
    const ids = await this.redis.zrangebyscore(this.keys.nodes, '-inf', '+inf');
    const sets = await Promise.all(ids.map((id) => this.redis.smembers(this.keys.nodeCancels(id))));
    return ids.flatMap((nodeId, i) => (sets[i] ?? []).map((jobId) => ({ nodeId, jobId })));
  }

  async getAgent(principal: Principal, agentId: string): Promise<AgentView> {
    if (principal.kind === 'agent' && principal.agentId !== agentId) throw new NotFoundError(`agent ${agentId}`);
    const a = await this.redis.hgetall(this.keys.agent(agentId));
    if (a.agent_id === undefined || a.node_id === undefined) throw new NotFoundError(`agent ${agentId}`);
    const [raw] = await this.loadRaw([a.node_id]);
    const view = raw ? toNodeView(raw.record, raw.live) : null;
    return {
      agent_id: a.agent_id,
      agent_name: a.agent_name ?? '',
      agent_version: a.agent_version ?? 'unknown',
      executor: a.executor || null,
      node_id: a.node_id,
      status: view?.status ?? 'offline',
      registered_at: iso(a.registered_at),
      last_heartbeat: view?.last_heartbeat ?? isoOrNull(undefined),
      current_jobs: view?.current_jobs ?? 0,
      running_job_ids: [...(raw?.live?.running_job_ids ?? [])],
    };
  }
}

/** What the hot paths (heartbeats, assignments) need of a node's record. */
export interface NodeShape {
  readonly gpus: readonly GpuSpec[];
  readonly cpu_cores: number;
  readonly memory_total: number;
  readonly max_concurrent_jobs: number;
  readonly node_name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly prices: Prices;
}

const SHAPE_CACHE_MS = 30_000;
