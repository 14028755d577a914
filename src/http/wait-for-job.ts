import type { Response } from 'express';
import type { Principal } from '../domain/roles.js';
import type { JobView } from '../domain/schemas/job.js';
import { settledJobView } from '../services/settled-job.js';
import type { RouteContext } from './context.js';

/**
 * Holds a `?wait=` request until the job ends or the wait is over, then reads the job as it is:
 * final, or still queued or running. Null when the client went away meanwhile (nothing to answer).
 */
export async function waitForJob(ctx: RouteContext, res: Response, p: Principal, jobId: string, seconds: number): Promise<JobView | null> {
  const gone = new AbortController();
  const onClose = () => {
    if (!res.writableFinished) gone.abort();
  };
  res.on('close', onClose);
  try {
    // The feed remembers recent ends, so a job that ended before this call is seen too.
    await ctx.events.waitForFinal(jobId, Math.round(seconds * 1000), gone.signal);
    const view = await settledJobView(() => ctx.jobs.get(p, jobId), gone.signal);
    return gone.signal.aborted ? null : view;
  } finally {
    res.off('close', onClose);
  }
}
