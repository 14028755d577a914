import type { Logger } from 'pino';
import { NodeStatus } from '../domain/node-status.js';
import { tierOfQueue } from '../domain/queues.js';
import { isAdmin, type Principal } from '../domain/roles.js';
import type { FleetSummary, QueueSummary, Timeline } from '../domain/schemas/overview.js';
import type { TierTable } from '../domain/tiers.js';
import type { RedisClient } from '../redis/connection.js';
import { hourOf, type Keys } from '../redis/keys.js';
import { outsideRequest } from '../util/log-context.js';
import type { JobQueues } from './job-queues.js';
import type { JobStore } from './job-store.js';
import type { NodeRegistry } from './node-registry.js';
import type { WaitReasons } from './wait-reasons.js';

const OLDEST_SHOWN = 5;
/** How many of a queue's first waiting jobs are looked at to find a person's own. */
const OLDEST_SCANNED = 50;
const NODE_PAGE = 500;
/** Live views share a summary this recent, so many dashboards cost one computation. */
export const SHARED_SUMMARY_MS = 1_500;
const SAMPLE_EVERY_MS = 20_000;

export type PendingByTier = Record<string, { jobs: number; gpu_memory_mib: number }>;

/** Queued jobs and the GPU memory they ask for, per tier, as the status scripts count them. */
export async function readPendingByTier(redis: RedisClient, keys: Keys, tiers: TierTable): Promise<PendingByTier> {
  const out: PendingByTier = {};
  const all = await Promise.all(tiers.all.map((t) => redis.hmget(keys.pending(t.name), 'jobs', 'gpu_mib')));
  for (const [i, t] of tiers.all.entries()) {
    const [jobs, mib] = all[i] ?? [];
    // Never below zero: a crash between writing a job and enqueueing it can leave a count behind.
    out[t.name] = { jobs: Math.max(0, Number(jobs ?? 0)), gpu_memory_mib: Math.max(0, Number(mib ?? 0)) };
  }
  return out;
}

interface Cached<T> {
  at: number;
  value: Promise<T>;
}

/**
 * What the dashboard and autoscalers read about the whole system: queues per tier with what
 * waits for what, the fleet's nodes and GPU memory, and the last hour minute by minute.
 */
export class FleetOverview {
  private queuesCache: Cached<QueueSummary[]> | null = null;
  private fleetCache: Cached<FleetSummary> | null = null;
  private sampler: NodeJS.Timeout | null = null;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly tiers: TierTable,
    private readonly queues: JobQueues,
    private readonly store: JobStore,
    private readonly nodes: NodeRegistry,
    private readonly waitReasons: WaitReasons,
    private readonly logger: Logger,
  ) {}

  pendingByTier(): Promise<PendingByTier> {
    return readPendingByTier(this.redis, this.keys, this.tiers);
  }

  /**
   * Every tier's queues; `oldest_waiting` shows a person only their own jobs (admins: all).
   * `maxAgeMs` lets live views share one recent computation; a plain request asks afresh.
   */
  async queueSummaries(p: Principal, maxAgeMs = 0): Promise<QueueSummary[]> {
    const now = Date.now();
    if (this.queuesCache === null || now - this.queuesCache.at > maxAgeMs) {
      this.queuesCache = { at: now, value: outsideRequest(() => this.computeQueues()) };
      this.queuesCache.value.catch(() => {
        this.queuesCache = null;
      });
    }
    const all = await this.queuesCache.value;
    if (isAdmin(p)) return all.map((q) => ({ ...q, oldest_waiting: q.oldest_waiting.slice(0, OLDEST_SHOWN) }));
    const own = p.kind === 'user' ? p.userId : null;
    return all.map((q) => ({ ...q, oldest_waiting: q.oldest_waiting.filter((j) => j.user_id === own).slice(0, OLDEST_SHOWN) }));
  }

  private async computeQueues(): Promise<QueueSummary[]> {
    const pending = await this.pendingByTier();
    const byTier = new Map<string, QueueSummary>();
    let lower = 0;
    for (const t of this.tiers.all) {
      byTier.set(t.name, {
        tier: t.name,
        min_gpu_memory_mib: t.maxGpuMemoryMiB === 0 ? 0 : lower,
        max_gpu_memory_mib: t.maxGpuMemoryMiB,
        waiting: 0,
        active: 0,
        delayed: 0,
        failed: 0,
        completed: 0,
        pending_jobs: pending[t.name]?.jobs ?? 0,
        pending_gpu_memory_mib: pending[t.name]?.gpu_memory_mib ?? 0,
        oldest_waiting: [],
      });
      if (t.maxGpuMemoryMiB > 0) lower = t.maxGpuMemoryMiB;
    }
    const now = Date.now();
    await Promise.all(
      this.queues.all.map(async (q) => {
        const s = byTier.get(tierOfQueue(q.name));
        if (s === undefined) return;
        const [c, first] = await Promise.all([
          q.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'),
          q.getJobs(['prioritized', 'waiting'], 0, OLDEST_SCANNED - 1, true),
        ]);
        s.waiting += (c.waiting ?? 0) + (c.prioritized ?? 0);
        s.active += c.active ?? 0;
        s.delayed += c.delayed ?? 0;
        s.failed += c.failed ?? 0;
        s.completed += c.completed ?? 0;
        for (const job of first) {
          if (job?.id === undefined) continue;
          const rec = await this.store.record(job.id, q.name);
          if (rec === null) continue;
          s.oldest_waiting.push({
            job_id: rec.id,
            user_id: rec.owner,
            job_name: rec.spec.job_name,
            waited_seconds: Math.max(0, Math.round((now - Number(rec.fields.created_at ?? now)) / 1000)),
            gpu_count: rec.spec.requirements.gpu_count,
            gpu_memory_mib: rec.spec.requirements.gpu_memory_mib,
            wait_reason: null,
          });
        }
      }),
    );
    const out = [...byTier.values()];
    // Longest waiting first, and why; reasons only for those that can be shown to someone.
    for (const s of out) {
      s.oldest_waiting.sort((a, b) => b.waited_seconds - a.waited_seconds);
      s.oldest_waiting = s.oldest_waiting.slice(0, OLDEST_SCANNED);
      await Promise.all(
        s.oldest_waiting.slice(0, OLDEST_SHOWN).map(async (j) => {
          const loaded = await this.store.load(j.job_id);
          j.wait_reason = loaded === null ? null : await this.waitReasons.explain(loaded.rec);
        }),
      );
    }
    return out;
  }

  /** Nodes by status and the GPU memory of the live ones. Reads every node, so live views share one. */
  async fleet(maxAgeMs = 0): Promise<FleetSummary> {
    const now = Date.now();
    if (this.fleetCache === null || now - this.fleetCache.at > maxAgeMs) {
      this.fleetCache = { at: now, value: outsideRequest(() => this.computeFleet()) };
      this.fleetCache.value.catch(() => {
        this.fleetCache = null;
      });
    }
    return this.fleetCache.value;
  }

  private async computeFleet(): Promise<FleetSummary> {
    const out: FleetSummary = { nodes_by_status: {}, gpus_total: 0, gpu_memory_total_mib: 0, gpu_memory_free_mib: 0 };
    let cursor: string | undefined;
    do {
      const page = await this.nodes.listNodes(NODE_PAGE, cursor);
      for (const n of page.items) {
        out.nodes_by_status[n.status] = (out.nodes_by_status[n.status] ?? 0) + 1;
        if (n.status === NodeStatus.Offline) continue;
        for (const g of n.gpus) {
          out.gpus_total += 1;
          out.gpu_memory_total_mib += g.memory_total;
          out.gpu_memory_free_mib += g.memory_free ?? 0;
        }
      }
      cursor = page.next_cursor ?? undefined;
    } while (cursor !== undefined);
    return out;
  }

  /**
   * Samples the fleet's GPU memory into this minute's slot every so often; the minute keeps its
   * last sample. API replicas all sample the same fleet, so whichever writes last is as good.
   */
  startSampling(): void {
    if (this.sampler !== null) return;
    void this.sampleNow();
    this.sampler = setInterval(() => void this.sampleNow(), SAMPLE_EVERY_MS);
    this.sampler.unref();
  }

  async sampleNow(): Promise<void> {
    try {
      const f = await this.fleet();
      const now = Date.now();
      const key = this.keys.fleetTimeline(hourOf(now));
      const used = f.gpu_memory_total_mib - f.gpu_memory_free_mib;
      await this.redis
        .multi()
        .hset(key, String(minuteOf(now)), `${used}|${f.gpu_memory_total_mib}`)
        .expire(key, 7200)
        .exec();
    } catch (err) {
      this.logger.debug({ err: (err as Error).message }, 'fleet sample skipped');
    }
  }

  stopSampling(): void {
    if (this.sampler !== null) clearInterval(this.sampler);
    this.sampler = null;
  }

  /** The last `minutes` whole minutes and the current one, oldest first. */
  async timeline(minutes: number): Promise<Timeline> {
    const now = Date.now();
    const startMinute = Math.floor(now / 60_000) - minutes + 1;
    const hours: number[] = [];
    for (let h = hourOf(startMinute * 60_000); h <= hourOf(now); h++) hours.push(h);
    const tierKeys = this.tiers.all.flatMap((t) => hours.map((h) => ({ h, key: this.keys.jobTimeline(t.name, h) })));
    const fleetKeys = hours.map((h) => ({ h, key: this.keys.fleetTimeline(h) }));
    const [tierData, fleetData] = await Promise.all([
      Promise.all(tierKeys.map((k) => this.redis.hgetall(k.key))),
      Promise.all(fleetKeys.map((k) => this.redis.hgetall(k.key))),
    ]);
    const points: Timeline['points'] = [];
    for (let m = startMinute; m < startMinute + minutes; m++) {
      const h = hourOf(m * 60_000);
      const slot = String(minuteOf(m * 60_000));
      let started = 0;
      let finished = 0;
      for (const [i, k] of tierKeys.entries()) {
        if (k.h !== h) continue;
        started += Number(tierData[i]?.[`s${slot}`] ?? 0);
        finished += Number(tierData[i]?.[`f${slot}`] ?? 0);
      }
      const sample = fleetData[hours.indexOf(h)]?.[slot];
      const [used, total] = sample === undefined ? [null, null] : sample.split('|').map(Number);
      points.push({
        at: new Date(m * 60_000).toISOString(),
        jobs_started: started,
        jobs_finished: finished,
        gpu_memory_used_mib: used ?? null,
        gpu_memory_total_mib: total ?? null,
      });
    }
    return { step_seconds: 60, points };
  }
}

const minuteOf = (ms: number): number => Math.floor(ms / 60_000) % 60;
