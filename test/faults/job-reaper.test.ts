import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Keys } from '../../src/redis/keys.js';
import type { ApiServer } from '../../src/server.js';
import { ENQUEUE_GRACE_MS } from '../../src/services/job-model.js';
import { waitFor } from '../support/agent.js';
import { registerNode, startReplica, startTestApi, type TestApi } from '../support/api.js';
import { TestClaimer } from '../support/claim.js';
import { jobsOf } from '../support/jobs.js';
import { REDIS_URL } from '../support/redis.js';

/**
 * The reaper ends, once, the jobs no agent can end any more: here each such state is made by
 * hand (a real BullMQ worker that claims a job and then fails it, completes it or lets its lock
 * lapse; a job whose queue entry is gone) and what a user sees afterwards is checked: the final
 * status and its reason, one final event, one webhook delivery, nothing left held or running.
 */
const ENV = {
  IMAGEPOD_REAPER_INTERVAL_MS: '300',
  IMAGEPOD_WEBHOOK_ALLOW: '127.0.0.1',
  IMAGEPOD_WEBHOOK_BACKOFF_MS: '100',
};
let t: TestApi;
/** A second API replica on the same Redis and prefix: both reap. */
let replica: ApiServer;
let node: { nodeId: string; apiKey: string };
let claimer: TestClaimer;
let hooks: { url: string; received: string[]; close(): Promise<void> };
let keys: Keys;

beforeAll(async () => {
  hooks = await startReceiver();
  t = await startTestApi('job-reaper', ENV);
  keys = new Keys(t.prefix);
  replica = await startReplica(t, ENV);
  node = await registerNode(t, {
    node_name: 'reaper-node',
    hostname: 'reaper-node',
    gpu_count: 0,
    cpu_cores: 16,
    memory_total: 32768,
    price_per_cpu_core_hour: 2,
  });
  // Holds are made only for a user with a budget.
  await t.req('PUT', '/users/alice/limits', { token: t.tokens.admin, body: { money_budget: 1000 } });
  claimer = new TestClaimer(t.prefix, 1000);
});
afterAll(async () => {
  await claimer?.close();
  await replica?.close();
  await t?.close();
  await hooks?.close();
});

const jobs = () => jobsOf(t);
/** Every job this file made, for the figures. */
const made: string[] = [];
const submit = async () => {
  const id = await jobs().submit({
    docker_image: 'busybox',
    command: ['true'],
    cpu_cores_required: 1,
    memory_required: 16,
    timeout_seconds: 600,
    webhook_url: `${hooks.url}/done`,
  });
  made.push(id);
  return id;
};
const report = (id: string, body: Record<string, unknown>) => t.req('POST', `/jobs/${id}/status`, { token: node.apiKey, body });

/** Claims the next job the way an agent does and tells the API it runs. */
async function claimAndRun() {
  const { job, token } = await claimer.claim('cpu');
  const id = job.id ?? '';
  expect((await report(id, { status: 'assigned', lock_token: token, gpu_indices: [] })).status).toBe(200);
  expect((await report(id, { status: 'running', lock_token: token })).status).toBe(200);
  return { id, job, token };
}

/** Final events per job in the tier's event stream. */
async function finalEvents(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const [, kv] of await t.redis.xrange(keys.jobEvents('cpu'), '-', '+')) {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < kv.length; i += 2) f[kv[i] as string] = kv[i + 1] as string;
    if (f.final === '1' && f.job) out.set(f.job, (out.get(f.job) ?? 0) + 1);
  }
  return out;
}

const ended = (id: string) =>
  waitFor(`job ${id} ended`, async () => ((await jobs().view(id)).completed_at ? jobs().view(id) : undefined), 15_000);

/** Everything that follows a job's end, as its user sees it, happened once. */
async function expectEndedOnce(ids: readonly string[]) {
  await waitFor('webhooks delivered', async () => ids.every((id) => hooks.received.includes(id)), 15_000);
  // A little longer, so a second delivery or event would have shown.
  await new Promise((r) => setTimeout(r, 700));
  const finals = await finalEvents();
  for (const id of ids) {
    expect(finals.get(id), `final events of ${id}`).toBe(1);
    expect(
      hooks.received.filter((h) => h === id),
      `webhook deliveries of ${id}`,
    ).toHaveLength(1);
  }
  const limits = (await t.req('GET', '/users/alice/limits', { token: t.tokens.alice })).body;
  expect(limits).toMatchObject({ running_jobs: 0, held_money: 0 });
}

describe('the reaper', () => {
  it('ends a job BullMQ failed while its record says running: failed (stalled), once, with its webhook', async () => {
    const id = await submit();
    const { job, token } = await claimAndRun();
    expect(job.id).toBe(id);
    // The agent "dies" in a way that leaves BullMQ's verdict but no report.
    await job.moveToFailed(new Error('job stalled more than allowable limit'), token, false);
    const v = await ended(id);
    expect(v).toMatchObject({ status: 'failed', status_reason: 'stalled', node_id: node.nodeId });
    expect(v.error_message).toContain('its agent went away and the queue gave up on it (job stalled more than allowable limit)');
    await expectEndedOnce([id]);
    // The attempt whose agent vanished is not billed: no ledger entry, no cost.
    expect(await t.redis.hget(keys.ledger, id)).toBeNull();
    expect(v.cost).toBe(0);
    const logs = await jobs().logLines(id);
    expect(logs.at(-1)).toBe('job ended: failed');
  });

  it('ends a job BullMQ completed without a report: failed (agent_error)', async () => {
    const id = await submit();
    const { job, token } = await claimAndRun();
    await job.moveToCompleted({ unreported: true }, token, false);
    const v = await ended(id);
    expect(v).toMatchObject({ status: 'failed', status_reason: 'agent_error' });
    expect(v.error_message).toContain('no agent reported how it ended');
    await expectEndedOnce([id]);
  });

  it('ends a job whose enqueue was cut short: failed (enqueue_interrupted), and it no longer counts as queued', async () => {
    const pendingBefore = Number(await t.redis.hget(keys.pending('cpu'), 'jobs'));
    const id = await submit();
    // As if the API had died between the record and the BullMQ job: the job is not in the queue,
    // and it was created a grace period ago.
    const q = new Queue('cpu', { connection: new Redis(REDIS_URL, { maxRetriesPerRequest: null }), prefix: keys.queuePrefix('cpu') });
    await q.remove(id);
    await q.close();
    const created = Date.now() - ENQUEUE_GRACE_MS;
    await t.redis.hset(keys.jobRecord('cpu', id), 'created_at', String(created));
    await t.redis.zadd(keys.jobsAll, created, id);
    const v = await ended(id);
    expect(v).toMatchObject({ status: 'failed', status_reason: 'enqueue_interrupted' });
    expect(v.error_message).toContain('never reached the queue');
    await expectEndedOnce([id]);
    expect(Number(await t.redis.hget(keys.pending('cpu'), 'jobs'))).toBe(pendingBefore);
  });

  it('ends a running job cancelled on a node that then died: cancelled, with completed_at, confirmed by nobody', async () => {
    const id = await submit();
    await claimAndRun();
    const cancelled = await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
    expect(cancelled.body).toMatchObject({ status: 'cancelled', completed_at: null });
    // The claimer never renews its 1 s lock, as a dead agent would not: once it lapses, no node can confirm.
    const v = await ended(id);
    expect(v).toMatchObject({ status: 'cancelled', status_reason: 'cancelled_by_user' });
    await expectEndedOnce([id]);
    expect(await t.redis.smembers(keys.nodeCancels(node.nodeId))).not.toContain(id);
  });

  it('two replicas reaping the same jobs end each once: one final event, one webhook, one settlement', async () => {
    const ids = [await submit(), await submit(), await submit(), await submit(), await submit()];
    const claimed = [];
    for (let i = 0; i < ids.length; i++) claimed.push(await claimAndRun());
    // Both replicas hear every failure and sweep the failed set.
    await Promise.all(claimed.map(({ job, token }) => job.moveToFailed(new Error('gone'), token, false)));
    for (const id of ids) expect(await ended(id)).toMatchObject({ status: 'failed', status_reason: 'stalled' });
    await expectEndedOnce(ids);
    // The node's counters count each job it took once: 3 earlier in this file and these 5.
    const stats = (await t.req('GET', `/nodes/${node.nodeId}/stats`, { token: t.tokens.admin })).body;
    expect(stats).toMatchObject({ jobs_run: 8, jobs_failed: 7, jobs_cancelled: 1 });

    const views = await Promise.all(made.map((id) => jobs().view(id)));
    const finals = await finalEvents();
    const byReason: Record<string, number> = {};
    for (const v of views) byReason[`${v.status}/${v.status_reason}`] = (byReason[`${v.status}/${v.status_reason}`] ?? 0) + 1;
    const figures = {
      fault: 'jobs no agent can end: failed or completed by BullMQ without a report, enqueue cut short, cancelled on a dead node',
      api_replicas_reaping: 2,
      jobs: made.length,
      ended_by_the_reaper: views.filter((v) => v.completed_at !== null).length,
      duplicate_final_states: made.filter((id) => (finals.get(id) ?? 0) > 1).length,
      duplicate_webhooks: made.filter((id) => hooks.received.filter((h) => h === id).length > 1).length,
      ledger_entries_for_lost_attempts: (await Promise.all(made.map((id) => t.redis.hexists(keys.ledger, id)))).filter((x) => x === 1)
        .length,
      outcomes: byReason,
    };
    console.log(`faults/reaper: ${JSON.stringify(figures)}`);
    mkdirSync(join(import.meta.dirname, '../artifacts'), { recursive: true });
    writeFileSync(join(import.meta.dirname, '../artifacts/faults-reaper.json'), `${JSON.stringify(figures, null, 2)}\n`);
  });
});

async function startReceiver(): Promise<{ url: string; received: string[]; close(): Promise<void> }> {
  const received: string[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      try {
        received.push((JSON.parse(body) as { job_id?: string; id?: string }).job_id ?? '');
      } catch {
        received.push('');
      }
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
