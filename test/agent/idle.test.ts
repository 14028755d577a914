import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { agentCommandRate } from '../support/monitor.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * An idle agent does not poll Redis: it blocks on the queues' event streams. Counted with
 * MONITOR on a Redis of the test's own, attributing each command to its client.
 */
let redis: OwnRedis;
let t: TestApi;
let agent: Agent;

beforeAll(async () => {
  redis = await OwnRedis.start();
  t = await startTestApi('idle', { IMAGEPOD_REDIS_URL: redis.url });
  agent = await startAgent(t, { IMAGEPOD_REDIS_URL: redis.url, IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090' });
});
afterAll(async () => {
  await agent.stop(0);
  await t.api.close();
  t.redis.disconnect();
  await redis.stop();
});

describe('an idle agent', () => {
  it('sends Redis a handful of commands per second (test intervals of 1 s), not a polling stream', async () => {
    await sleep(1500);
    const { perSecond, commands } = await agentCommandRate(redis.url, 4);
    // With the test's 1 s rescan and stalled-check intervals; at the default 30 s it is well under 1.
    expect(perSecond, JSON.stringify([...commands])).toBeLessThan(15);
    expect(perSecond).toBeGreaterThan(0);
  }, 30_000);
});
