import { setTimeout as sleep } from 'node:timers/promises';
import { isFinal, type JobStatus, parseJobStatus } from '../domain/job-status.js';
import type { JobLogLine, JobView } from '../domain/schemas/job.js';
import type { ApiClient } from './api-client.js';
import { ApiError, ExitCode } from './errors.js';
import { duration, progressBar } from './output.js';
import type { StatusLine } from './status-line.js';

const POLL_MS = 1000;
/** Reconnects in a row, with no line received between them, before giving up on the stream. */
const MAX_RECONNECTS = 5;

const isAbort = (err: unknown) => (err as Error | null)?.name === 'AbortError';

/**
 * Streams a job's log lines until the job ends (`event: end`), and answers its final status.
 * A dropped stream is opened again after the last line seen, so nothing is shown twice.
 */
export async function streamLogs(
  client: ApiClient,
  jobId: string,
  onLine: (line: JobLogLine) => void,
  signal: AbortSignal,
): Promise<JobStatus> {
  let after: string | undefined;
  let failures = 0;
  for (;;) {
    try {
      for await (const ev of client.events(`/jobs/${jobId}/logs`, { follow: 'true', after }, signal)) {
        if (ev.event === 'line') {
          const line = JSON.parse(ev.data) as JobLogLine;
          after = line.id;
          failures = 0;
          onLine(line);
        } else if (ev.event === 'end') {
          const status = parseJobStatus((JSON.parse(ev.data) as { status?: string }).status);
          if (status !== undefined) return status;
        }
      }
    } catch (err) {
      if (isAbort(err) || err instanceof ApiError || failures >= MAX_RECONNECTS) throw err;
    }
    if (signal.aborted) throw signal.reason;
    failures += 1;
    await sleep(POLL_MS, undefined, { signal });
  }
}

/** Calls `onJob` with the job as it stands every second until it ends or `signal` aborts. */
export async function watchJob(client: ApiClient, jobId: string, onJob: (job: JobView) => void, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      const job = await client.get<JobView>(`/jobs/${jobId}`);
      onJob(job);
      if (isFinal(job.status)) return;
    } catch (err) {
      // The log stream decides when watching ends; a missed poll only delays the status line.
      if (isAbort(err)) return;
    }
    await sleep(POLL_MS, undefined, { signal }).catch(() => undefined);
  }
}

/** What the status line says about a job that has not ended, and when that counts as a change. */
export function describeProgress(job: JobView): { key: string; text: () => string } {
  const since = (t: string | null) => (t ? ` for ${duration(Date.now() - Date.parse(t))}` : '');
  switch (job.status) {
    case 'queued':
      return {
        key: `queued:${job.wait_reason ?? ''}`,
        text: () => `queued in ${job.tier}${since(job.created_at)}${job.wait_reason ? `: ${job.wait_reason}` : ''}`,
      };
    case 'assigned':
      return { key: 'assigned', text: () => `assigned to ${job.node_id ?? 'a node'}` };
    case 'pulling': {
      const p = job.progress ?? 0;
      return { key: `pulling:${Math.floor(p / 25)}`, text: () => `pulling ${job.image} ${progressBar(p)}` };
    }
    case 'running':
      return { key: 'running', text: () => `running on ${job.node_id ?? 'a node'}${since(job.started_at)}` };
    default:
      return { key: job.status, text: () => job.status };
  }
}

/** One line on how a job ended. */
export function describeEnd(job: JobView): string {
  const ran = job.started_at && job.completed_at ? ` after ${duration(Date.parse(job.completed_at) - Date.parse(job.started_at))}` : '';
  const name = `job ${job.job_name} (${job.id})`;
  switch (job.status) {
    case 'succeeded':
      return `${name} succeeded${ran}`;
    case 'failed': {
      const code = job.exit_code !== null ? ` with exit code ${job.exit_code}` : '';
      const why = job.error_message ?? job.status_reason;
      return `${name} failed${code}${ran}${why ? `: ${why}` : ''}`;
    }
    case 'timed_out':
      return `${name} timed out after ${job.timeout_seconds}s`;
    case 'cancelled':
      return `${name} was cancelled`;
    default:
      return `${name} is ${job.status}`;
  }
}

/** The exit code of `submit --wait`: the job's own when it failed with one. */
export function exitCodeOf(job: JobView): number {
  switch (job.status) {
    case 'succeeded':
      return ExitCode.Ok;
    case 'failed':
      return job.exit_code !== null && job.exit_code > 0 && job.exit_code < 256 ? job.exit_code : ExitCode.Failed;
    case 'timed_out':
      return ExitCode.TimedOut;
    default:
      return ExitCode.Failed;
  }
}

/**
 * Follows a job to its end: its log lines as they come, a status line (queued, pulling with a
 * progress bar, running) in between, then how it ended. Answers the job as it ended.
 */
export async function followToEnd(
  client: ApiClient,
  jobId: string,
  status: StatusLine,
  writeLine: (line: JobLogLine) => void,
  signal: AbortSignal,
): Promise<JobView> {
  const polling = new AbortController();
  const stopPolling = () => polling.abort();
  signal.addEventListener('abort', stopPolling, { once: true });
  const watching = watchJob(
    client,
    jobId,
    (job) => {
      if (!isFinal(job.status)) {
        const d = describeProgress(job);
        status.show(d.key, d.text);
      }
    },
    polling.signal,
  );
  try {
    await streamLogs(client, jobId, (line) => status.around(() => writeLine(line)), signal);
  } finally {
    polling.abort();
    signal.removeEventListener('abort', stopPolling);
    await watching;
  }
  return client.get<JobView>(`/jobs/${jobId}`);
}
