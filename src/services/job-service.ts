import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ConflictError, type FieldProblem, ForbiddenError, NotFoundError, UnavailableError, ValidationError } from '../domain/errors.js';
import { ALLOWED_FROM, isFinal, JobStatus } from '../domain/job-status.js';
import { compactRequirements } from '../domain/requirements.js';
import { isAdmin, type Principal } from '../domain/roles.js';
import type { Page } from '../domain/schemas/common.js';
import {
  DEFAULT_JOB_TIMEOUT_SECONDS,
  JOB_PAYLOAD_VERSION,
  type JobCreateBody,
  type JobLogAppend,
  type JobLogLine,
  type JobSpec,
  type JobStatusReport,
  type JobView,
  splitImageReference,
} from '../domain/schemas/job.js';
import type { TierTable } from '../domain/tiers.js';
import { pairsToRecord } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';
import { iso } from '../util/time.js';
import { decodeScoreCursor, encodeCursor } from './cursor.js';
import { type BullFacts, deriveStatus, type JobRecord, newRecordFields, parseJobRecord, toJobView } from './job-model.js';
import type { JobQueues } from './job-queues.js';
import type { NodeRegistry } from './node-registry.js';

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

const jsonBytes = (v: unknown): number => Buffer.byteLength(JSON.stringify(v) ?? '', 'utf8');

/** Jobs: submission into the tier queues, what users see of them, and what agents report. */
export class JobService {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly tiers: TierTable,
    private readonly queues: JobQueues,
    private readonly nodes: NodeRegistry,
    private readonly limits: JobServiceLimits,
    private readonly retentionSeconds: number,
  ) {}

  /** Checks a submission against the limits and tiers and normalizes it into a spec. */
  buildSpec(body: JobCreateBody): { spec: JobSpec; tier: string } {
    const problems: FieldProblem[] = [];
    const image = splitImageReference(body.docker_image, body.docker_tag);
    if ('error' in image) problems.push({ field: image.field, message: image.error });

    const gpuCount = body.gpu_count ?? (body.gpu_memory_required > 0 ? 1 : 0);
    if (gpuCount === 0 && body.gpu_memory_required > 0) {
      problems.push({ field: 'gpu_count', message: 'must be at least 1 when gpu_memory_required > 0' });
    }
    if (gpuCount === 0 && body.gpu_type !== undefined) {
      problems.push({ field: 'gpu_type', message: 'a CPU-only job (gpu_count 0) cannot ask for a GPU type' });
    }
    const tier = this.tiers.pick(gpuCount, body.gpu_memory_required);
    if (tier === undefined) {
      problems.push({
        field: 'gpu_memory_required',
        message: `no tier holds ${body.gpu_memory_required} MiB per GPU; the largest is ${this.tiers.maxGpuMemoryMiB} MiB`,
      });
    }
    const timeout = body.timeout_seconds ?? Math.min(DEFAULT_JOB_TIMEOUT_SECONDS, this.limits.jobTimeoutMaxSeconds);
    if (timeout > this.limits.jobTimeoutMaxSeconds) {
      problems.push({ field: 'timeout_seconds', message: `at most ${this.limits.jobTimeoutMaxSeconds}` });
    }
    if (body.input_data !== undefined && jsonBytes(body.input_data) > this.limits.inputDataBytes) {
      problems.push({ field: 'input_data', message: `larger than ${this.limits.inputDataBytes} bytes as JSON` });
    }
    if (problems.length > 0 || 'error' in image || tier === undefined) throw new ValidationError(problems);

    const ref = image.digest !== null ? `${image.name}@${image.digest}` : `${image.name}:${image.tag ?? 'latest'}`;
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
        gpu_type: body.gpu_type ?? null,
        cpu_cores: body.cpu_cores_required,
        memory_mib: body.memory_required,
      },
      timeout_seconds: timeout,
      max_retries: body.max_retries,
      priority: body.priority,
      registry_secret: body.registry_secret ?? null,
    };
    return { spec, tier: tier.name };
  }

  /**
   * Writes, in order, the lookup entries (harmless if left dangling: readers skip them), the
   * record, then the BullMQ job. If the enqueue fails the record is removed again; if this process
   * dies between the two, readers show the job as failed (enqueue_interrupted) after a grace time.
   */
  async create(owner: string, body: JobCreateBody): Promise<JobView> {
    const { spec, tier } = this.buildSpec(body);
    const id = randomUUID();
    const now = Date.now();
    const k = this.keys;
    await this.redis.multi().hset(k.jobQueueIndex, id, tier).zadd(k.jobsAll, now, id).zadd(k.jobsOfUser(owner), now, id).exec();
    const fields = newRecordFields(id, owner, tier, spec, now);
    await this.redis.hset(k.jobRecord(tier, id), fields);
    try {
      await this.queues.enqueue({ v: JOB_PAYLOAD_VERSION, req: compactRequirements(spec.requirements), job_id: id, owner, tier, spec });
    } catch {
      await Promise.allSettled([this.redis.del(k.jobRecord(tier, id)), this.forgetIndex(id, owner)]);
      throw new UnavailableError('the job queue is unavailable; the job was not submitted, retry later');
    }
    const rec = parseJobRecord(fields);
    if (rec === null) throw new Error('unreachable: a fresh record always parses');
    return toJobView(rec, { status: JobStatus.Queued, reason: null });
  }

  private async forgetIndex(id: string, owner: string | undefined): Promise<void> {
    const k = this.keys;
    const m = this.redis.multi().hdel(k.jobQueueIndex, id).zrem(k.jobsAll, id);
    if (owner !== undefined) m.zrem(k.jobsOfUser(owner), id);
    await m.exec();
  }

  /** A job's record and BullMQ facts, or null when it does not exist (any more). */
  private async load(id: string, knownTier?: string): Promise<{ rec: JobRecord; facts: BullFacts } | null> {
    const tier = knownTier ?? (await this.redis.hget(this.keys.jobQueueIndex, id));
    if (tier === null || this.tiers.get(tier) === undefined) return null;
    const k = this.keys;
    const res = (await runScript(
      this.redis,
      ScriptName.JobView,
      [k.jobRecord(tier, id), k.bullJob(tier, id), k.bullLock(tier, id), k.bullSet(tier, 'failed'), k.bullSet(tier, 'completed')],
      [id],
    )) as [unknown, number, number, number, number, string];
    const rec = parseJobRecord(pairsToRecord(res[0]));
    if (rec === null) return null;
    return {
      rec,
      facts: { exists: res[1] === 1, locked: res[2] === 1, inFailed: res[3] === 1, inCompleted: res[4] === 1, failedReason: res[5] },
    };
  }

  /** Users see their own jobs, admins all, agents those on their node; anything else is 404. */
  private mayRead(p: Principal, rec: JobRecord): boolean {
    if (p.kind === 'user') return isAdmin(p) || rec.owner === p.userId;
    if (p.kind === 'agent') return rec.fields.node_id === p.nodeId;
    return false;
  }

  private async loadVisible(p: Principal, id: string): Promise<{ rec: JobRecord; facts: BullFacts }> {
    const loaded = await this.load(id);
    if (loaded === null || !this.mayRead(p, loaded.rec)) throw new NotFoundError(`job ${id}`);
    return loaded;
  }

  async get(p: Principal, id: string): Promise<JobView> {
    const { rec, facts } = await this.loadVisible(p, id);
    return toJobView(rec, deriveStatus(rec, facts, Date.now()));
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
      const tiers = await this.redis.hmget(this.keys.jobQueueIndex, ...fresh.map(([id]) => id));
      const loaded = await Promise.all(fresh.map(([id], i) => (tiers[i] ? this.load(id, tiers[i] ?? undefined) : null)));
      const now = Date.now();
      for (const [i, [id, score]] of fresh.entries()) {
        max = String(score);
        skipDownTo = id;
        const l = loaded[i];
        if (l === null || l === undefined) {
          await this.forgetIndex(id, owner);
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
    const res = (await runScript(
      this.redis,
      ScriptName.CancelJob,
      [k.jobRecord(rec.tier, id), k.jobLog(rec.tier, id)],
      [Date.now(), this.retentionSeconds, this.limits.jobLogLines],
    )) as [string, string, string];
    if (res[0] === 'err') {
      if (res[1] === 'not_found') throw new NotFoundError(`job ${id}`);
      throw new ConflictError(`job ${id} already ended (${res[2]})`, 'job_finished');
    }
    const [, previous, nodeId] = res;
    if (previous === JobStatus.Queued) {
      // If an agent claimed it meanwhile, its 'assigned' report is refused and it drops the job.
      await this.queues.removeWaiting(rec.tier, id);
    } else if (nodeId) {
      await this.nodes.addPendingCancel(nodeId, id);
      await this.queues.announceCancel(rec.tier, id);
    }
    return this.get(p, id);
  }

  /**
   * Applies what an agent reports about a job it holds. The agent proves its claim with the
   * BullMQ lock token; an admin may move a job to a final status without one.
   */
  async report(p: Principal, id: string, body: JobStatusReport): Promise<JobView> {
    const agent = p.kind === 'agent' ? p : null;
    if (agent === null && !isAdmin(p)) throw new ForbiddenError('job status is reported by agents (or set by an admin)');
    if (agent !== null && body.lock_token === undefined) {
      throw ValidationError.field('lock_token', 'agents must present the lock token of their claim');
    }
    if (agent === null && !isFinal(body.status)) {
      throw ValidationError.field('status', 'an admin may only end a job (succeeded, failed, cancelled, timed_out)');
    }
    if (body.result !== undefined && jsonBytes(body.result) > this.limits.resultBytes) {
      throw ValidationError.field('result', `larger than ${this.limits.resultBytes} bytes as JSON`);
    }
    const tier = await this.redis.hget(this.keys.jobQueueIndex, id);
    if (tier === null) throw new NotFoundError(`job ${id}`);

    const fields: Record<string, string> = {};
    if (body.progress !== undefined) fields.progress = String(body.progress);
    if (body.message !== undefined) fields.status_message = body.message;
    if (body.exit_code !== undefined) fields.exit_code = String(body.exit_code);
    if (body.reason !== undefined) fields.status_reason = body.reason;
    if (body.error_message !== undefined) fields.error_message = body.error_message;
    if (body.result !== undefined) fields.result = JSON.stringify(body.result);

    const k = this.keys;
    const now = Date.now();
    const res = (await runScript(
      this.redis,
      ScriptName.UpdateJobStatus,
      [k.jobRecord(tier, id), k.bullLock(tier, id), k.jobLog(tier, id)],
      [
        body.status,
        agent?.nodeId ?? '',
        body.lock_token ?? '',
        agent !== null ? '1' : '0',
        ALLOWED_FROM[body.status].join(','),
        JSON.stringify(fields),
        now,
        this.retentionSeconds,
        this.limits.jobLogLines,
      ],
    )) as string[];

    switch (res[0]) {
      case 'err': {
        const [, code, current] = res;
        if (code === 'not_found' || code === 'not_assigned') throw new NotFoundError(`job ${id}`);
        if (code === 'lock_lost') {
          throw new ConflictError(`this claim of job ${id} is no longer valid (its lock expired or moved)`, 'lock_lost');
        }
        throw new ConflictError(`job ${id} cannot go from ${current} to ${body.status}`, 'invalid_transition');
      }
      case 'ok':
        if (res[2] === '1') await this.afterEnd(tier, id);
        break;
      case 'retry':
      case 'dup':
        break;
      default:
        throw new Error(`unexpected reply from updateJobStatus: ${String(res[0])}`);
    }
    const loaded = await this.load(id, tier);
    if (loaded === null) throw new NotFoundError(`job ${id}`);
    return toJobView(loaded.rec, deriveStatus(loaded.rec, loaded.facts, Date.now()));
  }

  /** Once per job, when it has ended: the node's counters, and its pending cancel is done. */
  private async afterEnd(tier: string, id: string): Promise<void> {
    const [status, nodeId, gpuCount, started, finished] = await this.redis.hmget(
      this.keys.jobRecord(tier, id),
      'status',
      'node_id',
      'gpu_count',
      'started_at',
      'finished_at',
    );
    if (!nodeId) return;
    const ranMs = started && finished ? Math.max(0, Number(finished) - Number(started)) : 0;
    const outcome = status === JobStatus.Succeeded ? 'succeeded' : status === JobStatus.Cancelled ? 'cancelled' : 'failed';
    await Promise.all([this.nodes.recordJobEnd(nodeId, outcome, ranMs * Number(gpuCount ?? 0)), this.nodes.clearPendingCancel(nodeId, id)]);
  }

  async appendLogs(p: Principal, id: string, body: JobLogAppend): Promise<number> {
    if (p.kind !== 'agent' && !isAdmin(p)) throw new ForbiddenError('job logs are written by agents');
    const tier = await this.redis.hget(this.keys.jobQueueIndex, id);
    if (tier === null) throw new NotFoundError(`job ${id}`);
    const now = Date.now();
    const args: (string | number)[] = [p.kind === 'agent' ? p.nodeId : '', this.limits.jobLogLines];
    for (const line of body.lines) args.push(line.time ?? now, line.stream, line.text);
    const n = (await runScript(
      this.redis,
      ScriptName.AppendJobLog,
      [this.keys.jobRecord(tier, id), this.keys.jobLog(tier, id)],
      args,
    )) as number;
    if (n < 0) throw new NotFoundError(`job ${id}`);
    return n;
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
