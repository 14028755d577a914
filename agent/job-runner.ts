import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { JobEndReason, JobStatus } from '../src/domain/job-status.js';
import { type JobStatusReport, type JobView, jobPayload } from '../src/domain/schemas/job.js';
import { type ApiClient, ApiError } from './api-client.js';
import type { Claimed } from './claim/queue-handle.js';
import type { CrashLoop } from './crash-loop.js';
import type { ExecutionHooks, ExecutionResult, Executor } from './executor/types.js';
import { StopReason } from './executor/types.js';
import type { LockKeeper } from './locks/lock-keeper.js';
import { LogShipper } from './log-shipper.js';
import type { JsonValue } from './output.js';
import type { Placement, ResourceBook } from './resources.js';

export interface JobRunnerDeps {
  readonly api: ApiClient;
  readonly executor: Executor;
  readonly resources: ResourceBook;
  readonly locks: LockKeeper;
  readonly crashLoop: CrashLoop;
  readonly nodeId: string;
  readonly logLines: number;
  readonly logger: Logger;
  /** Called whenever a job leaves, so the claim loop can use what it freed. */
  readonly onFreed: () => void;
  /** The API would not let this node take a job (its owner at the cap, or the price): why. */
  readonly onRefused: (jobId: string, owner: string, code: string) => void;
  /** A job ended here, as the API recorded it (for the metrics). */
  readonly onEnded?: (status: string) => void;
  /** The container runtime did not answer when a job was to start: claim nothing until it does. */
  readonly onRuntimeAway?: () => void;
}

interface Running {
  readonly claimed: Claimed;
  readonly stop: AbortController;
  /** Aborted when the lock is lost: nothing more may be said or done about the job. */
  readonly lockLost: AbortController;
  readonly done: Promise<void>;
}

/** How long to keep telling the API a job ended; the lock thread keeps the claim alive meanwhile. */
const FINAL_REPORT_DEADLINE_MS = 60 * 60_000;
/** A job still running this long after it started is reported running (see hooks). */
const RUNNING_REPORT_DELAY_MS = 100;
/** At shutdown, how long stopped jobs may take to hand back before the agent stops waiting. */
const SHUTDOWN_REPORT_WAIT_MS = 15_000;

/**
 * Runs claimed jobs from claim to BullMQ completion: tells the API it has the job (with the
 * lock token that proves it), runs it, streams its progress and logs, reports how it ended, and
 * only then finishes it in BullMQ, so a job has one final state even if the agent dies between
 * any two steps.
 */
export class JobRunner {
  private readonly running = new Map<string, Running>();
  /** Aborted when the agent is closing and cannot wait for the API or Redis any longer. */
  private readonly closing = new AbortController();

  constructor(private readonly d: JobRunnerDeps) {
    d.locks.onLost((jobId, token) => this.lockLost(jobId, token));
  }

  get jobIds(): string[] {
    return [...this.running.keys()];
  }

  get count(): number {
    return this.running.size;
  }

  has(jobId: string): boolean {
    return this.running.has(jobId);
  }

  /** Starts a claimed job whose resources `placement` holds (already reserved by the caller). */
  start(claimed: Claimed, placement: Placement): void {
    const id = claimed.job.id ?? '';
    const stop = new AbortController();
    const lockLost = new AbortController();
    // Reports stop retrying when the lock is lost, or when the agent can wait no longer.
    const giveUp = AbortSignal.any([lockLost.signal, this.closing.signal]);
    this.d.locks.track(id, `${claimed.queue.jobKey(id)}:lock`, claimed.queue.stalledKey, claimed.token);
    const done = this.execute(claimed, placement, stop.signal, giveUp)
      .catch((err: unknown) => this.d.logger.error({ jobId: id, err: (err as Error).message }, 'job runner failed'))
      .finally(() => {
        this.d.locks.untrack(id);
        this.d.resources.release(id);
        this.running.delete(id);
        this.d.onFreed();
      });
    this.running.set(id, { claimed, stop, lockLost, done });
  }

  cancel(jobId: string): void {
    this.stopFor(jobId, StopReason.Cancelled, 'cancel requested');
  }

  /** Stops a running job; how it ends follows from the reason (a cancel, or a failure). */
  stopFor(jobId: string, reason: StopReason, why: string): void {
    const r = this.running.get(jobId);
    if (r && !r.stop.signal.aborted) {
      this.d.logger.info({ jobId, reason }, `${why}: stopping the job`);
      r.stop.abort(reason);
    }
  }

  private lockLost(jobId: string, token: string): void {
    const r = this.running.get(jobId);
    // Not running here, or running under a newer claim than the lock that was lost.
    if (!r || r.claimed.token !== token) return;
    this.d.logger.warn({ jobId }, 'lost the lock on a running job (another agent may have it now): stopping it');
    r.lockLost.abort();
    if (!r.stop.signal.aborted) r.stop.abort(StopReason.LockLost);
  }

  /**
   * Waits up to `graceMs` for running jobs to end, then stops the rest and hands them back. Past
   * another short wait, reports still retrying are given up: those jobs come back through
   * BullMQ's stalled check once their locks lapse.
   */
  async shutdown(graceMs: number): Promise<void> {
    const all = () => Promise.all([...this.running.values()].map((r) => r.done));
    const ended = await Promise.race([all().then(() => true), sleep(graceMs).then(() => false)]);
    if (ended) return;
    for (const r of this.running.values()) if (!r.stop.signal.aborted) r.stop.abort(StopReason.Shutdown);
    const settled = await Promise.race([all().then(() => true), sleep(SHUTDOWN_REPORT_WAIT_MS).then(() => false)]);
    if (!settled) this.closing.abort();
    await all();
  }

  private async execute(claimed: Claimed, placement: Placement, stop: AbortSignal, giveUp: AbortSignal): Promise<void> {
    const { job, token } = claimed;
    const jobId = job.id ?? '';
    const log = this.d.logger.child({ jobId, queue: claimed.queue.name });
    const report = (body: Omit<JobStatusReport, 'lock_token'>, deadlineMs: number) =>
      this.d.api.reportStatus(jobId, { ...body, lock_token: token } as JobStatusReport, { deadlineMs, signal: giveUp });

    // 1. Tell the API this node has the job. Its answer may be that the job is over already.
    let view: JobView;
    try {
      view = await report({ status: JobStatus.Assigned, gpu_indices: [...placement.gpuIndices] }, 60_000);
    } catch (err) {
      return this.abandonBeforeStart(claimed, err, log);
    }
    if (claimed.deferredFailure !== null) {
      await this.finish(
        claimed,
        { status: JobStatus.Failed, reason: JobEndReason.Stalled, error_message: claimed.deferredFailure },
        giveUp,
        log,
      );
      return;
    }
    const payload = jobPayload.safeParse(job.data);
    if (!payload.success || view.id !== jobId) {
      await this.finish(
        claimed,
        {
          status: JobStatus.Failed,
          reason: JobEndReason.InvalidPayload,
          error_message: 'this agent cannot read the job (payload version or shape)',
        },
        giveUp,
        log,
      );
      return;
    }
    log.info({ gpus: placement.gpuIndices, attempts: view.attempts }, 'running job');

    // 2. Run it, streaming progress and logs.
    const shipper = new LogShipper(this.d.api, jobId, token, this.d.logLines, log);
    let over = false;
    const result = await this.d.executor.run(
      toRequest(view, this.d.nodeId, placement),
      this.hooks(jobId, report, shipper, giveUp, log, () => over),
      stop,
    );
    over = true;
    await shipper.flush();
    // An engine that is away is the node's health (unhealthy until it answers), not a crash loop.
    const runtimeAway = result.reason === JobEndReason.EngineUnavailable;
    if (runtimeAway) this.d.onRuntimeAway?.();
    else if (result.failedToStart) this.d.crashLoop.failedToStart(result.message ?? 'the container runtime failed');
    else if (result.startedAt !== null) this.d.crashLoop.started();

    // 3. Say how it ended, then end it in BullMQ the same way.
    if (result.stoppedFor === StopReason.LockLost || giveUp.aborted) {
      if (!this.closing.signal.aborted) log.warn('job stopped after its lock was lost; its new owner reports it');
      return;
    }
    // The container engine was away when the job was to start: not the job's failure.
    if (result.stoppedFor === StopReason.Shutdown || runtimeAway) {
      await this.handBack(claimed, result, giveUp, log);
      return;
    }
    await this.finish(claimed, endReport(result), giveUp, log);
  }

  private hooks(
    jobId: string,
    report: (body: Omit<JobStatusReport, 'lock_token'>, deadlineMs: number) => Promise<JobView>,
    shipper: LogShipper,
    giveUp: AbortSignal,
    log: Logger,
    ended: () => boolean,
  ): ExecutionHooks {
    let lastPullReport = 0;
    const progress = (body: Omit<JobStatusReport, 'lock_token'>) => {
      report(body, 10_000).catch((err: unknown) => {
        if (giveUp.aborted) return;
        // A refused progress report means the job was cancelled or is no longer ours: stop it.
        if (err instanceof ApiError && err.status === 409) this.cancel(jobId);
        else log.debug({ err: (err as Error).message }, 'progress report not delivered');
      });
    };
    return {
      onPulling: (percent, message) => {
        const now = Date.now();
        if (percent < 100 && now - lastPullReport < 1000) return;
        lastPullReport = now;
        progress({ status: JobStatus.Pulling, progress: percent, message });
      },
      // Said a moment later, and not at all for a job that is over by then: its end report says
      // how long it ran, and a short job costs the API one report less.
      onStarted: () => {
        const t = setTimeout(() => {
          if (!ended()) progress({ status: JobStatus.Running, progress: 0, message: 'container started' });
        }, RUNNING_REPORT_DELAY_MS);
        t.unref();
      },
      onLog: (stream, text) => shipper.add(stream, text),
    };
  }

  /**
   * Reports the end and finishes the BullMQ job to match what the API recorded. If the user
   * cancelled meanwhile, the API refuses the first report and the job ends as cancelled.
   */
  private async finish(claimed: Claimed, end: Omit<JobStatusReport, 'lock_token'>, giveUp: AbortSignal, log: Logger): Promise<void> {
    const jobId = claimed.job.id ?? '';
    let view: JobView;
    try {
      view = await this.d.api.reportStatus(jobId, { ...end, lock_token: claimed.token } as JobStatusReport, {
        deadlineMs: FINAL_REPORT_DEADLINE_MS,
        signal: giveUp,
      });
    } catch (err) {
      if (giveUp.aborted) return;
      if (err instanceof ApiError && err.code === 'invalid_transition') {
        // Already final on the API's side (a cancel, an admin): confirm that and end the same way.
        view = await this.d.api
          .reportStatus(jobId, { status: JobStatus.Cancelled, lock_token: claimed.token }, { deadlineMs: 60_000, signal: giveUp })
          .catch(() => ({ status: JobStatus.Cancelled }) as JobView);
      } else if (err instanceof ApiError && err.code === 'lock_lost') {
        log.warn('the API says this claim is no longer valid; leaving the job to its new owner');
        return;
      } else {
        log.error({ err: (err as Error).message }, 'could not report how the job ended; BullMQ will hand it on when the lock lapses');
        return;
      }
    }
    await this.bull(log, async () => {
      if (view.status === JobStatus.Queued) {
        // The API is retrying it (retries left): back to the queue for any agent.
        await claimed.job.moveToWait(claimed.token);
      } else if (view.status === JobStatus.Succeeded) {
        await claimed.job.moveToCompleted({ exit_code: view.exit_code }, claimed.token, false);
      } else {
        await claimed.job.moveToFailed(new Error(view.status_reason ?? view.error_message ?? view.status), claimed.token, false);
      }
    });
    // A retry shows `queued` in the API; here it ended as reported.
    this.d.onEnded?.(view.status === JobStatus.Queued ? end.status : view.status);
    log.info({ status: view.status, reason: view.status_reason, exitCode: view.exit_code }, 'job ended');
  }

  /** Gives a job back to the queue for another agent (this one is shutting down). */
  private async handBack(claimed: Claimed, result: ExecutionResult, giveUp: AbortSignal, log: Logger): Promise<void> {
    const jobId = claimed.job.id ?? '';
    // How long it ran, so the attempt is billed even if its running report never arrived.
    const ran = result.startedAt !== null ? { ran_ms: ranMs(result.startedAt, result.finishedAt) } : {};
    await this.d.api
      .reportStatus(
        jobId,
        { status: JobStatus.Queued, reason: JobEndReason.HandedBack, lock_token: claimed.token, ...ran },
        { deadlineMs: 10_000, signal: giveUp },
      )
      .catch((err: Error) => log.warn({ err: err.message }, 'could not tell the API the job was handed back'));
    await this.bull(log, () => claimed.job.moveToWait(claimed.token));
    log.info('handed the job back to the queue');
  }

  /** The API would not take the claim: the job is over, gone, or the API is away. */
  private async abandonBeforeStart(claimed: Claimed, err: unknown, log: Logger): Promise<void> {
    const jobId = claimed.job.id ?? '';
    if (err instanceof ApiError && err.code === 'invalid_transition') {
      log.info({ reason: err.message }, 'job ended before it started here (cancelled or finished): discarding');
      await this.bull(log, () => claimed.job.moveToFailed(new Error(err.message), claimed.token, false));
    } else if (err instanceof ApiError && err.status === 404) {
      log.warn('the API has no record of this job: failing it in the queue');
      await this.bull(log, () => claimed.job.moveToFailed(new Error('no job record'), claimed.token, false));
    } else if (err instanceof ApiError && err.code === 'lock_lost') {
      log.warn('lost the claim before starting');
    } else if (err instanceof ApiError && (err.code === 'fair_share' || err.code === 'price_too_high')) {
      log.info({ reason: err.message }, 'the API would not let this node take the job: handing it back');
      this.d.onRefused(jobId, (claimed.job.data as { owner?: string }).owner ?? '', err.code);
      await this.bull(log, () => claimed.job.moveToWait(claimed.token));
    } else {
      log.warn({ err: (err as Error).message }, 'could not tell the API about the claim: handing the job back');
      await this.bull(log, () => claimed.job.moveToWait(claimed.token));
    }
  }

  /** A BullMQ step, retried through a short Redis outage; a lost lock ends it quietly. */
  private async bull(log: Logger, step: () => Promise<unknown>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await step();
        return;
      } catch (err) {
        const message = (err as Error).message;
        if (/lock|Missing key|not in the active state/i.test(message) || attempt >= 6 || this.closing.signal.aborted) {
          log.warn({ err: message }, 'could not finish the job in the queue; the stalled check will settle it');
          return;
        }
        await sleep(Math.min(5000, 200 * 2 ** attempt));
      }
    }
  }
}

/** What to run, from the job as the API answered the claim (the spec lives in its record). */
function toRequest(v: JobView, nodeId: string, placement: Placement) {
  return {
    jobId: v.id,
    nodeId,
    image: v.image,
    command: v.command,
    args: v.args,
    env: v.env,
    inputData: v.input_data as JsonValue | null,
    gpuIndices: placement.gpuIndices,
    cpuCores: placement.cpuCores,
    memoryMiB: placement.memoryMiB,
    timeoutSeconds: v.timeout_seconds,
    registrySecret: v.registry_secret,
  };
}

/** At least 1: a job that started ran, even within one millisecond, and 0 tells the API "unknown". */
const ranMs = (startedAt: number, finishedAt: number): number => Math.max(1, finishedAt - startedAt);

function endReport(r: ExecutionResult): Omit<JobStatusReport, 'lock_token'> {
  return {
    status: r.status,
    ...(r.startedAt !== null && { ran_ms: ranMs(r.startedAt, r.finishedAt) }),
    ...(r.exitCode !== null && { exit_code: r.exitCode }),
    ...(r.reason !== null && { reason: r.reason }),
    ...(r.message !== null && r.status !== 'succeeded' && { error_message: r.message }),
    ...(r.output !== null && { result: r.output as unknown as JobStatusReport['result'] }),
    progress: 100,
  };
}
