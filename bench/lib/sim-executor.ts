import { setTimeout as sleep } from 'node:timers/promises';
import {
  EndStatus,
  type ExecutionHooks,
  type ExecutionRequest,
  type ExecutionResult,
  type Executor,
  stoppedResult,
} from '../../agent/executor/types.js';

/**
 * Runs nothing: a job "runs" for the milliseconds in its first argument (0 for a no-op), so the
 * simulator and the benchmarks exercise the real agent (claiming, locks, reports) without
 * containers.
 */
export interface SimObserver {
  started(jobId: string, gpuIndices: readonly number[]): void;
  ended(jobId: string): void;
}

export class SimExecutor implements Executor {
  readonly kind = 'process';

  constructor(private readonly observer?: SimObserver) {}

  async run(req: ExecutionRequest, hooks: ExecutionHooks, stop: AbortSignal): Promise<ExecutionResult> {
    const ms = Number(req.args?.[0] ?? 0);
    const startedAt = Date.now();
    this.observer?.started(req.jobId, req.gpuIndices);
    hooks.onStarted();
    let stopped = false;
    if (ms > 0) await sleep(ms, undefined, { signal: stop }).catch(() => (stopped = true));
    this.observer?.ended(req.jobId);
    const base = { exitCode: 0, output: null, failedToStart: false, startedAt, finishedAt: Date.now() };
    if (stopped) return { ...base, ...stoppedResult(stop) };
    return { ...base, status: EndStatus.Succeeded, reason: null, message: null, stoppedFor: null };
  }

  async cleanup(): Promise<string[]> {
    return [];
  }

  async health(): Promise<{ ok: true }> {
    return { ok: true };
  }

  async processIds(): Promise<number[]> {
    return [];
  }
}
