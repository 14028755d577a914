import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { OwnRedis } from '../support/redis-server.js';

/** A Redis of this test's own, restarted under a running API and agent. */
let redis: OwnRedis;
let t: TestApi;
let agent: Agent;

beforeAll(async () => {
  redis = await OwnRedis.start();
  t = await startTestApi('redis-restart', { IMAGEPOD_REDIS_URL: redis.url, IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' });
  agent = await startAgent(t, { IMAGEPOD_REDIS_URL: redis.url, IMAGEPOD_MAX_CONCURRENT_JOBS: '2', IMAGEPOD_LOCK_DURATION_MS: '4000' });
});
afterAll(async () => {
  await agent.stop(0);
  await t.api.close();
  t.redis.disconnect();
  await redis.stop();
});

async function submit(): Promise<string> {
  for (;;) {
    const r = await t.req('POST', '/jobs/', {
      token: t.tokens.alice,
      body: { docker_image: 'busybox', command: ['sh', '-c', 'sleep 0.3; echo ok'], memory_required: 16, cpu_cores_required: 0.1 },
    });
    if (r.status === 201) return r.body.id;
    if (r.status !== 503) throw new Error(r.text);
    await sleep(100);
  }
}

describe('Redis restarted while agents run', () => {
  it('they reconnect and carry on: every job submitted before and after ends', async () => {
    const before = [await submit(), await submit(), await submit(), await submit()];
    await waitFor(
      'a job to finish',
      async () => (await t.req('GET', `/jobs/${before[0]}`, { token: t.tokens.alice })).body.status === 'succeeded',
    );

    await redis.down();
    await sleep(500);
    await redis.up();

    const after = [await submit(), await submit(), await submit(), await submit()];
    const all = [...before, ...after];
    const views = await waitFor(
      'all jobs to end',
      async () => {
        const vs = await Promise.all(all.map(async (id) => (await t.req('GET', `/jobs/${id}`, { token: t.tokens.alice })).body));
        return vs.every((v) => v.status === 'succeeded') ? vs : undefined;
      },
      45_000,
    );
    expect(views).toHaveLength(8);
    const probe = new Redis(redis.url);
    expect(await probe.ping()).toBe('PONG');
    probe.disconnect();
    expect((await t.req('GET', `/nodes/${agent.identity.node_id}`, { token: t.tokens.alice })).body.status).toBe('online');
  }, 60_000);
});
