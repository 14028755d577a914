import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../support/api.js';
import { call } from '../support/http.js';
import { OwnRedis } from '../support/redis-server.js';

let redis: OwnRedis;
let t: TestApi;

beforeAll(async () => {
  redis = await OwnRedis.start();
  t = await startTestApi('health', { IMAGEPOD_REDIS_URL: redis.url });
});
afterAll(async () => {
  await t.api.close();
  await redis.stop();
  t.redis.disconnect();
});

describe('/healthz and /readyz', () => {
  it('both answer while Redis is up', async () => {
    expect((await call(t.url, 'GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await call(t.url, 'GET', '/readyz')).body).toEqual({ status: 'ready', redis: 'ok' });
  });

  it('without Redis: healthz stays 200, readyz and the API answer 503, then recover by themselves', async () => {
    await redis.down();
    expect((await call(t.url, 'GET', '/healthz')).status).toBe(200);
    const ready = await call(t.url, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual({ status: 'not_ready', redis: 'unreachable' });

    const submit = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { docker_image: 'busybox' } });
    expect(submit.status).toBe(503);
    expect(submit.headers.get('retry-after')).toBe('1');
    expect(submit.body.error).toBe('unavailable');
    expect(submit.text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|at .*\.js/);

    await redis.up();
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await call(t.url, 'GET', '/readyz')).status;
      if (status !== 200) await sleep(100);
    }
    expect(status).toBe(200);
    expect((await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { docker_image: 'busybox' } })).status).toBe(201);
  });
});

describe('unknown routes', () => {
  it('404 with a JSON body', async () => {
    const r = await call(t.url, 'GET', '/nope');
    expect(r.status).toBe(404);
    expect(r.body.error).toBe('not_found');
  });
});
