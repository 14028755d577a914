import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { Keys } from '../../src/redis/keys.js';
import { spawnAgent, startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';
import { REDIS_URL } from '../support/redis.js';

let t: TestApi;
const agents: Agent[] = [];

beforeAll(async () => {
  t = await startTestApi('resilience', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1000' });
});
// Each test brings its own agents: one left running would take the next test's jobs.
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop(0)));
});
afterAll(async () => t.close());

/** Waits until a spawned agent's node heartbeats, so it is ready to take jobs. */
const online = (name: string) =>
  waitFor(`${name} online`, async () => {
    const nodes = (await t.req('GET', '/nodes/?status=online&limit=500', { token: t.tokens.admin })).body.items;
    return nodes.find((n: { node_name: string }) => n.node_name === name)?.node_id as string | undefined;
  });

const jobs = () => jobsOf(t);
const submit = (script: string) =>
  jobs().submit({ docker_image: 'busybox', command: ['sh', '-c', script], memory_required: 16, cpu_cores_required: 0.1 });
const view = (id: string) => jobs().view(id);
const status = (id: string, s: string, ms?: number) => jobs().status(id, s, ms);

describe('locks', () => {
  it('a job running for many lock durations keeps its single owner while the agent’s event loop is blocked', async () => {
    const a = await startAgent(t, { IMAGEPOD_LOCK_DURATION_MS: '600', IMAGEPOD_STALLED_INTERVAL_MS: '300' });
    agents.push(a);
    const id = await submit('sleep 4; echo done');
    const running = await status(id, 'running');
    expect(running.node_id).toBe(a.identity.node_id);

    // Block this process's event loop (the agent's main thread) for 5 lock durations.
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      /* busy: timers and I/O wait */
    }
    // The renewal thread kept the lock: a stalled check from another worker leaves the job alone.
    const lockKey = `${new Keys(t.prefix).bullLock('cpu', id)}`;
    const redis = new Redis(REDIS_URL);
    expect(await redis.pttl(lockKey)).toBeGreaterThan(0);
    const checker = new Worker('cpu', null, {
      connection: new Redis(REDIS_URL, { maxRetriesPerRequest: null }),
      prefix: new Keys(t.prefix).queuePrefix('cpu'),
      autorun: false,
      stalledInterval: 200,
    });
    await checker.startStalledCheckTimer();
    await new Promise((r) => setTimeout(r, 700));
    expect(await redis.pttl(lockKey)).toBeGreaterThan(0);
    await checker.close();
    redis.disconnect();

    const done = await status(id, 'succeeded');
    expect(done).toMatchObject({ attempts: 1, node_id: a.identity.node_id });
  }, 30_000);
});

describe('agents that die or stop', () => {
  it('SIGKILL mid-job: another agent runs the job again and finishes it; the dead node goes offline', async () => {
    const first = spawnAgent(t, { IMAGEPOD_NODE_NAME: 'doomed' });
    await online('doomed');
    const id = await submit('echo attempt; sleep 3; echo finished');
    const running = await status(id, 'running');
    const deadNode = running.node_id as string;
    const second = await startAgent(t, { IMAGEPOD_NODE_NAME: 'survivor' });
    agents.push(second);
    expect(await first.kill('SIGKILL')).toBeNull();

    const done = await status(id, 'succeeded', 30_000);
    expect(done.node_id).toBe(second.identity.node_id);
    expect(done.attempts).toBe(2);
    await waitFor(
      'dead node offline',
      async () => (await t.req('GET', `/nodes/${deadNode}`, { token: t.tokens.admin })).body.status === 'offline',
    );
  }, 60_000);

  it('SIGTERM: stops claiming, lets a short job finish, hands a long one back for another agent', async () => {
    const a = spawnAgent(t, { IMAGEPOD_NODE_NAME: 'leaving', IMAGEPOD_SHUTDOWN_GRACE_MS: '1500' });
    await online('leaving');
    const shortJob = await submit('sleep 0.5; echo short done');
    const longJob = await submit('sleep 20');
    await status(shortJob, 'running');
    await status(longJob, 'running');
    const code = await a.kill('SIGTERM');
    expect(code).toBe(0);
    expect((await view(shortJob)).status).toBe('succeeded');
    const back = await view(longJob);
    expect(back).toMatchObject({ status: 'queued', status_reason: 'handed_back', node_id: null });
    expect(a.output()).toContain('handed the job back to the queue');
    // The attempt that ran on the leaving node is billed, as its own ledger entry.
    const billed = JSON.parse((await t.redis.hget(`${t.prefix}:{acct}:ledger`, `${longJob}:1`)) ?? '{}');
    expect(billed).toMatchObject({ attempt: 1, status: 'queued', node_id: (await view(shortJob)).node_id });
    expect(billed.run_seconds).toBeGreaterThan(0.5);

    const b = await startAgent(t, { IMAGEPOD_NODE_NAME: 'taker' });
    agents.push(b);
    const taken = await status(longJob, 'running');
    expect(taken.node_id).toBe(b.identity.node_id);
    await t.req('POST', `/jobs/${longJob}/cancel`, { token: t.tokens.alice });
    await status(longJob, 'cancelled');
  }, 60_000);
});
