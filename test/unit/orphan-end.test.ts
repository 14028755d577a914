import { describe, expect, it } from 'vitest';
import type { BullFacts, JobRecord } from '../../src/services/job-model.js';
import { judgeOrphan, mayBeOrphan } from '../../src/services/orphan-end.js';

/** Which jobs the reaper ends, and how: the status the user already sees, written down once. */
describe('judgeOrphan', () => {
  const now = Date.now();
  const record = (status: JobRecord['status'], fields: Record<string, string> = {}): JobRecord => ({
    id: 'j',
    owner: 'u',
    tier: 'cpu',
    queue: 'cpu',
    spec: {} as JobRecord['spec'],
    status,
    fields: { created_at: String(now - 60_000), ...fields },
  });
  const facts = (f: Partial<BullFacts> = {}): BullFacts => ({
    exists: true,
    locked: false,
    inFailed: false,
    inCompleted: false,
    failedReason: '',
    ...f,
  });

  it('leaves jobs an agent holds or can still take', () => {
    expect(judgeOrphan(record('running'), facts({ locked: true }), now)).toBeNull();
    // Stalled: back in the queue for another agent.
    expect(judgeOrphan(record('running'), facts(), now)).toBeNull();
    expect(judgeOrphan(record('queued'), facts(), now)).toBeNull();
    // Within the enqueue grace, a record without its BullMQ job may still get it.
    expect(judgeOrphan(record('queued', { created_at: String(now) }), facts({ exists: false }), now)).toBeNull();
  });

  it('leaves ended jobs alone, unless a reaper ended one and did not settle it', () => {
    expect(judgeOrphan(record('succeeded', { finished_at: '1' }), facts({ inFailed: true }), now)).toBeNull();
    expect(judgeOrphan(record('failed', { finished_at: '1', reaped: 'failed', cost: '0' }), facts(), now)).toBeNull();
    expect(judgeOrphan(record('failed', { finished_at: '1', reaped: 'failed' }), facts(), now)).toEqual({ kind: 'settle' });
  });

  it('ends what BullMQ gave up on, completed without a report, or never got', () => {
    expect(judgeOrphan(record('running'), facts({ inFailed: true, failedReason: 'job stalled more than allowable limit' }), now)).toEqual({
      kind: 'end',
      sign: 'failed',
      status: 'failed',
      reason: 'stalled',
      message: 'its agent went away and the queue gave up on it (job stalled more than allowable limit)',
    });
    expect(judgeOrphan(record('running'), facts({ inCompleted: true }), now)).toMatchObject({
      sign: 'completed',
      status: 'failed',
      reason: 'agent_error',
    });
    expect(judgeOrphan(record('queued'), facts({ exists: false }), now)).toMatchObject({
      sign: 'missing',
      status: 'failed',
      reason: 'enqueue_interrupted',
    });
  });

  it('ends a cancelled job no node holds any more, keeping its status and reason', () => {
    const cancelled = record('cancelled', { status_reason: 'cancelled_by_user' });
    expect(judgeOrphan(cancelled, facts({ locked: true }), now)).toBeNull();
    expect(judgeOrphan(cancelled, facts(), now)).toMatchObject({ kind: 'end', sign: 'unheld', status: 'cancelled', reason: null });
  });

  it('a record hint rules out most jobs without reading BullMQ', () => {
    expect(mayBeOrphan(['succeeded', '123', null, '0.5'])).toBe(false);
    expect(mayBeOrphan(['running', null, null, null])).toBe(true);
    expect(mayBeOrphan(['failed', '123', 'failed', null])).toBe(true);
    expect(mayBeOrphan([null, null, null, null])).toBe(false);
  });
});
