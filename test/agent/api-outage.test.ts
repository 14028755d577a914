import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { loadApiConfig } from '../../src/config/api-config.js';
import { startApiServer } from '../../src/server.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { REDIS_URL } from '../support/redis.js';

/** The API goes away for a while and comes back on the same address: the agent carries on. */
let t: TestApi;
let agent: Agent;

beforeAll(async () => {
  t = await startTestApi('api-outage', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1000' });
  agent = await startAgent(t, { IMAGEPOD_RESCAN_INTERVAL_MS: '60000' });
});
afterAll(async () => {
  await agent.stop(0);
  await t.close();
});

describe('the API away for a while', () => {
  it('an idle agent wakes within a second of a job arriving', async () => {
    const r = await t.req('POST', '/jobs/', {
      token: t.tokens.alice,
      body: { docker_image: 'busybox', command: ['sleep', '1'], memory_required: 16 },
    });
    const submitted = Date.now();
    await waitFor(
      'claimed',
      async () => ['assigned', 'running'].includes((await t.req('GET', `/jobs/${r.body.id}`, { token: t.tokens.alice })).body.status),
      1000,
    );
    expect(Date.now() - submitted).toBeLessThan(1000);
    await waitFor('done', async () => (await t.req('GET', `/jobs/${r.body.id}`, { token: t.tokens.alice })).body.status === 'succeeded');
  });

  it('a job that ends while the API is down is reported when it is back; heartbeats resume without a restart', async () => {
    const r = await t.req('POST', '/jobs/', {
      token: t.tokens.alice,
      body: { docker_image: 'busybox', command: ['sh', '-c', 'sleep 1; echo finished'], memory_required: 16 },
    });
    const id = r.body.id as string;
    await waitFor('running', async () => (await t.req('GET', `/jobs/${id}`, { token: t.tokens.alice })).body.status === 'running');

    const port = Number(new URL(t.url).port);
    await t.api.close();
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const config = loadApiConfig({
      IMAGEPOD_REDIS_URL: REDIS_URL,
      IMAGEPOD_KEY_PREFIX: t.prefix,
      IMAGEPOD_JWT_SECRET: t.secret,
      IMAGEPOD_REGISTRATION_TOKEN: t.registrationToken,
      IMAGEPOD_HOST: '127.0.0.1',
      IMAGEPOD_PORT: String(port),
      IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200',
      IMAGEPOD_HEARTBEAT_TTL_MS: '1000',
    });
    const back = await startApiServer(config, pino({ level: 'silent' }));
    try {
      const done = await waitFor('reported', async () => {
        const v = (await t.req('GET', `/jobs/${id}`, { token: t.tokens.alice })).body;
        return v.status === 'succeeded' ? v : undefined;
      });
      expect(done.attempts).toBe(1);
      await waitFor(
        'online again',
        async () => (await t.req('GET', `/nodes/${agent.identity.node_id}`, { token: t.tokens.alice })).body.status === 'online',
      );
    } finally {
      await back.close();
      // t.close() closes the first server again (a no-op) and cleans the keys.
    }
  }, 30_000);
});

describe('an API that asks the agent to wait', () => {
  it('gets no new request before Retry-After: a rate-limited registration waits for it, then succeeds', async () => {
    const limited = await startTestApi('api-retry-after', {
      IMAGEPOD_RATE_LIMIT_REGISTER_PER_MIN: '1',
      IMAGEPOD_RATE_LIMIT_WINDOW_MS: '3000',
    });
    const agents: Agent[] = [];
    try {
      // The first registration from this address takes the window's one; the second is refused
      // with Retry-After up to 3 s, which plain backoff (0.1, 0.2, 0.4 s, ...) would beat about 5 times.
      agents.push(await startAgent(limited));
      const t0 = Date.now();
      agents.push(await startAgent(limited));
      const took = Date.now() - t0;
      const metrics = await (await fetch(`${limited.url}/metrics`)).text();
      const refused = Number(
        /imagepod_http_request_duration_seconds_count\{method="POST",route="[^"]*agents\/register",status_code="429"\} (\d+)/.exec(
          metrics,
        )?.[1] ?? 0,
      );
      expect(refused).toBeGreaterThanOrEqual(1);
      expect(refused).toBeLessThanOrEqual(2);
      expect(took).toBeLessThan(10_000);
      const nodes = await limited.req('GET', '/nodes/', { token: limited.tokens.admin });
      expect(nodes.body.items).toHaveLength(2);
    } finally {
      for (const a of agents) await a.stop(0);
      await limited.close();
    }
  }, 30_000);
});
