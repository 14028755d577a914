import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { errorBody } from '../../src/domain/schemas/common.js';
import { API_BASE } from '../../src/http/app.js';
import { type OperationSpec, operations, PATH_PARAMS } from '../../src/http/openapi/operations.js';
import { RTX_4090_NODE, registerNode, startTestApi, type TestApi } from '../support/api.js';
import { TestClaimer } from '../support/claim.js';
import { appOf, expressRoutes } from '../support/express-routes.js';
import { type Answer, FuzzClient, NoAnswer } from './client.js';
import {
  Encoding,
  encodeBody,
  encodePart,
  HOSTILE_KEYS,
  HOSTILE_STRINGS,
  type Mutation,
  mutate,
  mutationArb,
  POLLUTION_MARKERS,
  RAW_SEGMENTS,
} from './hostile.js';
import { type Hints, type JsonSchema, schemaArbitrary } from './schema-arbitrary.js';

/**
 * A property-based fuzzer over every route of the API, over real HTTP against a real API on the
 * real Redis. Each case is a route's valid-ish request (values drawn from the schemas the route
 * validates with) made hostile: mutated values, extra `__proto__` keys, deep nesting, malformed
 * bytes, wrong headers, every kind of credential. The property: no answer is a 5xx, every 4xx is
 * the JSON error shape with a request id, and no answer carries a stack trace or a secret.
 *
 * IMAGEPOD_FUZZ_SEED reproduces a run (the seed is printed); IMAGEPOD_FUZZ_RUNS sizes it.
 */

const TOTAL_RUNS = Number(process.env.IMAGEPOD_FUZZ_RUNS ?? 10_500);
const BASE_SEED = Number(process.env.IMAGEPOD_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const RUNS_PER_CHUNK = 25;
const CONCURRENCY = 24;
const BODY_LIMIT = 256 * 1024;

/** The dashboard's routes, served by the app but not API operations (as in openapi.test.ts). */
const NOT_API = new Set(['GET /.*/', 'GET /']);

const STACK_TRACE = [/\bat \S+ \(\S+:\d+:\d+\)/, /\bat (?:file:\/\/)?\/\S+:\d+:\d+/, /\/work\//, /node_modules/, /file:\/\//];

interface Credential {
  readonly kind: string;
  readonly headers: Record<string, string>;
}

interface Case {
  readonly focus: string;
  readonly cred: Credential;
  readonly params: readonly { value: string; raw: boolean }[];
  readonly query: string;
  readonly body: unknown;
  readonly mutations: readonly Mutation[];
  readonly encoding: Encoding;
  readonly pick: number;
  readonly headers: Record<string, string>;
  readonly method: string | null;
}

interface Stats {
  cases: number;
  byStatus: Record<string, number>;
  byRoute: Record<string, { cases: number; ok: number; reached: number }>;
  fiveXx: string[];
  problems: string[];
  resetsOnOversized: number;
}

let t: TestApi;
let claimer: TestClaimer;
let client: FuzzClient;
let ops: OperationSpec[];
const stats: Stats = { cases: 0, byStatus: {}, byRoute: {}, fiveXx: [], problems: [], resetsOnOversized: 0 };
const ids = { node1: '', node2: '', agent2: '', spare: [] as string[], jobs: [] as string[], lock: '' };
let creds: Record<string, Credential>;
let prototypeBefore: { object: string[]; array: string[]; fn: string[] };
let protoKeysBefore: Set<string>;

async function scanKeys(pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await t.redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}

beforeAll(async () => {
  prototypeBefore = {
    object: Object.getOwnPropertyNames(Object.prototype).sort(),
    array: Object.getOwnPropertyNames(Array.prototype).sort(),
    fn: Object.getOwnPropertyNames(Function.prototype).sort(),
  };
  t = await startTestApi('fuzz', {
    IMAGEPOD_BODY_LIMIT_BYTES: String(BODY_LIMIT),
    IMAGEPOD_INPUT_DATA_MAX_BYTES: String(64 * 1024),
    // `POST /jobs?wait=` holds a request that long: keep it short.
    IMAGEPOD_JOB_WAIT_MAX_SECONDS: '1',
    IMAGEPOD_WEBHOOK_ATTEMPTS: '1',
    IMAGEPOD_WEBHOOK_TIMEOUT_MS: '500',
  });
  protoKeysBefore = new Set(await scanKeys('*__proto__*'));
  claimer = new TestClaimer(t.prefix);
  client = new FuzzClient(new URL(t.url), 15_000);
  const config = t.api.context.config;
  ops = operations({ apiBase: API_BASE, pageSizeMax: config.limits.pageSizeMax, jobWaitMaxSeconds: config.jobWaitMaxSeconds });

  // Real things to point at, so hostile requests reach past "not found".
  const n1 = await registerNode(t, { ...RTX_4090_NODE, node_name: 'fuzz-1' });
  ids.node1 = n1.nodeId;
  const agent = await t.req('POST', '/agents/register', {
    token: t.registrationToken,
    body: { agent_version: '1.0.0', executor: 'process', node: { ...RTX_4090_NODE, node_name: 'fuzz-2' } },
  });
  ids.node2 = agent.body.node_id;
  ids.agent2 = agent.body.agent_id;
  for (const name of ['spare-1', 'spare-2', 'spare-3'])
    ids.spare.push((await registerNode(t, { ...RTX_4090_NODE, node_name: name })).nodeId);
  await t.req('POST', `/nodes/${ids.node1}/heartbeat`, {
    token: n1.apiKey,
    body: {
      gpus: [
        { index: 0, memory_free: 24576 },
        { index: 1, memory_free: 24576 },
      ],
      cpu_cores_available: 16,
      memory_available: 32768,
      current_jobs: 0,
    },
  });
  const submit = async (token: string, body: Record<string, unknown>) => (await t.req('POST', '/jobs/', { token, body })).body.id as string;
  const claimed = await submit(t.tokens.alice, { docker_image: 'busybox', gpu_memory_required: 4096 });
  ids.jobs.push(
    claimed,
    await submit(t.tokens.alice, { docker_image: 'busybox' }),
    await submit(t.tokens.bob, { docker_image: 'busybox' }),
  );
  const { token } = await claimer.claim('gpu-8g');
  ids.lock = token;
  const assigned = await t.req('POST', `/jobs/${claimed}/status`, {
    token: n1.apiKey,
    body: { status: 'assigned', lock_token: token, gpu_indices: [0] },
  });
  expect(assigned.status).toBe(200);

  const session = await t.req('POST', '/session', { body: { token: t.tokens.alice } });
  const cookie = /^imagepod_session=[^;]+/.exec(session.headers.get('set-cookie') ?? '')?.[0] ?? '';
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  const none = jwt.sign({ sub: 'root', role: 'admin' }, '', { algorithm: 'none' });
  creds = {
    none: { kind: 'none', headers: {} },
    user: { kind: 'user', headers: bearer(t.tokens.alice) },
    bob: { kind: 'bob', headers: bearer(t.tokens.bob) },
    admin: { kind: 'admin', headers: bearer(t.tokens.admin) },
    agent: { kind: 'agent', headers: bearer(n1.apiKey) },
    agent2: { kind: 'agent2', headers: bearer(agent.body.api_key) },
    registrar: { kind: 'registrar', headers: bearer(t.registrationToken) },
    cookie: { kind: 'cookie', headers: { cookie, origin: t.url } },
    foreignCookie: { kind: 'cookie-foreign-origin', headers: { cookie, origin: 'https://evil.example' } },
    algNone: { kind: 'alg-none', headers: bearer(none) },
    garbage: { kind: 'garbage', headers: { authorization: 'Bearer ipk_not-a-key' } },
    longBearer: { kind: 'long-bearer', headers: bearer('a.b.'.repeat(2000)) },
    basic: { kind: 'basic', headers: { authorization: 'Basic YWRtaW46YWRtaW4=' } },
  };
}, 60_000);

afterAll(async () => {
  client?.close();
  await claimer?.close();
  await t?.close();
});

/** Which credentials a route's guard admits: most cases use one, so the handler behind it runs. */
function admittedCreds(op: OperationSpec): Credential[] {
  const kinds = new Set<string>();
  for (const c of op.callers) {
    if (c === 'user') for (const k of ['user', 'bob', 'admin', 'cookie']) kinds.add(k);
    if (c === 'admin') kinds.add('admin');
    if (c === 'agent') for (const k of ['agent', 'agent2']) kinds.add(k);
    if (c === 'registrar') for (const k of ['registrar', 'admin']) kinds.add(k);
  }
  if (kinds.size === 0) for (const k of ['none', 'user', 'admin']) kinds.add(k);
  return [...kinds].map((k) => creds[k] as Credential);
}

const ofSchema = (schema: z.ZodType): JsonSchema => z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;

function realParamArb(op: OperationSpec, name: string): fc.Arbitrary<{ value: string; raw: boolean }> {
  const real: Record<string, string[]> = {
    nodeId: op.operationId === 'deleteNode' ? ids.spare : [ids.node1, ids.node2],
    jobId: ids.jobs,
    agentId: [ids.agent2],
    userId: ['alice', 'bob', 'root'],
  };
  return fc.constantFrom(...(real[name] ?? ['x'])).map((value) => ({ value, raw: false }));
}

function hostileParamArb(name: string): fc.Arbitrary<{ value: string; raw: boolean }> {
  const spec = PATH_PARAMS[name];
  const wellFormed = spec === undefined ? fc.string() : schemaArbitrary(ofSchema(spec.schema), {});
  return fc.oneof(
    { weight: 2, arbitrary: wellFormed.map((value) => ({ value: String(value), raw: false })) },
    { weight: 3, arbitrary: fc.constantFrom(...HOSTILE_STRINGS).map((value) => ({ value, raw: false })) },
    { weight: 2, arbitrary: fc.constantFrom(...RAW_SEGMENTS).map((value) => ({ value, raw: true })) },
  );
}

function hints(): Hints {
  return {
    docker_image: fc.constantFrom(
      'busybox',
      'python:3.12-slim',
      'ghcr.io/org/app:v1',
      `app@sha256:${'a'.repeat(64)}`,
      'localhost:5000/x/y',
    ),
    webhook_url: fc.constantFrom('https://example.com/hook', 'http://127.0.0.1:9/x', 'http://169.254.169.254/', 'http://2130706433/'),
    lock_token: fc.constantFrom(ids.lock, 'stale-token'),
    job_id: fc.constantFrom(...ids.jobs, randomUUID()),
    node_id: fc.constantFrom(ids.node1, ids.node2),
    token: fc.constantFrom(t.tokens.alice, t.tokens.admin, 'a.b.c', 'garbage'),
    user_id: fc.constantFrom('alice', 'bob', 'root', 'carol', '__proto__'),
    input_data: fc.jsonValue({ maxDepth: 3 }),
    result: fc.jsonValue({ maxDepth: 3 }),
    gpu_memory_required: fc.oneof(fc.constantFrom(0, 4096, 24576, 81920), fc.nat()),
    ttl: fc.oneof(fc.constantFrom('1h', '90m', '7d', 3600), fc.string({ maxLength: 8 })),
    after: fc.constantFrom('0-0', '0', '1-1', '99999999999999-0', 'x'),
  };
}

/** `?a=1&b=2`, with repeated keys for arrays and, sometimes, raw broken pieces. */
function queryText(value: unknown, raw: string | null): string {
  const parts: string[] = [];
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) {
      const values = Array.isArray(v) ? v : [v];
      for (const x of values) parts.push(`${encodePart(k)}=${encodePart(typeof x === 'string' ? x : (JSON.stringify(x) ?? ''))}`);
    }
  }
  if (raw !== null) parts.push(raw);
  return parts.length > 0 ? `?${parts.join('&')}` : '';
}

const RAW_QUERY = ['%', '%zz=1', '=', '&&', 'a[b]=1', '__proto__[polluted]=1', 'constructor[prototype][polluted]=1', 'limit', 'x=%E0%A4%A'];
const EXTRA_HEADERS: Record<string, string>[] = [
  { 'x-imagepod-role': 'admin' },
  { 'x-forwarded-for': '127.0.0.1', 'x-forwarded-proto': 'https' },
  { 'x-request-id': 'a b\tc' },
  { 'x-request-id': 'x'.repeat(200) },
  { 'x-http-method-override': 'DELETE' },
  { 'last-event-id': '%%%garbage' },
  { 'zzz-unknown-header': '1' },
  { accept: 'text/html' },
  { 'idempotency-key': 'ÄÖ\u00ff'.repeat(3) },
];

/**
 * Which part of the request is made hostile; the rest is left as a client would send it, so the
 * handlers behind the guards and the schemas are reached too. `all` makes every part hostile.
 */
const FOCUS = [
  { weight: 2, focus: 'clean' },
  { weight: 5, focus: 'body' },
  { weight: 2, focus: 'query' },
  { weight: 2, focus: 'params' },
  { weight: 2, focus: 'credentials' },
  { weight: 2, focus: 'encoding' },
  { weight: 1, focus: 'headers' },
  { weight: 1, focus: 'method' },
  { weight: 2, focus: 'all' },
] as const;
type Focus = (typeof FOCUS)[number]['focus'];

/** Query values no generated value can get right (opaque cursors): left out of clean queries. */
const OPAQUE_QUERY = ['cursor', 'after'];

function caseArb(op: OperationSpec): fc.Arbitrary<Case> {
  const paramNames = [...op.path.matchAll(/:(\w+)/g)].map((m) => m[1] as string);
  const h = hints();
  const querySchema = op.query ? ofSchema(op.query) : null;
  const bodySchema = op.body ? ofSchema(op.body) : null;
  const bodyValue: fc.Arbitrary<unknown> =
    bodySchema !== null
      ? schemaArbitrary(bodySchema, bodySchema, h)
      : fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) });
  return fc
    .record({
      focus: fc.oneof(...FOCUS.map((f) => ({ weight: f.weight, arbitrary: fc.constant<Focus>(f.focus) }))),
      admittedCred: fc.constantFrom(...admittedCreds(op)),
      anyCred: fc.constantFrom(...Object.values(creds)),
      realParams: fc.tuple(...paramNames.map((n) => realParamArb(op, n))),
      hostileParams: fc.tuple(...paramNames.map((n) => fc.oneof(realParamArb(op, n), hostileParamArb(n)))),
      queryValue: querySchema === null ? fc.constant(undefined) : schemaArbitrary(querySchema, querySchema, h),
      queryMutations: fc.array(fc.record({ kind: fc.constantFrom('wrong-type', 'add-key', 'delete'), at: fc.nat(), pick: fc.nat() }), {
        minLength: 1,
        maxLength: 2,
      }),
      rawQuery: fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(...RAW_QUERY) }),
      body: bodyValue,
      mutations: fc.array(mutationArb, { minLength: 1, maxLength: 3 }),
      encoding: fc.constantFrom(...Object.values(Encoding).filter((e) => e !== Encoding.Json)),
      pick: fc.nat(),
      headers: fc.constantFrom(...EXTRA_HEADERS),
      method: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'),
    })
    .map((g): Case => {
      const on = (part: Focus) => g.focus === part || g.focus === 'all';
      const cleanQuery =
        g.queryValue !== null && typeof g.queryValue === 'object'
          ? Object.fromEntries(Object.entries(g.queryValue).filter(([k]) => !OPAQUE_QUERY.includes(k)))
          : undefined;
      return {
        focus: g.focus,
        cred: on('credentials') ? g.anyCred : g.admittedCred,
        params: on('params') ? g.hostileParams : g.realParams,
        query: on('query') ? queryText(mutateQuery(g.queryValue, g.queryMutations), g.rawQuery) : queryText(cleanQuery, null),
        body: g.body,
        mutations: on('body') ? g.mutations : [],
        encoding: on('encoding') ? g.encoding : Encoding.Json,
        pick: g.pick,
        headers: on('headers') ? g.headers : {},
        // Another method than the route's.
        method: on('method') ? g.method : null,
      };
    });
}

/** Query values are strings: swap in hostile strings, add hostile keys, drop keys. */
function mutateQuery(value: unknown, ms: readonly { kind: string; at: number; pick: number }[]): unknown {
  if (value === undefined || value === null || typeof value !== 'object') {
    return ms.length > 0 ? { [HOSTILE_KEYS[(ms[0]?.pick ?? 0) % HOSTILE_KEYS.length] ?? 'zzz']: 'x' } : undefined;
  }
  const out: Record<string, unknown> = { ...(value as Record<string, unknown>) };
  for (const m of ms) {
    const keys = Object.keys(out);
    const key = keys.length > 0 ? (keys[m.at % keys.length] as string) : 'zzz_unknown';
    if (m.kind === 'wrong-type') out[key] = HOSTILE_STRINGS[m.pick % HOSTILE_STRINGS.length];
    else if (m.kind === 'delete') delete out[key];
    else
      Object.defineProperty(out, HOSTILE_KEYS[m.pick % HOSTILE_KEYS.length] as string, {
        value: 'x',
        enumerable: true,
        writable: true,
        configurable: true,
      });
  }
  return out;
}

function pathOf(op: OperationSpec, params: Case['params']): string {
  let i = 0;
  return op.path.replace(/:(\w+)/g, () => {
    const p = params[i++];
    return p === undefined ? 'x' : p.raw ? p.value : encodePart(p.value);
  });
}

/** What must hold of every answer; the problems found, empty when none. */
function problemsWith(answer: Answer): string[] {
  const problems: string[] = [];
  if (answer.status >= 500) problems.push(`status ${answer.status}`);
  for (const re of STACK_TRACE) if (re.test(answer.text)) problems.push(`the answer matches ${re}: a stack trace or a file path`);
  if (answer.text.includes(t.secret)) problems.push('the answer carries the JWT secret');
  if (answer.text.includes(t.registrationToken)) problems.push('the answer carries the registration token');
  if (answer.status >= 400 && answer.status < 500) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(answer.text);
    } catch {
      problems.push('a 4xx whose body is not JSON');
    }
    const shape = errorBody.safeParse(parsed);
    if (parsed !== undefined && !shape.success) problems.push(`a 4xx not in the error shape: ${shape.error.message}`);
    const requestId = shape.success ? shape.data.request_id : undefined;
    if (!requestId) problems.push('a 4xx without request_id');
    else if (answer.headers['x-request-id'] !== requestId) problems.push('request_id differs from the X-Request-Id header');
    if (!String(answer.headers['content-type']).startsWith('application/json')) problems.push('a 4xx that is not application/json');
  }
  return problems;
}

function record(route: string, status: number, handled: boolean): void {
  stats.cases++;
  const bucket = status >= 500 ? '5xx' : String(status);
  stats.byStatus[bucket] = (stats.byStatus[bucket] ?? 0) + 1;
  const r = stats.byRoute[route] ?? { cases: 0, ok: 0, reached: 0 };
  stats.byRoute[route] = r;
  r.cases++;
  if (status >= 200 && status < 300) r.ok++;
  if (handled) r.reached++;
}

async function runCase(op: OperationSpec, c: Case): Promise<void> {
  const route = `${op.method.toUpperCase()} ${op.path}`;
  const method = c.method ?? op.method.toUpperCase();
  const path = `${pathOf(op, c.params)}${c.query}`;
  const value = c.mutations.length > 0 ? mutate(c.body, c.mutations) : c.body;
  const wire = encodeBody(value, c.encoding, c.pick, BODY_LIMIT);
  const headers = { ...c.cred.headers, ...c.headers, ...wire.headers };
  const what = `[${c.focus}] ${method} ${path.slice(0, 300)} as ${c.cred.kind}, ${c.encoding}, body ${wire.bytes?.subarray(0, 300).toString() ?? 'none'}`;
  let answer: Answer;
  try {
    answer = await client.send(method, path, headers, method === 'HEAD' ? null : wire.bytes);
  } catch (err) {
    // A body over the limit may be cut off by the server while it is still being sent.
    if (err instanceof NoAnswer && c.encoding === Encoding.Oversized && !/no answer within/.test(err.message)) {
      stats.resetsOnOversized++;
      return;
    }
    stats.problems.push(`${what}: ${(err as Error).message}`);
    throw new Error(`${what}: ${(err as Error).message}`);
  }
  // Reached the handler: past authentication and the route's guard.
  const handled = answer.status !== 401 && !(answer.status === 403 && answer.text.includes('this route requires'));
  record(route, answer.status, handled);
  const problems = method === 'HEAD' ? (answer.status >= 500 ? [`status ${answer.status}`] : []) : problemsWith(answer);
  if (problems.length > 0) {
    const line = `${what} -> ${answer.status} ${answer.text.slice(0, 300)}: ${problems.join('; ')}`;
    if (answer.status >= 500) stats.fiveXx.push(line);
    else stats.problems.push(line);
    throw new Error(line);
  }
}

/** Requests to paths no route has: 404 (or 401 without credentials), in the error shape. */
const unknownRoute: OperationSpec = {
  method: 'get',
  path: `${API_BASE}/:a/:b`,
  operationId: 'unknownRoute',
  summary: 'no such route',
  tag: 'Reference',
  callers: [],
  responses: {},
};

async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<PromiseSettledResult<T>[]> {
  const results: PromiseSettledResult<T>[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const i = next++;
      const task = tasks[i] as () => Promise<T>;
      results[i] = await task().then(
        (value) => ({ status: 'fulfilled', value }) as const,
        (reason: unknown) => ({ status: 'rejected', reason }) as const,
      );
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

describe('fuzzing every route', () => {
  it('enumerates the same routes as the Express router serves', () => {
    const served = expressRoutes(appOf(t.api.server))
      .map((r) => `${r.method} ${r.path}`)
      .filter((r) => !NOT_API.has(r));
    const registered = ops.map((o) => `${o.method.toUpperCase()} ${o.path}`);
    expect([...new Set(served)].sort()).toEqual([...new Set(registered)].sort());
  });

  it(`answers no hostile request with a 5xx, a stack trace or a secret (${TOTAL_RUNS} cases, seed ${BASE_SEED})`, async () => {
    console.log(`fuzz: seed ${BASE_SEED} (set IMAGEPOD_FUZZ_SEED=${BASE_SEED} to replay), ${TOTAL_RUNS} cases`);
    const targets = [...ops, unknownRoute];
    const perTarget = Math.ceil(TOTAL_RUNS / targets.length);
    const tasks: (() => Promise<void>)[] = [];
    const started = Date.now();
    targets.forEach((op, opIndex) => {
      const arb = caseArb(op);
      for (let chunk = 0; chunk * RUNS_PER_CHUNK < perTarget; chunk++) {
        const seed = (BASE_SEED + opIndex * 1_000 + chunk) | 0;
        const numRuns = Math.min(RUNS_PER_CHUNK, perTarget - chunk * RUNS_PER_CHUNK);
        tasks.push(async () => {
          try {
            await fc.assert(
              fc.asyncProperty(arb, (c) => runCase(op, c)),
              { numRuns, seed, endOnFailure: true },
            );
          } catch (err) {
            const cause = (err as Error).cause instanceof Error ? `${((err as Error).cause as Error).message}\n` : '';
            throw new Error(`${op.method.toUpperCase()} ${op.path} (seed ${seed}): ${cause}${(err as Error).message.slice(0, 1500)}`);
          }
        });
      }
    });
    const results = await pool(tasks, CONCURRENCY);
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : []));

    const routesCovered = Object.keys(stats.byRoute).filter((r) => !r.includes('/:a/:b')).length;
    const summary = {
      seed: BASE_SEED,
      cases: stats.cases,
      five_xx: stats.fiveXx.length,
      other_problems: stats.problems.length,
      routes: ops.length,
      routes_covered: routesCovered,
      routes_with_a_2xx: Object.entries(stats.byRoute).filter(([r, s]) => !r.includes('/:a/:b') && s.ok > 0).length,
      resets_on_oversized: stats.resetsOnOversized,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      by_status: stats.byStatus,
      by_route: stats.byRoute,
      five_xx_examples: stats.fiveXx.slice(0, 20),
      problem_examples: stats.problems.slice(0, 20),
    };
    mkdirSync('test/artifacts', { recursive: true });
    writeFileSync('test/artifacts/fuzz-summary.json', `${JSON.stringify(summary, null, 2)}\n`);
    console.log(
      `fuzz: ${summary.cases} cases over ${routesCovered}/${ops.length} routes in ${summary.seconds} s, 5xx seen: ${summary.five_xx}, ` +
        `other problems: ${summary.other_problems}, routes answered 2xx: ${summary.routes_with_a_2xx}, seed ${BASE_SEED}`,
    );

    expect(failures.slice(0, 5)).toEqual([]);
    expect(stats.fiveXx).toEqual([]);
    expect(routesCovered).toBe(ops.length);
    expect(stats.cases).toBeGreaterThanOrEqual(Math.min(TOTAL_RUNS, 10_000));
    // Most cases got past authentication and the guard, into the handlers.
    for (const [route, s] of Object.entries(stats.byRoute)) expect(s.reached, route).toBeGreaterThan(0);
  }, 300_000);

  it('left Object.prototype and its kin unpolluted in the API process', () => {
    for (const marker of POLLUTION_MARKERS) {
      expect(({} as Record<string, unknown>)[marker], marker).toBeUndefined();
      expect(([] as unknown as Record<string, unknown>)[marker], marker).toBeUndefined();
    }
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeBefore.object);
    expect(Object.getOwnPropertyNames(Array.prototype).sort()).toEqual(prototypeBefore.array);
    expect(Object.getOwnPropertyNames(Function.prototype).sort()).toEqual(prototypeBefore.fn);
  });

  it('wrote no Redis key named with __proto__ outside its prefix', async () => {
    const stray = (await scanKeys('*__proto__*')).filter((k) => !protoKeysBefore.has(k) && !k.startsWith(`${t.prefix}:`));
    expect(stray).toEqual([]);
  });
});
