import { randomUUID } from 'node:crypto';
import { roundMoney } from '../domain/cost.js';
import { ConflictError, type FieldProblem, ForbiddenError, NotFoundError, UnavailableError, ValidationError } from '../domain/errors.js';
import { gpuFamilies } from '../domain/gpu.js';
import { JobStatus } from '../domain/job-status.js';
import { queueNameFor } from '../domain/queues.js';
import { compactRequirements } from '../domain/requirements.js';
import { isAdmin, type Principal } from '../domain/roles.js';
import type { Page } from '../domain/schemas/common.js';
import {
  DEFAULT_JOB_TIMEOUT_SECONDS,
  JOB_PAYLOAD_VERSION,
  type JobCreateBody,
  type JobLogLine,
  type JobSpec,
  type JobView,
  splitImageReference,
} from '../domain/schemas/job.js';
import type { TierTable } from '../domain/tiers.js';
import { type JobMetrics, NO_JOB_METRICS } from '../metrics/api-metrics.js';
import type { RedisClient } from '../redis/connection.js';
import { pairsToRecord } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';
import { iso } from '../util/time.js';
import type { Accounting } from './accounting.js';
import { decodeScoreCursor, encodeCursor } from './cursor.js';
import { type PendingByTier, readPendingByTier } from './fleet-overview.js';
import type { FixedIds } from './idempotency.js';
import { agentJobView, deriveStatus, type JobRecord, newRecordFields, parseJobRecord, toJobView } from './job-model.js';
import type { JobQueues, QueuedJob } from './job-queues.js';
import type { JobStore, LoadedJob } from './job-store.js';
import type { NodeRegistry } from './node-registry.js';
import type { WaitReasons } from './wait-reasons.js';

export interface JobServiceLimits {
  readonly inputDataBytes: number;
  readonly resultBytes: number;
  readonly jobLogLines: number;
  readonly jobTimeoutMaxSeconds: number;
}

export interface JobListFilter {
  readonly status?: JobStatus | undefined;
  readonly user_id?: string | undefined;
}

interface Prepared {
  readonly id: string;
  readonly spec: JobSpec;
  readonly tier: string;
  readonly queue: string;
  readonly worstCase: { readonly money: number; readonly gpuHours: number };
}

export const jsonBytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v) ?? '', 'utf8');

/** What people do with jobs: submit them into the tier queues, read, list and cancel them. */
export class JobService {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly tiers: TierTable,
    private readonly store: JobStore,
    private readonly queues: JobQueues,
    private readonly nodes: NodeRegistry,
    private readonly accounting: Accounting,
    private readonly waitReasons: WaitReasons,
    private readonly limits: JobServiceLimits,
    private readonly retentionSeconds: number,
    private readonly metrics: JobMetrics = NO_JOB_METRICS,
    /** Why a webhook_url may not be used (an address webhooks may not reach), or null. */
    private readonly webhookUrlProblem: (url: string) => string | null = () => null,
  ) {}

  /** Checks a submission against the limits and tiers and normalizes it into a spec; `at` prefixes field names. */
  buildSpec(body: JobCreateBody, at = ''): { spec: JobSpec; tier: string; queue: string } {
    const problems: FieldProblem[] = [];
    const field = (name: string) => `${at}${name}`;
    const image = splitImageReference(body.docker_image, body.docker_tag);
    if ('error' in image) problems.push({ field: field(image.field), message: image.error });

    const gpuCount = body.gpu_count ?? (body.gpu_memory_required > 0 ? 1 : 0);
    if (gpuCount === 0 && body.gpu_memory_required > 0) {
      problems.push({ field: field('gpu_count'), message: 'must be at least 1 when gpu_memory_required > 0' });
    }
    if (gpuCount === 0 && body.gpu_type !== undefined) {
      problems.push({ field: field('gpu_type'), message: 'a CPU-only job (gpu_count 0) cannot ask for a GPU type' });
    }
    const tier = this.tiers.pick(gpuCount, body.gpu_memory_required);
    if (tier === undefined) {
      problems.push({
        field: field('gpu_memory_required'),
        message: `no tier holds ${body.gpu_memory_required} MiB per GPU; the largest is ${this.tiers.maxGpuMemoryMiB} MiB`,
      });
    }
    const timeout = body.timeout_seconds ?? Math.min(DEFAULT_JOB_TIMEOUT_SECONDS, this.limits.jobTimeoutMaxSeconds);
    if (timeout > this.limits.jobTimeoutMaxSeconds) {
      problems.push({ field: field('timeout_seconds'), message: `at most ${this.limits.jobTimeoutMaxSeconds}` });
    }
    const hookProblem = body.webhook_url === undefined ? null : this.webhookUrlProblem(body.webhook_url);
    if (hookProblem !== null) problems.push({ field: field('webhook_url'), message: hookProblem });
    if (body.input_data !== undefined && jsonBytes(body.input_data) > this.limits.inputDataBytes) {
      problems.push({ field: field('input_data'), message: `larger than ${this.limits.inputDataBytes} bytes as JSON` });
    }
    if (problems.length > 0 || 'error' in image || tier === undefined) throw new ValidationError(problems);

    const ref = image.digest !== null ? `${image.name}@${image.digest}` : `${image.name}:${image.tag ?? 'latest'}`;
    const gpuType = body.gpu_type ?? null;
    const spec: JobSpec = {
      job_name: body.job_name ?? image.name,
      image: ref,
      docker_image: image.name,
      docker_tag: image.tag,
      docker_digest: image.digest,
      command: body.command ?? null,
      args: body.args ?? null,
      env: body.env ?? {},
      input_data: body.input_data ?? null,
      requirements: {
        gpu_count: gpuCount,
        gpu_memory_mib: body.gpu_memory_required,
        gpu_type: gpuType,
        cpu_cores: body.cpu_cores_required,
        memory_mib: body.memory_required,
        node_selector: body.node_selector ?? {},
        node_name: body.node_name ?? null,
        max_price_per_hour: body.max_price_per_hour ?? null,
      },
      timeout_seconds: timeout,
      max_retries: body.max_retries,
      priority: body.priority,
      registry_secret: body.registry_secret ?? null,
      webhook_url: body.webhook_url ?? null,
    };
    const families = gpuType === null || gpuCount === 0 ? null : gpuFamilies(gpuType);
    return { spec, tier: tier.name, queue: queueNameFor(tier.name, families) };
  }

  /**
   * Every attempt (the first and each retry) running to its time limit at the highest hourly
   * price the job would accept: its own limit, else the fleet's dearest.
   */
  private async worstCase(spec: JobSpec): Promise<{ money: number; gpuHours: number }> {
    const r = spec.requirements;
    const hours = ((spec.max_retries + 1) * spec.timeout_seconds) / 3600;
    let rate = r.max_price_per_hour;
    if (rate === null) {
      const c = await this.nodes.priceCeiling();
      rate =
        r.gpu_count * c.price_per_gpu_hour + r.cpu_cores * c.price_per_cpu_core_hour + (r.memory_mib / 1024) * c.price_per_gib_ram_hour;
    }
    return { money: Math.round(hours * rate * 1e6) / 1e6, gpuHours: hours * r.gpu_count };
  }

  private async prepare(bodies: readonly JobCreateBody[], batch: boolean, ids?: readonly string[]): Promise<Prepared[]> {
    const problems: FieldProblem[] = [];
    const out: Prepared[] = [];
    for (const [i, body] of bodies.entries()) {
      try {
        const built = this.buildSpec(body, batch ? `jobs.${i}.` : '');
        out.push({ id: ids?.[i] ?? randomUUID(), ...built, worstCase: await this.worstCase(built.spec) });
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        problems.push(...err.fields);
      }
    }
    if (problems.length > 0) throw new ValidationError(problems);
    return out;
  }

  /** `fixed`: the ids to use (an Idempotency-Key chose them), and whether an earlier attempt may have begun. */
  async create(owner: string, body: JobCreateBody, fixed?: FixedIds): Promise<JobView> {
    const [view] = await this.submit(owner, await this.prepare([body], false, fixed?.ids), fixed?.resume);
    if (view === undefined) throw new Error('unreachable: one job in, one out');
    return view;
  }

  /** Up to 1,000 jobs in one request: all valid and within budget, or none submitted. */
  async createBatch(owner: string, bodies: readonly JobCreateBody[], fixed?: FixedIds): Promise<JobView[]> {
    return this.submit(owner, await this.prepare(bodies, true, fixed?.ids), fixed?.resume);
  }

  /**
   * Submits `jobs`; with `resume`, an earlier attempt with the same ids may have died part way:
   * jobs it got into their queues are answered as they are now and not touched, and records it
   * wrote but did not enqueue are enqueued (not written again), so nothing is made twice.
   */
  private async submit(owner: string, jobs: readonly Prepared[], resume = false): Promise<JobView[]> {
    if (!resume) return this.submitNew(owner, jobs, new Map());
    const loaded = await Promise.all(jobs.map((j) => this.store.load(j.id, j.queue)));
    const now = Date.now();
    const queued = new Map<string, JobView>();
    const recorded = new Map<string, JobRecord>();
    for (const l of loaded) {
      if (l === null) continue;
      const { rec, facts } = l;
      const enqueued = facts.exists || facts.inFailed || facts.inCompleted || rec.status !== JobStatus.Queued;
      if (enqueued) queued.set(rec.id, toJobView(rec, deriveStatus(rec, facts, now)));
      else recorded.set(rec.id, rec);
    }
    const rest = jobs.filter((j) => !queued.has(j.id));
    const views = rest.length === 0 ? [] : await this.submitNew(owner, rest, recorded);
    for (const v of views) queued.set(v.id, v);
    return jobs.map((j) => {
      const v = queued.get(j.id);
      if (v === undefined) throw new Error('unreachable: every job is either found or submitted');
      return v;
    });
  }

  /**
   * Holds the jobs' worst case against the owner's budget, then writes, in order, the lookup
   * entries (harmless if left dangling: readers skip them), the records, and the BullMQ jobs. If
   * the enqueue fails the records are removed again; if this process dies between the two,
   * readers show the jobs as failed (enqueue_interrupted) after a grace time. `recorded`: records
   * an earlier attempt wrote, which are enqueued as they are.
   */
  private async submitNew(owner: string, jobs: readonly Prepared[], recorded: ReadonlyMap<string, JobRecord>): Promise<JobView[]> {
    await this.accounting.holdBudget(
      owner,
      jobs.map((j) => ({ id: j.id, money: j.worstCase.money, gpuHours: j.worstCase.gpuHours })),
    );
    const now = Date.now();
    const k = this.keys;
    const records = jobs.map((j) => recorded.get(j.id)?.fields ?? newRecordFields(j.id, owner, j.queue, j.spec, j.worstCase.money, now));
    // Which records were written (and so counted as pending), for an exact rollback.
    let written: Prepared[] = jobs.filter((j) => recorded.has(j.id));
    try {
      await runScript(
        this.redis,
        ScriptName.IndexJobs,
        [k.jobQueueIndex, k.jobsAll, k.jobsOfUser(owner)],
        [now, ...jobs.flatMap((j) => [j.id, j.queue])],
      );
      const created = await Promise.allSettled(
        jobs.map((j, i) =>
          recorded.has(j.id)
            ? Promise.resolve(0)
            : runScript(
                this.redis,
                ScriptName.CreateJob,
                [k.jobRecord(j.tier, j.id), ...k.jobWatchKeys(j.tier, now)],
                [JSON.stringify(records[i]), now],
              ),
        ),
      );
      written = jobs.filter((j, i) => recorded.has(j.id) || created[i]?.status === 'fulfilled');
      if (written.length < jobs.length) throw new Error('some job records were not written');
      await this.queues.enqueue(
        jobs.map(
          (j): QueuedJob => ({
            queue: j.queue,
            name: j.spec.job_name,
            priority: j.spec.priority,
            payload: {
              v: JOB_PAYLOAD_VERSION,
              req: compactRequirements(j.spec.requirements, owner, j.spec.timeout_seconds),
              job_id: j.id,
              owner,
              tier: j.tier,
            },
          }),
        ),
      );
    } catch {
      await this.unsubmit(owner, jobs, written);
      throw new UnavailableError('the job queue is unavailable; nothing was submitted, retry later');
    }
    for (const j of jobs) this.metrics.jobsSubmitted(j.tier, 1);
    return records.map((fields) => {
      const rec = parseJobRecord(fields);
      if (rec === null) throw new Error('unreachable: a fresh record always parses');
      return toJobView(rec, { status: JobStatus.Queued, reason: null });
    });
  }

  /** Takes back a submission that did not reach the queues: nothing of it may stay behind. */
  private async unsubmit(owner: string, jobs: readonly Prepared[], written: readonly Prepared[]): Promise<void> {
    const k = this.keys;
    await Promise.allSettled([
      ...jobs.flatMap((j) => [
        this.redis.del(k.jobRecord(j.tier, j.id)),
        this.store.forget(j.id, owner),
        this.accounting.releaseHold(owner, j.id),
      ]),
      // Records written were counted as pending by their create script: count them out again.
      ...written.map((j) =>
        this.redis
          .multi()
          .hincrby(k.pending(j.tier), 'jobs', -1)
          .hincrby(k.pending(j.tier), 'gpu_mib', -j.spec.requirements.gpu_count * j.spec.requirements.gpu_memory_mib)
          .exec(),
      ),
    ]);
  }

  /** Users see their own jobs, admins all, agents those on their node; anything else is 404. */
  private mayRead(p: Principal, rec: JobRecord): boolean {
    if (p.kind === 'user') return isAdmin(p) || rec.owner === p.userId;
    if (p.kind === 'agent') return rec.fields.node_id === p.nodeId;
    return false;
  }

  private async loadVisible(p: Principal, id: string): Promise<LoadedJob> {
    const loaded = await this.store.load(id);
    if (loaded === null || !this.mayRead(p, loaded.rec)) throw new NotFoundError(`job ${id}`);
    return loaded;
  }

  /** One job; a queued one says why it waits. */
  async get(p: Principal, id: string): Promise<JobView> {
    const { rec, facts } = await this.loadVisible(p, id);
    const derived = deriveStatus(rec, facts, Date.now());
    const why = derived.status === JobStatus.Queued ? await this.waitReasons.explain(rec) : null;
    const view = toJobView(rec, derived, why);
    return p.kind === 'agent' ? agentJobView(view) : view;
  }

  /** Newest first. Users list their own jobs; admins everyone's, or one user's with user_id. */
  async list(p: Principal, filter: JobListFilter, limit: number, cursor: string | undefined): Promise<Page<JobView>> {
    if (p.kind !== 'user') throw new NotFoundError('job list');
    const admin = isAdmin(p);
    if (!admin && filter.user_id !== undefined && filter.user_id !== p.userId) {
      throw new ForbiddenError("only admins list other users' jobs");
    }
    const owner = admin ? filter.user_id : p.userId;
    const key = owner === undefined ? this.keys.jobsAll : this.keys.jobsOfUser(owner);
    const after = decodeScoreCursor(cursor);
    let max = after === undefined ? '+inf' : String(after.score);
    let skipDownTo = after?.member;
    const items: JobView[] = [];
    const batchSize = limit + 32;
    for (let scanned = 0; scanned < 20 * batchSize; ) {
      const raw = await this.redis.zrevrangebyscore(key, max, '-inf', 'WITHSCORES', 'LIMIT', 0, batchSize);
      const pairs: [string, number][] = [];
      for (let i = 0; i + 1 < raw.length; i += 2) pairs.push([raw[i] as string, Number(raw[i + 1])]);
      // Members with the cursor's score that sort at or above its member were served already.
      const fresh = pairs.filter(([id, score]) => !(skipDownTo !== undefined && score === Number(max) && id >= skipDownTo));
      if (fresh.length === 0) break;
      scanned += fresh.length;
      const queues = await this.store.queuesOf(fresh.map(([id]) => id));
      const loaded = await Promise.all(fresh.map(([id], i) => (queues[i] ? this.store.load(id, queues[i] ?? undefined) : null)));
      const now = Date.now();
      for (const [i, [id, score]] of fresh.entries()) {
        max = String(score);
        skipDownTo = id;
        const l = loaded[i];
        if (l === null || l === undefined) {
          await this.store.forget(id, owner);
          continue;
        }
        const view = toJobView(l.rec, deriveStatus(l.rec, l.facts, now));
        if (filter.status !== undefined && view.status !== filter.status) continue;
        items.push(view);
        if (items.length === limit) return { items, next_cursor: encodeCursor({ score, member: id }) };
      }
      if (pairs.length < batchSize) return { items, next_cursor: null };
    }
    // A sparse filter: return what the scan found and let the client continue from here.
    return { items, next_cursor: skipDownTo === undefined ? null : encodeCursor({ score: Number(max), member: skipDownTo }) };
  }

  async cancel(p: Principal, id: string): Promise<JobView> {
    const { rec } = await this.loadVisible(p, id);
    if (p.kind !== 'user') throw new NotFoundError(`job ${id}`);
    const k = this.keys;
    const now = Date.now();
    const res = (await runScript(
      this.redis,
      ScriptName.CancelJob,
      [k.jobRecord(rec.tier, id), k.jobLog(rec.tier, id), ...k.jobWatchKeys(rec.tier, now)],
      [now, this.retentionSeconds, this.limits.jobLogLines],
    )) as [string, string, string];
    if (res[0] === 'err') {
      if (res[1] === 'not_found') throw new NotFoundError(`job ${id}`);
      throw new ConflictError(`job ${id} already ended (${res[2]})`, 'job_finished');
    }
    const [, previous, nodeId] = res;
    if (previous === JobStatus.Queued) {
      // Ended now (a held job ends when its agent confirms, counted with that report).
      this.metrics.jobFinished(rec.tier, JobStatus.Cancelled, null, now);
      // If an agent claimed it meanwhile, its 'assigned' report is refused and it drops the job.
      await this.queues.removeWaiting(rec.queue, id);
      await this.accounting.releaseHold(rec.owner, id);
      await this.settleEarlierAttempts(rec);
    } else if (nodeId) {
      await this.nodes.addPendingCancel(nodeId, id);
      await this.queues.announceCancel(rec.queue, id);
    }
    return this.get(p, id);
  }

  /** A job cancelled while queued after attempts that ran shows what they cost. */
  private async settleEarlierAttempts(rec: JobRecord): Promise<void> {
    const attempts = Number(rec.fields.attempts ?? 0);
    if (attempts === 0) return;
    if (rec.fields.pending_attempt) await this.accounting.settleAttempt(rec.queue, rec.id, rec.fields);
    const earlier = await this.accounting.earlierAttempts(rec.id, attempts);
    await this.redis.hset(this.keys.jobRecord(rec.tier, rec.id), {
      cost: String(roundMoney(earlier.cost)),
      gpu_hours: String(roundMoney(earlier.gpuHours)),
    });
  }

  /** Queued jobs and the GPU memory they ask for, per tier (what an autoscaler scales on). */
  pendingByTier(): Promise<PendingByTier> {
    return readPendingByTier(this.redis, this.keys, this.tiers);
  }

  /** Log lines after `after` (a line id), oldest first. */
  async readLogs(
    p: Principal,
    id: string,
    after: string | undefined,
    limit: number,
  ): Promise<Page<JobLogLine> & { job_status: JobStatus }> {
    const { rec, facts } = await this.loadVisible(p, id);
    const start = after === undefined ? '-' : `(${after}`;
    if (after !== undefined && !/^\d+-\d+$/.test(after)) throw ValidationError.field('after', 'a line id from a previous read');
    const raw = await this.redis.xrange(this.keys.jobLog(rec.tier, id), start, '+', 'COUNT', limit);
    const items = raw.map(([lineId, kv]) => toLogLine(lineId, kv));
    const last = items.at(-1)?.id ?? after ?? null;
    return { items, next_cursor: last, job_status: deriveStatus(rec, facts, Date.now()).status };
  }

  /** Where a job's logs live, for a follower that reads them with a blocking connection. */
  async logStreamKey(p: Principal, id: string): Promise<string> {
    const { rec } = await this.loadVisible(p, id);
    return this.keys.jobLog(rec.tier, id);
  }
}

export function toLogLine(lineId: string, kv: string[]): JobLogLine {
  const f = pairsToRecord(kv);
  const stream = f.s === 'stderr' || f.s === 'system' ? f.s : 'stdout';
  return { id: lineId, time: iso(f.t), stream, text: f.m ?? '' };
}
