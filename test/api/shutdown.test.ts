import { Agent, type IncomingMessage, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { API_BASE } from '../../src/http/app.js';
import { startReplica, startTestApi, type TestApi } from '../support/api.js';
import { call } from '../support/http.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * Stopping the API (SIGTERM runs the same close): readiness fails first, requests in progress
 * finish, streams and waits end early, new connections are refused, and what outlives the
 * timeout is cut. Each test has a Redis of its own, because CLIENT PAUSE holds every client.
 */
const JOB = { docker_image: 'busybox', command: ['true'], memory_required: 64 };

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

/**
 * A request on a keep-alive connection of its own: resolves with the whole answer, or the error
 * it met.
 */
function answered(a: Answer | Error): Answer {
  if (a instanceof Error) throw new Error(`expected an answer, got ${a.message}`);
  return a;
}

function send(t: TestApi, method: string, path: string, body?: unknown): Promise<Answer | Error> {
  const url = new URL(`${API_BASE}${path}`, t.url);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  return new Promise<Answer | Error>((resolve) => {
    const req = request(
      url,
      {
        method,
        agent,
        headers: {
          authorization: `Bearer ${t.tokens.alice}`,
          ...(payload !== undefined && { 'content-type': 'application/json' }),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        res.on('error', resolve);
      },
    );
    req.on('error', resolve);
    req.end(payload);
  }).finally(() => agent.destroy());
}

let redis: OwnRedis | undefined;
let t: TestApi | undefined;
afterEach(async () => {
  await t?.close();
  await redis?.stop();
  t = undefined;
  redis = undefined;
});

async function start(): Promise<{ t: TestApi; pause: (ms: number) => Promise<void> }> {
  redis = await OwnRedis.start('none');
  t = await startTestApi('shutdown', { IMAGEPOD_REDIS_URL: redis.url });
  const admin = new Redis(redis.url);
  return {
    t,
    // Holds every write for `ms`: a submission sent now is still in progress when stopping begins.
    pause: async (ms) => {
      await admin.client('PAUSE', ms, 'WRITE');
      admin.disconnect();
    },
  };
}

describe('stopping the API', () => {
  it('turns not ready, finishes the requests it has with Connection: close, ends streams and waits, then refuses', async () => {
    const { t, pause } = await start();
    const waiting = send(t, 'POST', '/jobs/?wait=60', JOB);
    const stream = send(t, 'GET', '/events');
    const queued = answered(await send(t, 'POST', '/jobs/', JOB));
    const follow = send(t, 'GET', `/jobs/${(JSON.parse(queued.body) as { id: string }).id}/logs?follow=true`);
    await sleep(300);
    await pause(1500);
    const inProgress = send(t, 'POST', '/jobs/', JOB);
    await sleep(200);

    const t0 = Date.now();
    const closed = t.api.close({ delayMs: 800, timeoutMs: 20_000 });
    await sleep(100);
    // During the delay: still serving, but not ready, so a load balancer sends traffic elsewhere.
    const ready = await call(t.url, 'GET', '/readyz');
    expect(ready.status).toBe(503);
    // (Redis is paused too, so it may also say that Redis does not answer.)
    expect(ready.body).toMatchObject({ status: 'not_ready', stopping: true });

    // The wait ends now with the job as it is (201: not finished), not after its 60 s.
    const waited = answered(await waiting);
    expect(waited.status).toBe(201);
    expect(JSON.parse(waited.body)).toMatchObject({ status: 'queued' });
    // The event stream ends (its client reconnects elsewhere), having sent what it had.
    const events = answered(await stream);
    expect(events.status).toBe(200);
    expect(events.body).toContain('retry: 3000');
    // So does a log follow (its client resumes elsewhere with Last-Event-ID).
    expect(answered(await follow).status).toBe(200);

    // The submission held up by Redis finishes once Redis answers, and says the connection closes.
    const submitted = answered(await inProgress);
    expect(submitted.status).toBe(201);
    expect(submitted.headers.connection).toBe('close');
    const id = (JSON.parse(submitted.body) as { id: string }).id;

    await closed;
    // Nothing had to be cut: it stopped once the last request was done, long before the timeout.
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(await send(t, 'GET', '/me')).toMatchObject({ code: 'ECONNREFUSED' });
    // The job submitted while it stopped is whole: another replica reads it, queued.
    const replica = await startReplica(t, { IMAGEPOD_REDIS_URL: redis?.url ?? '' });
    try {
      const again = await call(replica.url, 'GET', `${API_BASE}/jobs/${id}`, { token: t.tokens.alice });
      expect(again.status).toBe(200);
      expect(again.body).toMatchObject({ id, status: 'queued' });
    } finally {
      await replica.close();
    }
  }, 30_000);

  it('cuts a request that outlives the timeout, and stops then', async () => {
    const { t, pause } = await start();
    await pause(5000);
    const slow = send(t, 'POST', '/jobs/', JOB);
    await sleep(200);
    const t0 = Date.now();
    const closed = t.api.close({ delayMs: 0, timeoutMs: 300 });
    // Cut at the timeout, not when Redis lets the request go on (5 s).
    expect(await slow).toMatchObject({ message: 'socket hang up' });
    expect(Date.now() - t0).toBeLessThan(2500);
    await closed;
  }, 30_000);
});
