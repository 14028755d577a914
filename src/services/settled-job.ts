import { setTimeout as sleep } from 'node:timers/promises';
import { isFinal } from '../domain/job-status.js';
import type { JobView } from '../domain/schemas/job.js';

/**
 * A job's cost is written by the report that ended it a moment after its final status (and the
 * event that announces it): a job that ran is read again for up to this long until it shows it.
 */
const COST_SETTLE_MS = 2000;

/** The job as `read` gives it, once what follows its end is written (or after a short while). */
export async function settledJobView(read: () => Promise<JobView>, signal?: AbortSignal): Promise<JobView> {
  let view = await read();
  const until = Date.now() + COST_SETTLE_MS;
  while (isFinal(view.status) && view.node_id !== null && view.cost === null && Date.now() < until && !signal?.aborted) {
    await sleep(50);
    view = await read();
  }
  return view;
}
