import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_BASE } from '../../src/http/app.js';
import { heartbeat, RTX_4090_NODE, registerNode, startTestApi, type TestApi } from '../support/api.js';
import { TestClaimer } from '../support/claim.js';
import { appOf, expressRoutes } from '../support/express-routes.js';
import { call, type Reply } from '../support/http.js';

/**
 * The authorization matrix: every route the app serves against every kind of caller, each cell's
 * status asserted. Users A (alice) and B (bob); nodes X and Y, registered, with their agents'
 * keys; a job of A's assigned to X through a real claim (a BullMQ lock token). B acts on A's job
 * and A's user resources, Y on X's node, agent and job. A route the app serves that is missing
 * from the table fails the test, so a new route cannot skip it.
 */

const PRINCIPALS = [
  'none',
  'malformed',
  'expired',
  'wrongKey',
  'algNone',
  'userA',
  'userB',
  'admin',
  'agentX',
  'agentY',
  'registration',
  'cookieA',
] as const;
type Who = (typeof PRINCIPALS)[number];
const LABEL: Record<Who, string> = {
  none: 'none',
  malformed: 'malformed',
  expired: 'expired',
  wrongKey: 'other key',
  algNone: 'alg none',
  userA: 'user A',
  userB: 'user B',
  admin: 'admin',
  agentX: 'agent X',
  agentY: 'agent Y',
  registration: 'reg token',
  cookieA: 'cookie A',
};
/** Credentials that prove nothing: every guarded route answers them 401. */
const REFUSED = ['none', 'malformed', 'expired', 'wrongKey', 'algNone'] as const;
type Accepted = Exclude<Who, (typeof REFUSED)[number]>;

/** Ids the rows act on; a row may make fresh ones for each cell (`prepare`). */
interface Fixtures {
  nodeId: string;
  agentId: string;
  jobId: string;
  lockToken: string;
  userId: string;
}

interface Row {
  /** Method and path as Express registers them (`POST /gpu-workers/jobs/:jobId/status`). */
  readonly route: string;
  readonly expect: Record<Who, number>;
  readonly body?: (f: Fixtures, who: Who) => unknown;
  /** Fresh fixtures for each cell, for rows whose success changes what later cells see. */
  readonly prepare?: () => Promise<Partial<Fixtures>>;
  /** Put things back after a cell (an admin's drain). */
  readonly restore?: () => Promise<void>;
  /** The concrete path, when filling in the route's parameters is not it. */
  readonly path?: string;
  readonly headers?: Record<string, string>;
  /** A stream: only its status is read. */
  readonly stream?: boolean;
  /** Served outside the app's router walk (Bull Board is an Express app mounted as a whole). */
  readonly mounted?: boolean;
  /** More to check on a cell's answer. */
  readonly check?: (r: Reply, who: Who, f: Fixtures) => void;
}

/** Every caller gets `status`: routes that need no credentials. */
const open = (status: number): Record<Who, number> => Object.fromEntries(PRINCIPALS.map((p) => [p, status])) as Record<Who, number>;

/**
 * A guarded route: refused credentials 401, the accepted ones as given, else 403. A's session
 * cookie is A, so it expects what A does unless said otherwise.
 */
function guarded(allowed: Partial<Record<Accepted, number>>): Record<Who, number> {
  const out = open(403);
  for (const r of REFUSED) out[r] = 401;
  Object.assign(out, allowed);
  if (allowed.cookieA === undefined && allowed.userA !== undefined) out.cookieA = allowed.userA;
  return out;
}

const B = API_BASE;
const GPU_JOB = { docker_image: 'busybox', command: ['true'], gpu_memory_required: 4096 };
const CPU_JOB = { docker_image: 'busybox', command: ['true'] };
const BEAT = { gpu_memory_available: 24000, cpu_cores_available: 16, current_jobs: 1 };
const freshName = (p: string) => `${p}-${Math.random().toString(36).slice(2, 10)}`;

let t: TestApi;
let claimer: TestClaimer;
let dashboardDir: string;
let base: Fixtures;
let X: { nodeId: string; apiKey: string; agentId: string };
let Y: { nodeId: string; apiKey: string; agentId: string };
let cookie: string | null = null;
const results = new Map<string, Map<Who, number>>();
let crossOriginRefused = 0;

async function signIn(): Promise<string> {
  const r = await t.req('POST', '/session', { body: { token: t.tokens.alice } });
  expect(r.status, r.text).toBe(204);
  const m = /imagepod_session=([^;]+)/.exec(r.headers.get('set-cookie') ?? '');
  if (!m?.[1]) throw new Error('no session cookie');
  return m[1];
}

/** A job of A's, queued in a GPU tier no test agent claims from. */
async function queuedJobOfA(): Promise<Partial<Fixtures>> {
  const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: GPU_JOB });
  expect(r.status, r.text).toBe(201);
  return { jobId: r.body.id };
}

/** A job of A's, claimed from the CPU tier as an agent does and assigned to node X by its report. */
async function assignedJobOfA(): Promise<Fixtures> {
  const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: CPU_JOB });
  expect(r.status, r.text).toBe(201);
  const { job, token } = await claimer.claim('cpu');
  // Only these jobs go to the CPU tier, so the claim is the job just submitted.
  expect(job.id).toBe(r.body.id);
  const assigned = await t.req('POST', `/jobs/${r.body.id}/status`, { token: X.apiKey, body: { status: 'assigned', lock_token: token } });
  expect(assigned.status, assigned.text).toBe(200);
  return { ...base, jobId: r.body.id, lockToken: token };
}

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** The bearer token each caller sends (none for no credentials and for the cookie). */
function bearerOf(who: Who): string | undefined {
  switch (who) {
    case 'none':
    case 'cookieA':
      return undefined;
    case 'malformed':
      return `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub: 'alice', role: 'admin' }).slice(0, 9)}.`;
    case 'expired':
      return jwt.sign({ role: 'user' }, t.secret, { subject: 'alice', expiresIn: -10 });
    case 'wrongKey':
      return jwt.sign({ role: 'admin' }, 'another-key-that-is-long-enough-0123456789', { subject: 'alice' });
    case 'algNone':
      return `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'alice', role: 'admin' })}.`;
    case 'userA':
      return t.tokens.alice;
    case 'userB':
      return t.tokens.bob;
    case 'admin':
      return t.tokens.admin;
    case 'agentX':
      return X.apiKey;
    case 'agentY':
      return Y.apiKey;
    case 'registration':
      return t.registrationToken;
  }
}

const fill = (route: string, f: Fixtures) =>
  route.replace(':nodeId', f.nodeId).replace(':agentId', f.agentId).replace(':jobId', f.jobId).replace(':userId', f.userId);

async function send(row: Row, who: Who, f: Fixtures, headers: Record<string, string>): Promise<Reply> {
  const [method = '', routePath = ''] = row.route.split(' ');
  const path = row.path ?? fill(routePath, f);
  if (!row.stream) return call(t.url, method, path, { token: bearerOf(who), body: row.body?.(f, who), headers });
  const abort = new AbortController();
  const token = bearerOf(who);
  const res = await fetch(`${t.url}${path}`, {
    method,
    headers: { ...headers, ...(token !== undefined && { authorization: `Bearer ${token}` }) },
    signal: abort.signal,
  });
  const sse = res.headers.get('content-type')?.startsWith('text/event-stream') ?? false;
  const text = sse ? '' : await res.text();
  abort.abort();
  return { status: res.status, body: text === '' ? null : JSON.parse(text), headers: res.headers, text };
}

async function runCell(row: Row, who: Who): Promise<{ r: Reply; f: Fixtures }> {
  const f = { ...base, ...(await row.prepare?.()) };
  const headers: Record<string, string> = { ...row.headers };
  if (who === 'cookieA') {
    cookie ??= await signIn();
    headers.cookie = `imagepod_session=${cookie}`;
    // A page of this origin sends it with every write; the dashboard's writes always have it.
    if (!row.route.startsWith('GET ')) headers.origin = t.url;
  }
  const r = await send(row, who, f, headers);
  // Signing out ends the session for every copy of the cookie: sign in again for the next cell.
  if (who === 'cookieA' && /imagepod_session=;/.test(r.headers.get('set-cookie') ?? '')) cookie = null;
  await row.restore?.();
  return { r, f };
}

const newNode = () => ({ ...RTX_4090_NODE, node_name: freshName('matrix-new') });

const ROWS: Row[] = [
  // Outside /gpu-workers, without credentials: whatever a caller sends, the same answer.
  { route: 'GET /healthz', expect: open(200) },
  { route: 'GET /readyz', expect: open(200) },
  { route: 'GET /metrics', expect: open(200) },
  { route: 'GET /openapi.json', expect: open(200) },
  { route: 'GET /docs', expect: open(200) },
  { route: 'GET /.*/', path: '/jobs', headers: { accept: 'text/html' }, expect: open(200) },
  {
    route: 'GET /admin/queues',
    mounted: true,
    expect: guarded({ admin: 200, cookieA: 403 }),
  },

  // Nodes.
  {
    route: `POST ${B}/nodes/register`,
    body: newNode,
    expect: guarded({ registration: 201, admin: 201 }),
    check: (r, who) => {
      if (r.status === 201) expect(r.body.api_key, who).toMatch(/^ipk_/);
    },
  },
  { route: `GET ${B}/nodes`, expect: guarded({ userA: 200, userB: 200, admin: 200 }) },
  { route: `GET ${B}/nodes/:nodeId`, expect: guarded({ userA: 200, userB: 200, admin: 200, agentX: 200, agentY: 404 }) },
  { route: `GET ${B}/nodes/:nodeId/stats`, expect: guarded({ userA: 200, userB: 200, admin: 200, agentX: 200, agentY: 404 }) },
  { route: `POST ${B}/nodes/:nodeId/heartbeat`, body: () => BEAT, expect: guarded({ agentX: 200, agentY: 404, admin: 200 }) },
  { route: `POST ${B}/nodes/:nodeId/cordon`, expect: guarded({ admin: 200 }), restore: () => uncordonX() },
  { route: `POST ${B}/nodes/:nodeId/uncordon`, expect: guarded({ admin: 200 }) },
  { route: `POST ${B}/nodes/:nodeId/drain`, expect: guarded({ admin: 200 }), restore: () => uncordonX() },
  { route: `PATCH ${B}/nodes/:nodeId`, body: () => ({ labels: { matrix: 'yes' } }), expect: guarded({ admin: 200 }) },
  {
    route: `DELETE ${B}/nodes/:nodeId`,
    // A node of its own for each cell: the admin's delete succeeds once per cell.
    prepare: async () => ({ nodeId: (await registerNode(t, { ...RTX_4090_NODE, node_name: freshName('matrix-doomed') })).nodeId }),
    expect: guarded({ admin: 204 }),
  },
  { route: `GET ${B}/available-nodes`, expect: guarded({ userA: 200, userB: 200, admin: 200 }) },

  // Jobs.
  { route: `POST ${B}/jobs`, body: () => GPU_JOB, expect: guarded({ userA: 201, userB: 201, admin: 201 }) },
  { route: `POST ${B}/jobs/batch`, body: () => ({ jobs: [GPU_JOB] }), expect: guarded({ userA: 201, userB: 201, admin: 201 }) },
  {
    route: `GET ${B}/jobs`,
    expect: guarded({ userA: 200, userB: 200, admin: 200 }),
    check: (r, who, f) => {
      const ids = (r.body.items as { id: string }[]).map((j) => j.id);
      // B's list never holds A's job; A's and the admin's do.
      if (who === 'userB') expect(ids).not.toContain(f.jobId);
      if (who === 'userA' || who === 'admin') expect(ids).toContain(f.jobId);
    },
  },
  {
    route: `GET ${B}/jobs/:jobId`,
    expect: guarded({ userA: 200, userB: 404, admin: 200, agentX: 200, agentY: 404 }),
    check: (r, who, f) => {
      if (r.status === 200) expect(r.body.id, who).toBe(f.jobId);
    },
  },
  {
    route: `POST ${B}/jobs/:jobId/cancel`,
    prepare: queuedJobOfA,
    expect: guarded({ userA: 200, userB: 404, admin: 200 }),
    check: (r, who) => {
      if (r.status === 200) expect(r.body.status, who).toBe('cancelled');
    },
  },
  { route: `GET ${B}/jobs/:jobId/logs`, expect: guarded({ userA: 200, userB: 404, admin: 200, agentX: 200, agentY: 404 }) },
  {
    route: `POST ${B}/jobs/:jobId/logs`,
    body: () => ({ lines: [{ stream: 'stdout', text: 'matrix' }] }),
    expect: guarded({ agentX: 202, agentY: 404, admin: 202, cookieA: 403 }),
  },
  {
    route: `POST ${B}/jobs/:jobId/status`,
    prepare: assignedJobOfA,
    // Y presents X's very lock token and still may not report for X's job. An admin may end one.
    body: (f, who) =>
      who === 'admin' ? { status: 'cancelled', message: 'ended by an admin' } : { status: 'running', lock_token: f.lockToken },
    expect: guarded({ agentX: 200, agentY: 404, admin: 200, cookieA: 403 }),
  },
  {
    route: `POST ${B}/jobs/status/batch`,
    prepare: assignedJobOfA,
    body: (f, who) => ({
      reports: [
        who === 'admin' ? { job_id: f.jobId, status: 'cancelled' } : { job_id: f.jobId, status: 'running', lock_token: f.lockToken },
      ],
    }),
    expect: guarded({ agentX: 200, agentY: 200, admin: 200, cookieA: 403 }),
    check: (r, who) => {
      // Each report is answered on its own: Y's, about X's job, is a 404 inside the 200.
      if (r.status !== 200) return;
      const [result] = r.body.results as { ok: boolean; status?: number }[];
      if (who === 'agentY') expect(result).toMatchObject({ ok: false, status: 404 });
      else expect(result, who).toMatchObject({ ok: true });
    },
  },

  // Agents.
  {
    route: `POST ${B}/agents/register`,
    body: () => ({ node: newNode() }),
    expect: guarded({ registration: 201, admin: 201 }),
  },
  { route: `GET ${B}/agents/:agentId`, expect: guarded({ admin: 200, agentX: 200, agentY: 404, cookieA: 403 }) },
  { route: `GET ${B}/agents/:agentId/config`, expect: guarded({ admin: 200, agentX: 200, agentY: 404, cookieA: 403 }) },

  // Accounting and webhooks: A's own (user B may not; user ids are no secret, so 403, not 404).
  { route: `GET ${B}/usage`, expect: guarded({ userA: 200, userB: 200, admin: 200 }) },
  { route: `GET ${B}/users/:userId/limits`, expect: guarded({ userA: 200, userB: 403, admin: 200 }) },
  { route: `PUT ${B}/users/:userId/limits`, body: () => ({ max_running_jobs: 1000 }), expect: guarded({ admin: 200, cookieA: 403 }) },
  { route: `GET ${B}/users/:userId/webhook-secret`, expect: guarded({ userA: 200, userB: 403, admin: 200 }) },
  { route: `POST ${B}/users/:userId/webhook-secret/rotate`, expect: guarded({ userA: 200, userB: 403, admin: 200 }) },

  // Identity.
  {
    route: `POST ${B}/session`,
    // Signing in takes the token in the body; without one (no credentials, or only a cookie) it is a 400.
    body: (_f, who) => {
      const token = bearerOf(who);
      return token === undefined ? {} : { token };
    },
    expect: {
      ...open(401),
      none: 400,
      cookieA: 400,
      userA: 204,
      userB: 204,
      admin: 204,
    },
  },
  { route: `DELETE ${B}/session`, expect: open(204) },
  {
    route: `GET ${B}/me`,
    expect: guarded({ userA: 200, userB: 200, admin: 200, agentX: 200, agentY: 200, registration: 200 }),
    check: (r, who) => {
      const kind: Partial<Record<Who, string>> = { userA: 'user', cookieA: 'user', agentX: 'agent', registration: 'registrar' };
      if (kind[who] !== undefined) expect(r.body.kind, who).toBe(kind[who]);
      if (who === 'agentY') expect(r.body.node_id).toBe(Y.nodeId);
    },
  },
  {
    route: `POST ${B}/tokens`,
    body: () => ({ user_id: 'matrix-minted', role: 'user', ttl: '1h' }),
    expect: guarded({ admin: 201, cookieA: 403 }),
  },

  // Overview.
  { route: `GET ${B}/queues`, expect: guarded({ userA: 200, userB: 200, admin: 200 }) },
  { route: `GET ${B}/stats/timeline`, expect: guarded({ userA: 200, userB: 200, admin: 200 }) },
  { route: `GET ${B}/events`, stream: true, expect: guarded({ userA: 200, userB: 200, admin: 200 }) },
];

async function uncordonX(): Promise<void> {
  const r = await t.req('POST', `/nodes/${X.nodeId}/uncordon`, { token: t.tokens.admin });
  expect(r.status, r.text).toBe(200);
}

beforeAll(async () => {
  dashboardDir = mkdtempSync(join(tmpdir(), 'imagepod-matrix-dashboard-'));
  writeFileSync(join(dashboardDir, 'index.html'), '<!doctype html><title>ImagePod</title>');
  t = await startTestApi('auth-matrix', { IMAGEPOD_DASHBOARD_DIR: dashboardDir });
  claimer = new TestClaimer(t.prefix);
  X = await registerNode(t, { ...RTX_4090_NODE, node_name: 'matrix-x' });
  Y = await registerNode(t, { ...RTX_4090_NODE, node_name: 'matrix-y' });
  for (const n of [X, Y]) {
    expect((await heartbeat(t, n.nodeId, n.apiKey, { ...BEAT, current_jobs: 0 })).status).toBe(200);
  }
  base = { nodeId: X.nodeId, agentId: X.agentId, jobId: '', lockToken: '', userId: 'alice' };
  base = await assignedJobOfA();
});

afterAll(async () => {
  await claimer?.close();
  await t?.close();
  if (dashboardDir) rmSync(dashboardDir, { recursive: true, force: true });
  if (results.size === 0) return;
  const width = Math.max(...[...results.keys()].map((k) => k.length));
  const lines = [
    `${'route'.padEnd(width)}  ${PRINCIPALS.map((p) => LABEL[p].padStart(9)).join(' ')}`,
    ...[...results].map(
      ([route, row]) => `${route.padEnd(width)}  ${PRINCIPALS.map((p) => String(row.get(p) ?? '-').padStart(9)).join(' ')}`,
    ),
  ];
  const cells = [...results.values()].reduce((n, row) => n + row.size, 0);
  console.log(lines.join('\n'));
  console.log(
    `authorization matrix: ${results.size} routes x ${PRINCIPALS.length} principals = ${cells} cells checked; ${crossOriginRefused} cross-origin cookie writes refused`,
  );
  mkdirSync('test/artifacts', { recursive: true });
  writeFileSync(
    join('test/artifacts', 'auth-matrix.json'),
    `${JSON.stringify(
      {
        routes: results.size,
        principals: PRINCIPALS.map((p) => LABEL[p]),
        cells,
        cross_origin_cookie_writes_refused: crossOriginRefused,
        matrix: Object.fromEntries(
          [...results].map(([route, row]) => [route, Object.fromEntries([...row].map(([p, s]) => [LABEL[p], s]))]),
        ),
      },
      null,
      2,
    )}\n`,
  );
});

describe('the authorization matrix', () => {
  it('has a row for every route the app serves, and none it does not', () => {
    const served = new Set(expressRoutes(appOf(t.api.server)).map((r) => `${r.method} ${r.path}`));
    const table = new Set(ROWS.filter((r) => !r.mounted).map((r) => r.route));
    expect(
      [...served].filter((r) => !table.has(r)),
      'routes missing from the matrix',
    ).toEqual([]);
    expect(
      [...table].filter((r) => !served.has(r)),
      'rows for routes the app does not serve',
    ).toEqual([]);
    expect(ROWS.length).toBe(new Set(ROWS.map((r) => r.route)).size);
  });

  for (const row of ROWS) {
    it(row.route, async () => {
      const got = new Map<Who, number>();
      results.set(row.route.replace(API_BASE, ''), got);
      for (const who of PRINCIPALS) {
        const { r, f } = await runCell(row, who);
        got.set(who, r.status);
        expect.soft(r.status, `${row.route} as ${LABEL[who]}: ${r.text.slice(0, 200)}`).toBe(row.expect[who]);
        if (r.status >= 400 && r.status !== 503) {
          // Refusals say why and nothing else: never the thing refused.
          expect.soft(r.body, `${row.route} as ${LABEL[who]}`).toMatchObject({ error: expect.any(String), message: expect.any(String) });
          expect.soft(Object.keys(r.body ?? {}).filter((k) => !['error', 'message', 'request_id', 'fields'].includes(k))).toEqual([]);
        }
        if (r.status === row.expect[who] && r.status < 300) row.check?.(r, who, f);
      }
    });
  }

  it("refuses writes on A's session cookie from another origin, or with no Origin", async () => {
    cookie ??= await signIn();
    // Every write behind the cookie (signing in and out are not: they are the cookie's own routes).
    const writes = ROWS.filter((r) => r.route.includes(` ${B}/`) && !r.route.startsWith('GET ') && !r.route.endsWith('/session'));
    for (const row of writes) {
      for (const origin of ['https://evil.example', undefined]) {
        const f = { ...base, ...(await row.prepare?.()) };
        const headers: Record<string, string> = { cookie: `imagepod_session=${cookie}`, ...(origin !== undefined && { origin }) };
        const r = await send(row, 'cookieA', f, headers);
        expect.soft(r.status, `${row.route} from ${origin ?? 'no Origin'}`).toBe(403);
        if (r.status === 403) crossOriginRefused++;
        await row.restore?.();
      }
    }
    expect(crossOriginRefused).toBeGreaterThan(20);
  });
});

describe("agent Y and node X's job, beyond the table", () => {
  it("cannot take X's job over with X's own lock token (which the queue's keys hold)", async () => {
    const f = await assignedJobOfA();
    const r = await t.req('POST', `/jobs/${f.jobId}/status`, { token: Y.apiKey, body: { status: 'assigned', lock_token: f.lockToken } });
    expect(r.status, r.text).toBe(404);
    expect(r.body.error).toBe('not_found');
    const job = await t.req('GET', `/jobs/${f.jobId}`, { token: t.tokens.admin });
    expect(job.body).toMatchObject({ status: 'assigned', node_id: X.nodeId });
    // X carries on with its claim.
    const running = await t.req('POST', `/jobs/${f.jobId}/status`, {
      token: X.apiKey,
      body: { status: 'running', lock_token: f.lockToken },
    });
    expect(running.status, running.text).toBe(200);
  });

  it('learns no more than that the job exists from a made-up lock token (409 lock_lost, as any stale claim)', async () => {
    const f = await assignedJobOfA();
    const r = await t.req('POST', `/jobs/${f.jobId}/status`, { token: Y.apiKey, body: { status: 'running', lock_token: 'made-up' } });
    expect(r.status).toBe(409);
    expect(Object.keys(r.body).sort()).toEqual(['error', 'message', 'request_id']);
    expect(r.body.error).toBe('lock_lost');
    expect(r.text).not.toMatch(/alice|assigned|busybox/);
  });
});
