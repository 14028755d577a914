import { isFinal, JobStatus } from '../domain/job-status.js';
import { type BullFacts, deriveStatus, type JobRecord } from './job-model.js';

/** What BullMQ says of a job that no agent can end any more (checked again when it is ended). */
export const OrphanSign = {
  /** BullMQ failed it (it stalled too often, or a claimant threw it away). */
  Failed: 'failed',
  /** BullMQ completed it, but no agent said how it ended. */
  Completed: 'completed',
  /** BullMQ has no such job: its enqueue never happened, or it was removed. */
  Missing: 'missing',
  /** A cancelled job whose node went away before confirming the stop: no worker holds it. */
  Unheld: 'unheld',
} as const;
export type OrphanSign = (typeof OrphanSign)[keyof typeof OrphanSign];

export type OrphanVerdict =
  /** End it now with this status. */
  | {
      readonly kind: 'end';
      readonly sign: OrphanSign;
      readonly status: JobStatus;
      readonly reason: string | null;
      readonly message: string | null;
    }
  /** A reaper ended it but may not have settled what follows (its cost, holds, counters). */
  | { readonly kind: 'settle' }
  | null;

/**
 * Whether a job is over in all but its record, and how it ends: the status a user already sees
 * (deriveStatus), written down once so that what follows a job's end (its final event, webhook,
 * ledger entry, released budget and running count) follows too. Null for a job some agent can
 * still end: it holds it, or it waits in the queue for one.
 */
export function judgeOrphan(rec: JobRecord, facts: BullFacts, now: number): OrphanVerdict {
  const f = rec.fields;
  if (f.finished_at) return f.reaped && !f.cost ? { kind: 'settle' } : null;
  if (isFinal(rec.status)) {
    // A cancelled job a node held ends when the node confirms the stop; with its lock gone no
    // node ever will (a later claimant is refused and drops it).
    if (rec.status !== JobStatus.Cancelled || facts.locked) return null;
    return { kind: 'end', sign: OrphanSign.Unheld, status: JobStatus.Cancelled, reason: null, message: null };
  }
  const derived = deriveStatus(rec, facts, now);
  if (!isFinal(derived.status)) return null;
  const sign = facts.inFailed ? OrphanSign.Failed : !facts.exists ? OrphanSign.Missing : facts.inCompleted ? OrphanSign.Completed : null;
  if (sign === null) return null;
  return { kind: 'end', sign, status: derived.status, reason: derived.reason, message: messageFor(sign, rec, facts) };
}

function messageFor(sign: OrphanSign, rec: JobRecord, facts: BullFacts): string {
  switch (sign) {
    case OrphanSign.Failed:
      return `its agent went away and the queue gave up on it${facts.failedReason ? ` (${facts.failedReason})` : ''}`;
    case OrphanSign.Completed:
      return 'the queue holds it as completed, but no agent reported how it ended';
    case OrphanSign.Missing:
      return rec.status === JobStatus.Queued
        ? 'it never reached the queue: the API stopped while submitting it'
        : 'its queue entry is gone, so no agent can finish it';
    case OrphanSign.Unheld:
      return '';
  }
}

/** Fields of a record that say, without BullMQ's facts, whether a job could need the reaper. */
export const ORPHAN_HINT_FIELDS = ['status', 'finished_at', 'reaped', 'cost'] as const;

/** From those fields (HMGET order): false when the job ended and was settled, or is gone. */
export function mayBeOrphan(hint: readonly (string | null)[]): boolean {
  const [status, finishedAt, reaped, cost] = hint;
  if (status === null || status === undefined) return false;
  if (!finishedAt) return true;
  return Boolean(reaped) && !cost;
}
