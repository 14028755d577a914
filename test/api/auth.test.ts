import { createHmac, generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heartbeat, RTX_4090_NODE, registerNode, startTestApi, type TestApi } from '../support/api.js';
import { TestClaimer } from '../support/claim.js';

/** Who may call what: every route against each kind of caller. */
let t: TestApi;
let ids: { node: string; otherNode: string; job: string; agent: string; agentKey: string; otherKey: string; token: string };

beforeAll(async () => {
  t = await startTestApi('auth');
  const a = await registerNode(t, { ...RTX_4090_NODE, node_name: 'auth-a' });
  const b = await registerNode(t, { ...RTX_4090_NODE, node_name: 'auth-b' });
  await heartbeat(t, a.nodeId, a.apiKey, { gpu_memory_available: 24000, cpu_cores_available: 16, current_jobs: 0 });
  const job = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { docker_image: 'busybox' } });
  const claimer = new TestClaimer(t.prefix);
  const { token } = await claimer.claim('cpu');
  await claimer.close();
  await t.req('POST', `/jobs/${job.body.id}/status`, { token: a.apiKey, body: { status: 'assigned', lock_token: token } });
  ids = { node: a.nodeId, otherNode: b.nodeId, job: job.body.id, agent: a.agentId, agentKey: a.apiKey, otherKey: b.apiKey, token };
});
afterAll(async () => t.close());

type Caller = 'none' | 'alice' | 'bob' | 'admin' | 'agent' | 'otherAgent' | 'registration';
type Who = Exclude<Caller, 'none'>;

interface Route {
  method: string;
  path: () => string;
  body?: () => unknown;
  /** Expected status per caller; without credentials every route is 401. */
  expect: Record<Who, number>;
}

const hb = { gpu_memory_available: 24000, cpu_cores_available: 16, current_jobs: 1 };
const nodeBody = () => ({ ...RTX_4090_NODE, node_name: `auth-new-${Math.random().toString(36).slice(2, 10)}` });
/** Everyone but `who` gets `status`. */
const only = (allowed: Partial<Record<Who, number>>, status = 403): Record<Who, number> => ({
  alice: status,
  bob: status,
  admin: status,
  agent: status,
  otherAgent: status,
  registration: status,
  ...allowed,
});

// Rows that mutate are built to be repeatable (fresh names), or use bodies that fail
// validation only after the caller was let through (400).
const routes: Route[] = [
  { method: 'POST', path: () => '/nodes/register', body: nodeBody, expect: only({ registration: 201, admin: 201 }) },
  { method: 'POST', path: () => '/agents/register', body: () => ({ node: nodeBody() }), expect: only({ registration: 201, admin: 201 }) },
  { method: 'GET', path: () => '/nodes/', expect: only({ alice: 200, bob: 200, admin: 200 }) },
  { method: 'GET', path: () => `/nodes/${ids.node}`, expect: only({ alice: 200, bob: 200, admin: 200, agent: 200, otherAgent: 404 }) },
  {
    method: 'GET',
    path: () => `/nodes/${ids.node}/stats`,
    expect: only({ alice: 200, bob: 200, admin: 200, agent: 200, otherAgent: 404 }),
  },
  { method: 'POST', path: () => `/nodes/${ids.node}/heartbeat`, body: () => hb, expect: only({ agent: 200, admin: 200, otherAgent: 404 }) },
  { method: 'POST', path: () => `/nodes/${ids.otherNode}/uncordon`, expect: only({ admin: 200 }) },
  { method: 'POST', path: () => `/nodes/${ids.otherNode}/drain`, expect: only({ admin: 200 }) },
  { method: 'DELETE', path: () => '/nodes/gpu-000000000000', expect: only({ admin: 404 }) },
  { method: 'GET', path: () => '/available-nodes/', expect: only({ alice: 200, bob: 200, admin: 200 }) },
  { method: 'POST', path: () => '/jobs/', body: () => ({}), expect: only({ alice: 400, bob: 400, admin: 400 }) },
  { method: 'GET', path: () => '/jobs/', expect: only({ alice: 200, bob: 200, admin: 200 }) },
  { method: 'GET', path: () => `/jobs/${ids.job}`, expect: only({ alice: 200, bob: 404, admin: 200, agent: 200, otherAgent: 404 }) },
  {
    method: 'POST',
    path: () => `/jobs/${ids.job}/status`,
    body: () => ({ status: 'running', lock_token: ids.token, progress: 1 }),
    expect: only({ agent: 200, otherAgent: 404, admin: 400 }),
  },
  {
    method: 'POST',
    path: () => `/jobs/${ids.job}/logs`,
    body: () => ({ lines: [{ stream: 'stdout', text: 'x' }] }),
    expect: only({ agent: 202, otherAgent: 404, admin: 202 }),
  },
  { method: 'GET', path: () => `/jobs/${ids.job}/logs`, expect: only({ alice: 200, bob: 404, admin: 200, agent: 200, otherAgent: 404 }) },
  { method: 'POST', path: () => '/jobs/00000000-0000-4000-8000-000000000000/cancel', expect: only({ alice: 404, bob: 404, admin: 404 }) },
  { method: 'GET', path: () => `/agents/${ids.agent}`, expect: only({ admin: 200, agent: 200, otherAgent: 404 }) },
];

const CALLERS: Caller[] = ['none', 'alice', 'bob', 'admin', 'agent', 'otherAgent', 'registration'];
function tokenOf(c: Caller): string | undefined {
  switch (c) {
    case 'none':
      return undefined;
    case 'alice':
    case 'bob':
    case 'admin':
      return t.tokens[c];
    case 'agent':
      return ids.agentKey;
    case 'otherAgent':
      return ids.otherKey;
    case 'registration':
      return t.registrationToken;
  }
}

describe('route table', () => {
  for (const route of routes) {
    for (const caller of CALLERS) {
      const expected = caller === 'none' ? 401 : route.expect[caller];
      it(`${route.method} ${route.path.toString().slice(6, 60)} as ${caller} → ${expected}`, async () => {
        const r = await t.req(route.method, route.path(), { token: tokenOf(caller), body: route.body?.() });
        expect(r.status, r.text).toBe(expected);
        if (expected >= 400) expect(r.body).toMatchObject({ error: expect.any(String), message: expect.any(String) });
      });
    }
  }
});

describe('JWTs that must not get in', () => {
  const path = '/jobs/';
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const cases: [string, () => string][] = [
    ['expired', () => jwt.sign({ role: 'user' }, t.secret, { subject: 'alice', expiresIn: -10 })],
    ['signed with another key', () => jwt.sign({ role: 'user' }, 'x'.repeat(40), { subject: 'alice' })],
    ['alg none', () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', role: 'admin' })}.`],
    ['without a role', () => jwt.sign({}, t.secret, { subject: 'alice' })],
    ['with an unknown role', () => jwt.sign({ role: 'root' }, t.secret, { subject: 'alice' })],
    ['without a subject', () => jwt.sign({ role: 'admin' }, t.secret)],
    ['malformed', () => 'not.a.jwt'],
    [
      'HS256 header over a forged body',
      () => {
        const head = b64({ alg: 'HS256', typ: 'JWT' });
        const body = b64({ sub: 'alice', role: 'admin' });
        return `${head}.${body}.${createHmac('sha256', 'guess').update(`${head}.${body}`).digest('base64url')}`;
      },
    ],
  ];
  it.each(cases)('%s → 401', async (_, make) => {
    const r = await t.req('GET', path, { token: make() });
    expect(r.status).toBe(401);
    expect(r.body.error).toBe('unauthorized');
  });

  it('a user token cannot act as admin by claiming it in the URL or body', async () => {
    expect((await t.req('GET', '/jobs/?user_id=bob', { token: t.tokens.alice })).status).toBe(403);
    expect((await t.req('POST', `/nodes/${ids.node}/cordon`, { token: t.tokens.alice, body: { role: 'admin' } })).status).toBe(403);
  });
});

describe('JWTs from an identity provider (the API holds only its public key)', () => {
  let idp: TestApi;
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
  beforeAll(async () => {
    idp = await startTestApi('auth-idp', { IMAGEPOD_JWT_SECRET: '', IMAGEPOD_JWT_PUBLIC_KEY: pem });
  });
  afterAll(async () => idp.close());

  it('accepts a token the provider signed (ES256)', async () => {
    const token = jwt.sign({ role: 'user' }, privateKey, { algorithm: 'ES256', subject: 'carol', expiresIn: 60 });
    const r = await idp.req('GET', '/jobs/', { token });
    expect(r.status, r.text).toBe(200);
    expect(r.body.items).toEqual([]);
  });

  it.each([
    [
      'signed by another key',
      () =>
        jwt.sign({ role: 'admin' }, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, {
          algorithm: 'ES256',
          subject: 'carol',
        }),
    ],
    // The classic confusion: an HMAC keyed with the public key's own text.
    ['HS256 keyed with the public key', () => jwt.sign({ role: 'admin' }, pem, { algorithm: 'HS256', subject: 'carol' })],
    ['expired', () => jwt.sign({ role: 'user' }, privateKey, { algorithm: 'ES256', subject: 'carol', expiresIn: -10 })],
  ])('refuses a token %s → 401', async (_, make) => {
    const r = await idp.req('GET', '/jobs/', { token: make() });
    expect(r.status).toBe(401);
  });
});
