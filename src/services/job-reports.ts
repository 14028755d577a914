import { attemptCost, gpuHours, hourlyRate, roundMoney } from '../domain/cost.js';
import { ConflictError, DomainError, ForbiddenError, NotFoundError, ValidationError } from '../domain/errors.js';
import { ACTIVE_JOB_STATUSES, ALLOWED_FROM, isFinal, JobStatus } from '../domain/job-status.js';
import { tierOfQueue } from '../domain/queues.js';
import { isAdmin, type Principal } from '../domain/roles.js';
import type { JobLogAppend, JobStatusReport, JobView } from '../domain/schemas/job.js';
import { type JobMetrics, NO_JOB_METRICS } from '../metrics/api-metrics.js';
import type { RedisClient } from '../redis/connection.js';
import { pairsToRecord } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';
import type { Accounting } from './accounting.js';
import { agentJobView, type JobRecord, parseJobRecord, toJobView } from './job-model.js';
import { jsonBytes } from './job-service.js';
import type { JobStore } from './job-store.js';
import type { NodeRegistry } from './node-registry.js';

export interface JobReportLimits {
  readonly resultBytes: number;
  readonly jobLogLines: number;
}

type Agent = Extract<Principal, { kind: 'agent' }>;

/**
 * What agents tell the API about the jobs they hold: status changes, proven with the BullMQ
 * lock token of the claim, and log lines. Taking a job counts against its owner's running-jobs
 * cap and fixes its hourly rate; its end writes its cost to the ledger, once.
 */
export class JobReports {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly store: JobStore,
    private readonly nodes: NodeRegistry,
    private readonly accounting: Accounting,
    private readonly limits: JobReportLimits,
    private readonly retentionSeconds: number,
    private readonly metrics: JobMetrics = NO_JOB_METRICS,
  ) {}

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
    const queue = await this.store.queueOf(id);
    if (queue === null) throw new NotFoundError(`job ${id}`);
    const tier = tierOfQueue(queue);
    const claiming = body.status === JobStatus.Assigned && agent !== null;
    // Only taking a job needs more of the record first (its owner and requirements).
    const rec = claiming ? await this.store.record(id, queue) : null;
    if (claiming && rec === null) throw new NotFoundError(`job ${id}`);

    const fields: Record<string, string> = {};
    if (body.progress !== undefined) fields.progress = String(body.progress);
    if (body.message !== undefined) fields.status_message = body.message;
    if (body.exit_code !== undefined) fields.exit_code = String(body.exit_code);
    if (body.reason !== undefined) fields.status_reason = body.reason;
    if (body.error_message !== undefined) fields.error_message = body.error_message;
    if (body.result !== undefined) fields.result = JSON.stringify(body.result);

    if (claiming && rec !== null) Object.assign(fields, await this.admit(agent, rec, body.gpu_indices ?? []));

    const k = this.keys;
    const now = Date.now();
    const res = (await runScript(
      this.redis,
      ScriptName.UpdateJobStatus,
      [k.jobRecord(tier, id), k.bullLock(queue, id), k.jobLog(tier, id), ...k.jobWatchKeys(tier, now)],
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
        body.ran_ms ?? 0,
      ],
    )) as [string, string, string, unknown];

    switch (res[0]) {
      case 'err': {
        const [, code, current] = res;
        // A refused claim gives back the running slot admit() took, unless a node holds the job
        // (another claim won, or it runs elsewhere): that slot is the holder's.
        const held = ACTIVE_JOB_STATUSES.has(current as JobStatus);
        if (claiming && rec !== null && !held) await this.accounting.releaseRunning(rec.owner, id);
        if (code === 'not_found' || code === 'not_assigned') throw new NotFoundError(`job ${id}`);
        if (code === 'lock_lost') {
          throw new ConflictError(`this claim of job ${id} is no longer valid (its lock expired or moved)`, 'lock_lost');
        }
        throw new ConflictError(`job ${id} cannot go from ${current} to ${body.status}`, 'invalid_transition');
      }
      case 'ok':
      case 'dup':
      case 'retry':
        break;
      default:
        throw new Error(`unexpected reply from updateJobStatus: ${String(res[0])}`);
    }
    let after = parseJobRecord(pairsToRecord(res[3]));
    if (after === null) throw new NotFoundError(`job ${id}`);
    if (res[0] === 'ok') this.countChange(tier, String(res[1]), res[2] === '1', body.ran_ms !== undefined, after.fields);
    // An attempt that ran and went back to the queue is billed (now, or by the next report if
    // this process died before it could).
    if (after.fields.pending_attempt) after = { ...after, fields: await this.accounting.settleAttempt(queue, id, after.fields) };
    // A final report (or the same one again: it is idempotent) settles what follows an end.
    if ((res[0] === 'ok' && res[2] === '1') || res[0] === 'dup') {
      after = { ...after, fields: { ...after.fields, ...(await this.afterEnd(queue, id, after.fields)) } };
    } else if (res[0] === 'retry' || after.status === JobStatus.Queued) {
      await this.accounting.releaseRunning(after.owner, id);
    }
    // The reporter holds the lock (or the job is final), so the record is what the job is.
    const view = toJobView(after, { status: after.status, reason: after.fields.status_reason || null });
    return p.kind === 'agent' ? agentJobView(view) : view;
  }

  /**
   * Counts what the script applied (a repeated report is 'dup', not counted): an attempt's start,
   * at its running report or, for a job that ended before it sent one, at its end (the agent says
   * how long it ran, perhaps 0 ms, when its container started); and an end.
   */
  private countChange(tier: string, previous: string, final: boolean, ran: boolean, f: Readonly<Record<string, string>>): void {
    const finished = Number(f.finished_at ?? 0);
    const started = Number(f.started_at ?? 0) || (final && ran ? finished : 0);
    const fresh = previous === JobStatus.Assigned || previous === JobStatus.Pulling;
    if (fresh && started > 0 && (f.status === JobStatus.Running || final)) {
      this.metrics.jobStarted(tier, Number(f.created_at ?? 0), started);
    }
    if (final) this.metrics.jobFinished(tier, f.status ?? '', started > 0 ? started : null, finished);
  }

  /**
   * Before a node takes a job: the price it would pay there within its limit, and its owner under
   * the running-jobs cap. What it will cost per hour is fixed now, at the node's current prices.
   */
  private async admit(agent: Agent, rec: JobRecord, gpuIndices: readonly number[]): Promise<Record<string, string>> {
    const r = rec.spec.requirements;
    const node = await this.nodes.shape(agent.nodeId);
    if (node === null) throw new ConflictError(`node ${agent.nodeId} is not registered`, 'node_not_registered');
    if (gpuIndices.length !== r.gpu_count || new Set(gpuIndices).size !== gpuIndices.length) {
      throw ValidationError.field('gpu_indices', `name the ${r.gpu_count} distinct devices the job got`);
    }
    const totals = gpuIndices.map((i) => node.gpus.find((g) => g.index === i)?.memory_total ?? 0);
    const held = { gpuMemoryMiB: r.gpu_memory_mib, cpuCores: r.cpu_cores, memoryMiB: r.memory_mib };
    const rate = hourlyRate(node.prices, held, totals);
    if (r.max_price_per_hour !== null && rate > r.max_price_per_hour + 1e-9) {
      throw new ConflictError(`job ${rec.id} pays at most ${r.max_price_per_hour}/h; on this node it costs ${rate}/h`, 'price_too_high');
    }
    if (!(await this.accounting.claimRunning(rec.owner, rec.id))) {
      throw new ConflictError(`${rec.owner} is at their cap of running jobs`, 'fair_share');
    }
    return {
      hourly_rate: String(rate),
      gpu_indices: JSON.stringify(gpuIndices),
      gpu_share: String(gpuHours(held, totals, 3_600_000)),
    };
  }

  /**
   * What follows a job's end, once however often it is reported (an agent repeats a report whose
   * answer it lost): the owner's running count and budget hold, the ledger entry with its cost,
   * the node's counters.
   */
  private async afterEnd(
    queue: string,
    id: string,
    f: Readonly<Record<string, string>>,
    billLastAttempt = true,
  ): Promise<Record<string, string>> {
    const tier = tierOfQueue(queue);
    const owner = f.owner ?? '';
    const nodeId = f.node_id ?? '';
    const started = Number(f.started_at ?? 0);
    const finished = Number(f.finished_at ?? 0);
    const ranMs = billLastAttempt && started > 0 && finished >= started ? finished - started : 0;
    const rate = Number(f.hourly_rate ?? 0);
    const { cost, gpuHours: gpuHoursUsed } = attemptCost(f, ranMs);
    // The job shows what all its attempts cost; the ledger has an entry for each.
    // Every attempt before this last one.
    const earlier = await this.accounting.earlierAttempts(id, Number(f.attempts ?? 1) - 1);
    const costFields = {
      cost: String(roundMoney(cost + earlier.cost)),
      gpu_hours: String(roundMoney(gpuHoursUsed + earlier.gpuHours)),
    };
    await Promise.all([
      this.accounting.releaseRunning(owner, id),
      this.accounting.releaseHold(owner, id),
      this.redis.hset(this.keys.jobRecord(tier, id), costFields),
    ]);
    if (nodeId && ranMs > 0) {
      await this.accounting.record({
        job_id: id,
        user_id: owner,
        node_id: nodeId,
        queue,
        status: f.status ?? '',
        started_at: new Date(started).toISOString(),
        ended_at: new Date(finished).toISOString(),
        run_seconds: ranMs / 1000,
        gpu_count: Number(f.gpu_count ?? 0),
        gpu_hours: gpuHoursUsed,
        hourly_rate: rate,
        cost,
      });
    }
    // The record's `counted` field makes the node's counters count a job once.
    if (nodeId && (await this.redis.hsetnx(this.keys.jobRecord(tier, id), 'counted', '1')) === 1) {
      const outcome = f.status === JobStatus.Succeeded ? 'succeeded' : f.status === JobStatus.Cancelled ? 'cancelled' : 'failed';
      await Promise.all([this.nodes.recordJobEnd(nodeId, outcome, gpuHoursUsed * 3_600_000), this.nodes.clearPendingCancel(nodeId, id)]);
    }
    return costFields;
  }

  /**
   * What follows the end of a job the reaper ended (see job-reaper.ts), as for a final report:
   * the metrics (once: `fresh` when the end was written just now), an attempt left to bill, the
   * owner's running count and budget hold, the ledger entry and the node's counters. The last
   * attempt is not billed: its agent vanished and nobody knows how long it ran, as when another
   * agent takes a stalled job over. Safe to repeat.
   */
  async settleReaped(queue: string, id: string, previous: string, fields: Readonly<Record<string, string>>, fresh: boolean): Promise<void> {
    if (fresh) this.countChange(tierOfQueue(queue), previous, true, false, fields);
    let f = fields;
    if (f.pending_attempt) f = await this.accounting.settleAttempt(queue, id, f);
    await this.afterEnd(queue, id, f, false);
  }

  /**
   * Several reports at once (an agent batches what it has to say in a few milliseconds), each
   * answered on its own, as its own request would have been.
   */
  async reportMany(
    p: Principal,
    reports: readonly (JobStatusReport & { job_id: string })[],
  ): Promise<
    ({ job_id: string; ok: true; job: JobView } | { job_id: string; ok: false; status: number; error: string; message: string })[]
  > {
    return Promise.all(
      reports.map(async ({ job_id, ...report }) => {
        try {
          return { job_id, ok: true as const, job: await this.report(p, job_id, report) };
        } catch (err) {
          if (!(err instanceof DomainError) || err.status >= 500) throw err;
          return { job_id, ok: false as const, status: err.status, error: err.code, message: err.message };
        }
      }),
    );
  }

  async appendLogs(p: Principal, id: string, body: JobLogAppend): Promise<number> {
    if (p.kind !== 'agent' && !isAdmin(p)) throw new ForbiddenError('job logs are written by agents');
    const queue = await this.store.queueOf(id);
    if (queue === null) throw new NotFoundError(`job ${id}`);
    const tier = tierOfQueue(queue);
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
}
