import type { JsonValue } from '../output.js';

/**
 * How the agent runs a job, whatever runs it (a Docker container, a local process). One
 * contract, one test suite for every implementation (test/agent/executor-contract.ts).
 */

export interface ExecutionRequest {
  readonly jobId: string;
  readonly nodeId: string;
  /** Full image reference; the process executor ignores it. */
  readonly image: string;
  readonly command: readonly string[] | null;
  readonly args: readonly string[] | null;
  readonly env: Readonly<Record<string, string>>;
  readonly inputData: JsonValue | null;
  /** Device indices on this node; empty for a CPU-only job. */
  readonly gpuIndices: readonly number[];
  readonly cpuCores: number;
  readonly memoryMiB: number;
  readonly timeoutSeconds: number;
  /** A named registry credential from the node's configuration. */
  readonly registrySecret: string | null;
}

export const EndStatus = {
  Succeeded: 'succeeded',
  Failed: 'failed',
  TimedOut: 'timed_out',
  Cancelled: 'cancelled',
} as const;
export type EndStatus = (typeof EndStatus)[keyof typeof EndStatus];

/** Why a run was stopped from outside. */
export const StopReason = {
  /** The user cancelled the job. */
  Cancelled: 'cancelled',
  /** The agent lost the job's lock: another agent may be running it now. */
  LockLost: 'lock_lost',
  /** The agent is shutting down and hands the job back. */
  Shutdown: 'shutdown',
  /** The job used more GPU memory than it declared (plus the margin): it fails. */
  GpuMemoryExceeded: 'gpu_memory_exceeded',
} as const;
export type StopReason = (typeof StopReason)[keyof typeof StopReason];

export interface OutputFile {
  readonly path: string;
  readonly size_bytes: number;
  readonly content_base64: string;
}

export interface JobOutput {
  /** `result.json` in the output directory, parsed; null when absent or not JSON. */
  readonly data: JsonValue | null;
  readonly files: readonly OutputFile[];
}

export interface ExecutionResult {
  readonly status: EndStatus;
  readonly exitCode: number | null;
  /** A JobEndReason (oom_killed, image_pull_failed, ...) or a StopReason, when the status needs one. */
  readonly reason: string | null;
  readonly message: string | null;
  readonly output: JobOutput | null;
  /** Set when a stop was asked for: why. The job runner decides what to tell the API. */
  readonly stoppedFor: StopReason | null;
  /** The runtime itself failed before the job ran (create/start errors): counts toward a crash loop. */
  readonly failedToStart: boolean;
  readonly startedAt: number | null;
  readonly finishedAt: number;
}

export interface ExecutionHooks {
  /** Image pull progress, 0-100. */
  onPulling(percent: number, message: string): void;
  /** The job's own process is running. */
  onStarted(): void;
  onLog(stream: 'stdout' | 'stderr' | 'system', text: string): void;
}

export interface Executor {
  readonly kind: 'docker' | 'process';
  /** Runs the job to its end. `stop` aborts it with a StopReason; the result says what happened. */
  run(req: ExecutionRequest, hooks: ExecutionHooks, stop: AbortSignal): Promise<ExecutionResult>;
  /** Removes what is left of jobs of this node that the agent no longer holds. */
  cleanup(nodeId: string, keepJobIds: ReadonlySet<string>): Promise<string[]>;
  /** Whether the runtime can take jobs now, and why not. */
  health(): Promise<{ ok: true } | { ok: false; reason: string }>;
  /** Host process ids of a running job (to match nvidia-smi's per-process memory); [] if none. */
  processIds(jobId: string): Promise<number[]>;
}

/** The reason an abort signal carries, as a StopReason. */
export function stopReasonOf(signal: AbortSignal): StopReason {
  const r = signal.reason as unknown;
  return r === StopReason.LockLost || r === StopReason.Shutdown || r === StopReason.GpuMemoryExceeded ? r : StopReason.Cancelled;
}

/** How a run stopped from outside ends: a job over its GPU memory fails; any other stop is a cancel. */
export function stoppedResult(signal: AbortSignal): Pick<ExecutionResult, 'status' | 'reason' | 'message' | 'stoppedFor'> {
  const why = stopReasonOf(signal);
  if (why === StopReason.GpuMemoryExceeded) {
    return { status: EndStatus.Failed, reason: why, message: 'stopped: it used more GPU memory than it declared', stoppedFor: why };
  }
  return { status: EndStatus.Cancelled, reason: why, message: 'stopped', stoppedFor: why };
}
