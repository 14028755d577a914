import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Request } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/cli/mint-token.js';
import { loadApiConfig } from '../../src/config/api-config.js';
import { API_BASE } from '../../src/http/app.js';
import { clientAddress } from '../../src/http/rate-limit.js';
import type { ApiServer } from '../../src/server.js';
import { RTX_4090_NODE, registerNode, startReplica, startTestApi, type TestApi } from '../support/api.js';
import { type CallOptions, call, type Reply } from '../support/http.js';

/**
 * Rate limits per principal: jobs per user, registrations and sign-ins per client address, and
 * refused tokens per client address. Counted in Redis, so two API servers on one prefix share them.
 */

const JOB = { docker_image: 'busybox', command: ['true'] };
const LIMITS = {
  IMAGEPOD_RATE_LIMIT_SUBMIT_PER_MIN: '5',
  IMAGEPOD_RATE_LIMIT_REGISTER_PER_MIN: '3',
  IMAGEPOD_RATE_LIMIT_SESSION_PER_MIN: '3',
  IMAGEPOD_RATE_LIMIT_AUTH_FAILURES_PER_MIN: '4',
  // The tests speak for several client addresses through X-Forwarded-For.
  IMAGEPOD_TRUST_PROXY: 'loopback',
};
const seen = { requests: 0, limited: 0 };

let t: TestApi;
let second: ApiServer;

beforeAll(async () => {
  // A minute's window: no window ends between a test's requests, so counts are exact.
  t = await startTestApi('rate-limit', LIMITS);
  second = await startReplica(t, LIMITS);
});
afterAll(async () => {
  await second?.close();
  await t?.close();
  mkdirSync('test/artifacts', { recursive: true });
  writeFileSync(join('test/artifacts', 'rate-limit.json'), `${JSON.stringify(seen, null, 2)}\n`);
  console.log(`rate limits: ${seen.requests} requests, ${seen.limited} answered 429 with Retry-After`);
});

const from = (ip: string): Record<string, string> => ({ 'x-forwarded-for': ip });

async function req(base: string, method: string, path: string, opts: CallOptions = {}): Promise<Reply> {
  const r = await call(base, method, `${API_BASE}${path}`, opts);
  seen.requests++;
  if (r.status === 429) {
    seen.limited++;
    expect(r.body).toMatchObject({ error: 'rate_limited', message: expect.any(String), request_id: expect.any(String) });
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
  }
  return r;
}

const user = (name: string) => mintToken(t.secret, name, 'user', '1h');
const submit = (token: string, base = t.url, body: unknown = JOB) => req(base, 'POST', '/jobs/', { token, body });
const batch = (token: string, n: number) =>
  req(t.url, 'POST', '/jobs/batch', { token, body: { jobs: Array.from({ length: n }, () => JOB) } });
const nodeBody = (name: string) => ({ ...RTX_4090_NODE, node_name: `${name}-${Math.random().toString(36).slice(2, 8)}` });

describe('job submissions, per user', () => {
  it('answers 429 with Retry-After past the limit, and says what is left on the way', async () => {
    const carol = user('rl-carol');
    const remaining: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await submit(carol);
      expect(r.status, r.text).toBe(201);
      expect(r.headers.get('ratelimit-limit')).toBe('5');
      expect(r.headers.get('ratelimit-policy')).toBe('5;w=60');
      expect(Number(r.headers.get('ratelimit-reset'))).toBeGreaterThanOrEqual(1);
      remaining.push(r.headers.get('ratelimit-remaining') ?? '');
    }
    expect(remaining).toEqual(['4', '3', '2', '1', '0']);
    const over = await submit(carol);
    expect(over.status).toBe(429);
    expect(over.headers.get('ratelimit-remaining')).toBe('0');
    expect(over.body.message).toMatch(/jobs submitted by this user/);
  });

  it('gives each user a budget of their own', async () => {
    const dave = user('rl-dave');
    const erin = user('rl-erin');
    for (let i = 0; i < 5; i++) expect((await submit(dave)).status).toBe(201);
    expect((await submit(dave)).status).toBe(429);
    expect((await submit(erin)).status).toBe(201);
  });

  it('counts a batch by its jobs: a batch that does not fit is refused whole, one over the limit alone is a 400', async () => {
    const frank = user('rl-frank');
    expect((await batch(frank, 3)).status).toBe(201);
    const tooMany = await batch(frank, 3);
    expect(tooMany.status).toBe(429);
    expect((await t.req('GET', '/jobs/', { token: frank })).body.items).toHaveLength(3);
    expect((await batch(frank, 2)).status).toBe(201);
    expect((await submit(frank)).status).toBe(429);
    const huge = await batch(user('rl-gina'), 6);
    expect(huge.status).toBe(400);
    expect(huge.body.fields).toEqual([{ field: 'jobs', message: expect.stringMatching(/over the limit of 5 per window/) }]);
  });

  it('holds across two API servers on the same Redis and key prefix', async () => {
    const hank = user('rl-hank');
    const answers: number[] = [];
    for (let i = 0; i < 8; i++) answers.push((await submit(hank, i % 2 === 0 ? t.url : second.url)).status);
    expect(answers).toEqual([201, 201, 201, 201, 201, 429, 429, 429]);
  });
});

describe('registrations, per client address', () => {
  it('share one budget between POST /nodes/register and POST /agents/register', async () => {
    const ip = '10.1.0.1';
    const reg = (path: string, body: unknown) => req(t.url, 'POST', path, { token: t.registrationToken, body, headers: from(ip) });
    expect((await reg('/nodes/register', nodeBody('rl-n'))).status).toBe(201);
    expect((await reg('/agents/register', { node: nodeBody('rl-a') })).status).toBe(201);
    const third = await reg('/nodes/register', nodeBody('rl-n'));
    expect(third.status).toBe(201);
    expect(third.headers.get('ratelimit-remaining')).toBe('0');
    expect((await reg('/agents/register', { node: nodeBody('rl-a') })).status).toBe(429);
    expect((await reg('/nodes/register', nodeBody('rl-n'))).status).toBe(429);
    // Another address, and the other server, which counts in the same Redis.
    const other = await req(second.url, 'POST', '/nodes/register', {
      token: t.registrationToken,
      body: nodeBody('rl-n'),
      headers: from('10.1.0.2'),
    });
    expect(other.status).toBe(201);
    const same = await req(second.url, 'POST', '/nodes/register', {
      token: t.registrationToken,
      body: nodeBody('rl-n'),
      headers: from(ip),
    });
    expect(same.status).toBe(429);
  });
});

describe('sign-ins, per client address', () => {
  it('counts every attempt, accepted or not, and then refuses even a good token', async () => {
    const ip = '10.2.0.1';
    const signIn = (token: string) => req(t.url, 'POST', '/session', { body: { token }, headers: from(ip) });
    expect((await signIn(t.tokens.alice)).status).toBe(204);
    expect((await signIn('not.a.jwt')).status).toBe(401);
    expect((await signIn(t.tokens.bob)).status).toBe(204);
    const over = await signIn(t.tokens.alice);
    expect(over.status).toBe(429);
    expect(over.headers.get('set-cookie')).toBeNull();
    expect((await req(t.url, 'POST', '/session', { body: { token: t.tokens.alice }, headers: from('10.2.0.2') })).status).toBe(204);
  });
});

describe('refused credentials, per client address', () => {
  it('past the limit, an address cannot try the registration token; people and agents carry on', async () => {
    const ip = '10.3.0.1';
    const node = await registerNode(t, nodeBody('rl-fail'));
    const asIp = (token: string) => ({ token, headers: from(ip) });
    for (const bad of ['guess-1-aaaaaaaaaaaa', 'guess-2-aaaaaaaaaaaa', 'a.b.c', 'guess-4-aaaaaaaaaaaa']) {
      expect((await req(t.url, 'GET', '/me', asIp(bad))).status).toBe(401);
    }
    // The fifth refused token, and the right registration token too, now get 429: no more guesses.
    expect((await req(t.url, 'GET', '/me', asIp('guess-5-aaaaaaaaaaaa'))).status).toBe(429);
    expect((await req(t.url, 'GET', '/me', asIp(t.registrationToken))).status).toBe(429);
    expect((await req(second.url, 'POST', '/nodes/register', { ...asIp(t.registrationToken), body: nodeBody('rl-fail') })).status).toBe(
      429,
    );
    // Bull Board answers the same way, so it is no side door.
    expect((await call(t.url, 'GET', '/admin/queues', asIp('guess-6-aaaaaaaaaaaa'))).status).toBe(429);
    // A person's valid JWT and an agent's key are never held up by others' failures.
    expect((await req(t.url, 'GET', '/me', asIp(t.tokens.alice))).status).toBe(200);
    const beat = { gpu_memory_available: 24000, cpu_cores_available: 16, current_jobs: 0 };
    expect((await req(t.url, 'POST', `/nodes/${node.nodeId}/heartbeat`, { ...asIp(node.apiKey), body: beat })).status).toBe(200);
    // Refused agent keys are not counted (they are random; a revoked fleet must not lock an address).
    const other = '10.3.0.2';
    for (let i = 0; i < 6; i++) {
      const r = await req(t.url, 'GET', '/me', { token: `ipk_0000000000000000_${'A'.repeat(43)}`, headers: from(other) });
      expect(r.status).toBe(401);
    }
    expect((await req(t.url, 'GET', '/me', { token: t.registrationToken, headers: from(other) })).body).toEqual({ kind: 'registrar' });
  });
});

describe('the window', () => {
  let short: TestApi;
  beforeAll(async () => {
    short = await startTestApi('rate-limit-window', { IMAGEPOD_RATE_LIMIT_SUBMIT_PER_MIN: '2', IMAGEPOD_RATE_LIMIT_WINDOW_MS: '2000' });
  });
  afterAll(async () => short?.close());

  it('lets a client that waits Retry-After seconds back in', async () => {
    const ivan = mintToken(short.secret, 'rl-ivan', 'user', '1h');
    // Until refused: a window may end between two requests, which frees some room early.
    let refused: Reply | null = null;
    for (let i = 0; i < 20 && refused === null; i++) {
      const r = await submit(ivan, short.url);
      if (r.status === 429) refused = r;
      else expect(r.status).toBe(201);
    }
    expect(refused?.status).toBe(429);
    const wait = Number(refused?.headers.get('retry-after'));
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(wait).toBeLessThanOrEqual(4);
    await new Promise((resolve) => setTimeout(resolve, wait * 1000));
    expect((await submit(ivan, short.url)).status).toBe(201);
  });
});

describe('client addresses', () => {
  const of = (ip: string) => clientAddress({ ip, socket: {} } as unknown as Request);
  it('are the address itself for IPv4, and the /64 for IPv6', () => {
    expect(of('203.0.113.7')).toBe('203.0.113.7');
    expect(of('::ffff:203.0.113.7')).toBe('203.0.113.7');
    expect(of('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(of('2001:db8:0:0:ffff::2')).toBe(of('2001:db8::1'));
    expect(of('2001:db8:0:1::1')).not.toBe(of('2001:db8::1'));
    expect(of('::1')).toBe('0:0:0:0::/64');
  });

  it('have generous defaults, and 0 turns a limit off', () => {
    const base = { IMAGEPOD_JWT_SECRET: 's'.repeat(40), IMAGEPOD_REGISTRATION_TOKEN: 'r'.repeat(20) };
    expect(loadApiConfig(base).rateLimits).toEqual({ windowMs: 60_000, submit: 6000, register: 30, session: 20, authFailures: 60 });
    expect(loadApiConfig({ ...base, IMAGEPOD_RATE_LIMIT_SUBMIT_PER_MIN: '0' }).rateLimits.submit).toBe(0);
  });
});
