import { setTimeout as sleep } from 'node:timers/promises';
import type { Response } from 'express';
import { isFinal } from '../domain/job-status.js';
import type { Principal } from '../domain/roles.js';
import type { JobView } from '../domain/schemas/job.js';
import { settledJobView } from '../services/settled-job.js';
import type { RouteContext } from './context.js';

/**
 * Holds a `?wait=` request until the job ends, the wait is over or this API stops, then reads the
 * job as it is: final, or still queued or running. Null when the client went away meanwhile
 * (nothing to answer).
 */
export async function waitForJob(ctx: RouteContext, res: Response, p: Principal, jobId: string, seconds: number): Promise<JobView | null> {
  const gone = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) gone.abort();
  };
  res.on('close', onClose);
  try {
    // The feed remembers recent ends, so a job that ended before this call is seen too. The live
    // stream is trimmed, so a burst (or a Redis outage) can take an event away: look now and then.
    const seen = new AbortController();
    const stop = AbortSignal.any([gone.signal, seen.signal, ctx.shutdown.signal]);
    await Promise.race([
      ctx.events.waitForFinal(jobId, Math.round(seconds * 1000), stop),
      pollUntilFinal(() => ctx.jobs.get(p, jobId), Math.round(seconds * 1000), stop),
    ]);
    seen.abort();
    const view = await settledJobView(() => ctx.jobs.get(p, jobId), gone.signal);
    return gone.signal.aborted ? null : view;
  } finally {
    res.off('close', onClose);
  }
}

const POLL_MS = 2_000;

async function pollUntilFinal(read: () => Promise<JobView>, timeoutMs: number, stop: AbortSignal): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!stop.aborted && Date.now() < until) {
    await sleep(Math.min(POLL_MS, Math.max(0, until - Date.now())), undefined, { signal: stop }).catch(() => {});
    if (stop.aborted) return;
    // A failed look (Redis away a moment) is not the end of the wait; the next one may do.
    const status = await read().then(
      (v) => v.status,
      () => null,
    );
    if (status !== null && isFinal(status)) return;
  }
}
