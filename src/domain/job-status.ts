/**
 * The job statuses a user sees: a closed set. BullMQ knows whether a job waits, is locked by
 * a worker, or finished; agents add what only they know (pulling, running, how it ended).
 */
export const JobStatus = {
  Queued: 'queued',
  Assigned: 'assigned',
  Pulling: 'pulling',
  Running: 'running',
  Succeeded: 'succeeded',
  Failed: 'failed',
  Cancelled: 'cancelled',
  TimedOut: 'timed_out',
} as const;
export type JobStatus = (typeof JobStatus)[keyof typeof JobStatus];
export const JOB_STATUSES = Object.values(JobStatus) as [JobStatus, ...JobStatus[]];

export const FINAL_JOB_STATUSES: ReadonlySet<JobStatus> = new Set([
  JobStatus.Succeeded,
  JobStatus.Failed,
  JobStatus.Cancelled,
  JobStatus.TimedOut,
]);

/** Statuses in which a node holds the job. */
export const ACTIVE_JOB_STATUSES: ReadonlySet<JobStatus> = new Set([JobStatus.Assigned, JobStatus.Pulling, JobStatus.Running]);

export function isFinal(s: JobStatus): boolean {
  return FINAL_JOB_STATUSES.has(s);
}

/**
 * From which statuses an agent may move a job to each status. `assigned` may follow any live
 * status because an agent that claims a job whose previous owner died takes it over; the
 * BullMQ lock it must present proves the claim. Final statuses are never left.
 */
export const ALLOWED_FROM: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  // An agent hands a job back (shutting down, or it cannot run it after all).
  queued: ['assigned', 'pulling', 'running'],
  assigned: ['queued', 'assigned', 'pulling', 'running'],
  pulling: ['assigned', 'pulling'],
  running: ['assigned', 'pulling', 'running'],
  succeeded: ['assigned', 'pulling', 'running'],
  failed: ['queued', 'assigned', 'pulling', 'running'],
  timed_out: ['assigned', 'pulling', 'running'],
  cancelled: ['queued', 'assigned', 'pulling', 'running'],
};

export function parseJobStatus(s: string | undefined): JobStatus | undefined {
  return JOB_STATUSES.find((v) => v === s);
}

/** Why a job ended as it did, when the status alone does not say. */
export const JobEndReason = {
  EnqueueInterrupted: 'enqueue_interrupted',
  Stalled: 'stalled',
  CancelledByUser: 'cancelled_by_user',
  ImagePullFailed: 'image_pull_failed',
  NonZeroExit: 'non_zero_exit',
  OomKilled: 'oom_killed',
  Timeout: 'timeout',
  GpuMemoryExceeded: 'gpu_memory_exceeded',
  AgentError: 'agent_error',
  HandedBack: 'handed_back',
  LockLost: 'lock_lost',
  InvalidPayload: 'invalid_payload',
  OutputTooLarge: 'output_too_large',
  /** The container engine shut down, restarted or vanished while the job ran (retries apply). */
  EngineStopped: 'engine_stopped',
  /** The container engine did not answer when the job was to start: handed back, not failed. */
  EngineUnavailable: 'engine_unavailable',
} as const;
export type JobEndReason = (typeof JobEndReason)[keyof typeof JobEndReason];
