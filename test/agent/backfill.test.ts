import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { Keys } from '../../src/redis/keys.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

/**
 * EASY backfill and the choice of reservation holder. A node holding room for a starving job
 * lets a job onto the held GPU only when its time limit ends before the starving job could start
 * anyway (the shadow time); and a node that would start the job sooner takes the reservation over.
 */
const BOUND_MS = 1000;
const ALLOWANCE_MS = 500;
const GIB = 1024;
let t: TestApi;
const agents: Agent[] = [];

const agent = async (name: string) => {
  const a = await startAgent(t, {
    IMAGEPOD_NODE_NAME: name,
    IMAGEPOD_SIMULATED_GPUS: '1x81920:A100 80GB',
    IMAGEPOD_MAX_CONCURRENT_JOBS: '8',
    IMAGEPOD_STARVATION_MS: String(BOUND_MS),
    IMAGEPOD_RESCAN_INTERVAL_MS: '200',
    // Jobs here pull nothing and stop at once: half a second past a limit is plenty.
    IMAGEPOD_END_ALLOWANCE_MS: String(ALLOWANCE_MS),
  });
  agents.push(a);
  return a;
};
const job = (gib: number, seconds: number, timeout: number, extra: Record<string, unknown> = {}) => ({
  docker_image: 'busybox',
  command: ['sleep', String(seconds)],
  gpu_memory_required: gib * GIB,
  timeout_seconds: timeout,
  memory_required: 16,
  cpu_cores_required: 0.01,
  ...extra,
});
const reservationOf = (id: string) => `${new Keys(t.prefix).bullJob('gpu-80g', id)}:ip-reserved`;
const at = (iso: string) => Date.parse(iso);

beforeAll(async () => {
  t = await startTestApi('backfill', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' });
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop(0)));
  await t.close();
});

describe('backfill', () => {
  it('a held GPU takes a job that ends before the starving job could start, and not one that would not', async () => {
    const jobs = jobsOf(t);
    const bf = await agent('bf-1');
    // 40 GiB busy for 4 s, with a 6 s limit: the 70 GiB job can start in 6 s (and the
    // allowance) at the latest.
    const first = await jobs.submit(job(40, 4, 6, { node_name: 'bf-1' }));
    const firstRunning = await jobs.status(first, 'running');
    const big = await jobs.submit(job(70, 0.5, 60));
    const held = await waitFor('a reservation', async () => (await t.redis.get(reservationOf(big))) ?? undefined, 10_000);
    const [holder, shadow] = held.split('|');
    expect(holder).toBe('bf-1');
    expect(Math.abs(Number(shadow) - (at(firstRunning.started_at) + 6000 + ALLOWANCE_MS))).toBeLessThan(1500);

    // 10 GiB for at most 2 s ends before then: it runs on the held GPU now. 10 GiB for up to
    // 10 minutes would delay the big job: it waits for it.
    const quick = await jobs.submit(job(10, 0.5, 2));
    const slow = await jobs.submit(job(10, 0.5, 600));
    const [quickDone, bigDone, slowDone, firstDone] = await Promise.all([quick, big, slow, first].map((id) => jobs.finished(id)));
    for (const j of [quickDone, bigDone, slowDone, firstDone]) expect(j.status).toBe('succeeded');

    expect(at(quickDone.started_at)).toBeLessThan(at(firstDone.completed_at));
    expect(at(bigDone.started_at)).toBeGreaterThanOrEqual(at(firstDone.completed_at) - 200);
    expect(at(slowDone.started_at)).toBeGreaterThanOrEqual(at(bigDone.started_at) - 200);
    // The starving job started when the GPU drained, well before the shadow time.
    expect(at(bigDone.started_at)).toBeLessThan(Number(shadow));
    await bf.stop(0);
  }, 60_000);

  it('a node that would start the starving job sooner takes the reservation over', async () => {
    const jobs = jobsOf(t);
    await agent('slow-node');
    // 20 GiB for a minute with a two-minute limit: the 70 GiB job would wait up to two minutes there.
    const long = await jobs.submit(job(20, 60, 120, { node_name: 'slow-node' }));
    await jobs.status(long, 'running');
    const big = await jobs.submit(job(70, 0.5, 60));
    const first = await waitFor('a reservation', async () => (await t.redis.get(reservationOf(big))) ?? undefined, 10_000);
    expect(first.split('|')[0]).toBe('slow-node');

    // A second node whose own 20 GiB job (taken first: higher priority) is limited to 3 s.
    const short = await jobs.submit(job(20, 2, 3, { node_name: 'quick-node', priority: 10 }));
    const quick = await agent('quick-node');
    const taken = await waitFor(
      'the reservation to move',
      async () => {
        const v = await t.redis.get(reservationOf(big));
        return v?.startsWith('quick-node|') ? v : undefined;
      },
      10_000,
    );
    expect(Number(taken.split('|')[1])).toBeLessThan(Number(first.split('|')[1]));

    const [bigDone, shortDone] = await Promise.all([jobs.finished(big), jobs.finished(short)]);
    expect(bigDone.status).toBe('succeeded');
    expect(bigDone.node_id).toBe(quick.identity.node_id);
    expect(at(bigDone.started_at)).toBeGreaterThanOrEqual(at(shortDone.completed_at) - 200);
    // The long job is still running: the big one did not wait for it.
    expect((await jobs.view(long)).status).toBe('running');
    await t.req('POST', `/jobs/${long}/cancel`, { token: t.tokens.alice });
  }, 60_000);

  it('the holder lets go of its devices once another node has taken the job', async () => {
    const jobs = jobsOf(t);
    // Only this test's nodes.
    await Promise.all(agents.splice(0).map((a) => a.stop(0)));
    const holder = await agent('hold-1');
    // The only node is busy for a minute: it reserves the 70 GiB job and its GPU drains for it.
    const busy = await jobs.submit(job(40, 60, 120, { node_name: 'hold-1' }));
    await jobs.status(busy, 'running');
    const big = await jobs.submit(job(70, 0.5, 60));
    await waitFor('the reservation', async () => (holder.resources.hold?.jobId === big ? true : undefined), 10_000);

    // An empty node appears and takes the job at once; the holder stops holding room for it.
    const other = await agent('hold-2');
    const done = await jobs.finished(big);
    expect(done.status).toBe('succeeded');
    expect(done.node_id).toBe(other.identity.node_id);
    await waitFor('the hold to go', async () => (holder.resources.hold === null ? true : undefined), 5_000);
    expect(await t.redis.exists(reservationOf(big))).toBe(0);
    await t.req('POST', `/jobs/${busy}/cancel`, { token: t.tokens.alice });
  }, 60_000);
});
