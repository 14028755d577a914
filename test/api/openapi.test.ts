import { randomUUID } from 'node:crypto';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OpenApiDocument, OperationObject, ResponseOrRef } from '../../src/http/openapi/document.js';
import { PATH_PARAMS } from '../../src/http/openapi/operations.js';
import { RTX_4090_NODE, registerNode, startTestApi, type TestApi } from '../support/api.js';
import { TestClaimer } from '../support/claim.js';
import { type AppRoute, appOf, expressRoutes } from '../support/express-routes.js';
import { type CallOptions, call, type Reply } from '../support/http.js';

/**
 * The OpenAPI document against the real app: it is well formed, it names every route the app
 * serves and nothing else, the guards admit exactly the callers it says, and what the API really
 * answers validates against the schema it documents for that status.
 */

/**
 * Served by the app but not part of the API it documents. (Bull Board, at /admin/queues, is an
 * Express app of its own mounted there: the walk does not enter it.)
 */
const NOT_DOCUMENTED: Record<string, string> = {
  'GET /.*/': "the dashboard's client-side routes (index.html for deep links)",
  'GET /': 'the dashboard, when it is not built',
};

let t: TestApi;
let claimer: TestClaimer;
let doc: OpenApiDocument;
let ajv: Ajv2020;
const validated = new Set<string>();

beforeAll(async () => {
  t = await startTestApi('openapi');
  claimer = new TestClaimer(t.prefix);
  const r = await call(t.url, 'GET', '/openapi.json');
  expect(r.status).toBe(200);
  doc = r.body as OpenApiDocument;
  ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  ajv.addSchema(doc, 'openapi.json');
});
afterAll(async () => {
  await claimer?.close();
  await t?.close();
});

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

function operationsOf(d: OpenApiDocument): { method: string; path: string; op: OperationObject }[] {
  return Object.entries(d.paths).flatMap(([path, item]) =>
    METHODS.flatMap((m) => (item[m] ? [{ method: m.toUpperCase(), path, op: item[m] as OperationObject }] : [])),
  );
}

/** `/gpu-workers/jobs/:jobId` as the document writes it. */
const toTemplate = (expressPath: string) => expressPath.replace(/:(\w+)/g, (_, n: string) => `{${PATH_PARAMS[n]?.name ?? `UNKNOWN:${n}`}}`);

const pointer = (...parts: string[]) => parts.map((p) => encodeURIComponent(p.replace(/~/g, '~0').replace(/\//g, '~1'))).join('/');

function resolve(ref: string): unknown {
  if (!ref.startsWith('#/')) throw new Error(`not a local $ref: ${ref}`);
  let node: unknown = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[key] : undefined;
    if (node === undefined) return undefined;
  }
  return node;
}

const validators = new Map<string, ValidateFunction>();
function validatorAt(ptr: string): ValidateFunction {
  let v = validators.get(ptr);
  if (v === undefined) {
    v = ajv.compile({ $ref: `openapi.json#/${ptr}` });
    validators.set(ptr, v);
  }
  return v;
}

/** Validates a JSON body against what the document says `METHOD template` answers with `status`. */
function expectDocumented(method: string, template: string, status: number, body: unknown, mediaType = 'application/json'): void {
  const op = doc.paths[template]?.[method.toLowerCase() as (typeof METHODS)[number]];
  expect(op, `${method} ${template} is documented`).toBeDefined();
  const response = op?.responses[String(status)] as ResponseOrRef | undefined;
  expect(response, `${method} ${template} documents status ${status}`).toBeDefined();
  if (response === undefined) return;
  const base =
    '$ref' in response ? response.$ref.slice(2).split('/') : ['paths', template, method.toLowerCase(), 'responses', String(status)];
  const resolved = ('$ref' in response ? resolve(response.$ref) : response) as { content?: Record<string, unknown> };
  if (resolved.content === undefined) {
    expect(body, `${method} ${template} ${status} has no body`).toSatisfy((b: unknown) => b === null || b === '');
  } else {
    expect(Object.keys(resolved.content), `${method} ${template} ${status} content types`).toContain(mediaType);
    if (mediaType === 'application/json') {
      const validate = validatorAt(pointer(...base, 'content', mediaType, 'schema'));
      const ok = validate(body);
      expect(ok ? [] : validate.errors, `${method} ${template} ${status}: ${JSON.stringify(body).slice(0, 300)}`).toEqual([]);
    }
  }
  validated.add(`${method.toUpperCase()} ${template} ${status}`);
}

/** A server-sent event's data against the document's `x-events` for that event name. */
function expectDocumentedEvent(method: string, template: string, event: string, data: unknown): void {
  const ptr = pointer('paths', template, method.toLowerCase(), 'responses', '200', 'content', 'text/event-stream', 'x-events', event);
  expect(resolve(`#/${ptr}`), `${method} ${template} documents event ${event}`).toBeDefined();
  const validate = validatorAt(ptr);
  const ok = validate(data);
  expect(ok ? [] : validate.errors, `${template} event ${event}: ${JSON.stringify(data).slice(0, 300)}`).toEqual([]);
  validated.add(`${method.toUpperCase()} ${template} 200`);
}

/** Calls `METHOD template` with its path parameters filled in, and validates what comes back. */
async function api(
  method: string,
  template: string,
  params: Record<string, string>,
  opts: CallOptions & { query?: string } = {},
): Promise<Reply> {
  const path = template.replace(/\{(\w+)\}/g, (_, n: string) => {
    const v = params[n];
    if (v === undefined) throw new Error(`no value for {${n}}`);
    return encodeURIComponent(v);
  });
  const r = await call(t.url, method, `${path}${opts.query ? `?${opts.query}` : ''}`, opts);
  expectDocumented(method, template, r.status, r.body);
  return r;
}

interface SseEvent {
  event: string;
  id?: string;
  data: unknown;
}

/** Reads server-sent events until `enough` says so (or `ms` passes), then hangs up. */
async function readEvents(path: string, token: string, enough: (events: SseEvent[]) => boolean, ms = 10_000): Promise<SseEvent[]> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  const events: SseEvent[] = [];
  try {
    const res = await fetch(`${t.url}${path}`, { headers: { authorization: `Bearer ${token}` }, signal: abort.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body?.getReader();
    if (!reader) throw new Error('no body');
    const decoder = new TextDecoder();
    let buffer = '';
    while (!enough(events)) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end = buffer.indexOf('\n\n');
      while (end >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const fields: Record<string, string> = {};
        for (const line of block.split('\n')) {
          const m = /^(event|data|id): ?(.*)$/.exec(line);
          if (m?.[1] && m[2] !== undefined) fields[m[1]] = m[2];
        }
        if (fields.event && fields.data !== undefined) {
          events.push({ event: fields.event, ...(fields.id && { id: fields.id }), data: JSON.parse(fields.data) });
        }
        end = buffer.indexOf('\n\n');
      }
    }
    return events;
  } catch (err) {
    if (abort.signal.aborted) return events;
    throw err;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
}

describe('the document', () => {
  it('is OpenAPI 3.1 in shape: version, info, unique operation ids, declared path parameters, tags', () => {
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.info.title).toBe('ImagePod API');
    expect(doc.info.version).toMatch(/^\d+\.\d+\.\d+/);
    const ops = operationsOf(doc);
    const ids = ops.map((o) => o.op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    const tagNames = new Set(doc.tags.map((x) => x.name));
    for (const { method, path, op } of ops) {
      const where = `${method} ${path}`;
      expect(path, where).toMatch(/^\//);
      expect(Object.keys(op.responses).length, where).toBeGreaterThan(0);
      for (const status of Object.keys(op.responses)) expect(status, where).toMatch(/^[1-5]\d\d$/);
      for (const tag of op.tags) expect(tagNames.has(tag), `${where} tag ${tag}`).toBe(true);
      // Every {param} in the path is a required path parameter, and nothing else is.
      const inPath = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      const declared = (op.parameters ?? []).filter((p) => p.in === 'path');
      expect(declared.map((p) => p.name).sort(), where).toEqual([...inPath].sort());
      for (const p of declared) expect(p.required, `${where} ${p.name}`).toBe(true);
      // Security names only schemes the document defines; a route with callers needs credentials.
      for (const req of op.security) for (const name of Object.keys(req)) expect(doc.components.securitySchemes[name], name).toBeDefined();
      expect(op.security.length > 0, where).toBe(op['x-callers'].length > 0);
    }
  });

  it('every $ref resolves, and every schema compiles as JSON Schema 2020-12', () => {
    const refs: string[] = [];
    const walk = (v: unknown) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (v !== null && typeof v === 'object') {
        for (const [k, x] of Object.entries(v)) {
          if (k === '$ref' && typeof x === 'string') refs.push(x);
          else walk(x);
        }
      }
    };
    walk(doc);
    expect(refs.length).toBeGreaterThan(50);
    for (const ref of refs) expect(resolve(ref), ref).toBeDefined();
    for (const name of Object.keys(doc.components.schemas)) {
      expect(() => validatorAt(pointer('components', 'schemas', name)), name).not.toThrow();
    }
  });

  it('documents every route the app serves, and only those', () => {
    const routes: AppRoute[] = expressRoutes(appOf(t.api.server));
    const served = new Set<string>();
    for (const r of routes) {
      const key = `${r.method} ${r.path}`;
      if (key in NOT_DOCUMENTED) continue;
      served.add(`${r.method} ${toTemplate(r.path)}`);
    }
    const documented = new Set(operationsOf(doc).map((o) => `${o.method} ${o.path}`));
    expect(
      [...served].filter((r) => !documented.has(r)),
      'routes missing from the document',
    ).toEqual([]);
    expect(
      [...documented].filter((r) => !served.has(r)),
      'documented routes the app does not serve',
    ).toEqual([]);
    expect(served.size).toBeGreaterThan(30);
  });

  it('the guards admit exactly the callers the document names', async () => {
    const node = await registerNode(t, { ...RTX_4090_NODE, node_name: 'guard-probe' });
    const tokens = { user: t.tokens.alice, admin: t.tokens.admin, agent: node.apiKey, registrar: t.registrationToken } as const;
    const admits = (callers: string[], kind: keyof typeof tokens) =>
      callers.includes(kind) || (kind === 'admin' && callers.includes('user'));
    const example = Object.fromEntries(Object.values(PATH_PARAMS).map((p) => [p.name, p.example]));
    for (const { method, path, op } of operationsOf(doc)) {
      if (op['x-callers'].length === 0) continue;
      const url = path.replace(/\{(\w+)\}/g, (_, n: string) => example[n] ?? n);
      for (const kind of Object.keys(tokens) as (keyof typeof tokens)[]) {
        const abort = new AbortController();
        const res = await fetch(`${t.url}${url}`, {
          method,
          headers: { authorization: `Bearer ${tokens[kind]}`, 'content-type': 'application/json' },
          ...(method !== 'GET' && { body: '{}' }),
          signal: abort.signal,
        });
        // A stream (GET /events) is only opened: its status says enough.
        const text = res.headers.get('content-type')?.startsWith('text/event-stream') ? '' : await res.text();
        abort.abort();
        const guarded = res.status === 403 && text.includes('this route requires');
        expect(guarded, `${kind} on ${method} ${path}: ${res.status} ${text.slice(0, 120)}`).toBe(!admits(op['x-callers'], kind));
      }
    }
  });
});

describe('real answers validate against the document', () => {
  const P = '/gpu-workers';
  const ids = { node_id: '', agent_id: '', api_key: '', node2_id: '', agent2_key: '', job_id: '', batch_job_id: '' };

  it('health, metrics, the document and the reference page', async () => {
    await api('GET', '/healthz', {});
    await api('GET', '/readyz', {});
    await api('GET', '/openapi.json', {});
    const metrics = await call(t.url, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    expectDocumented('GET', '/metrics', 200, metrics.text, 'text/plain');

    const page = await call(t.url, 'GET', '/docs');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expectDocumented('GET', '/docs', 200, page.text, 'text/html');
    expect(page.text).toMatch(/^<!doctype html>/);
    expect(page.text).not.toMatch(/<script|https?:\/\/(?!json-schema\.org)/);
    for (const { method, path, op } of operationsOf(doc)) {
      expect(page.text, `${method} ${path}`).toContain(
        `<span class="method m-${method.toLowerCase()}">${method}</span> <code class="path">${path}</code>`,
      );
      expect(page.text).toContain(`id="${op.operationId}"`);
    }
    for (const name of Object.keys(doc.components.schemas)) expect(page.text).toContain(`id="schema-${name}"`);
  });

  it('nodes and agents: register, heartbeat, read, administer', async () => {
    const reg = await api('POST', `${P}/nodes/register`, {}, { token: t.registrationToken, body: RTX_4090_NODE });
    expect(reg.status).toBe(201);
    Object.assign(ids, { node_id: reg.body.node_id, agent_id: reg.body.agent_id, api_key: reg.body.api_key });
    expect((await api('POST', `${P}/nodes/register`, {}, { token: t.registrationToken, body: RTX_4090_NODE })).status).toBe(409);

    const agent = await api(
      'POST',
      `${P}/agents/register`,
      {},
      {
        token: t.registrationToken,
        body: { agent_version: '1.0.0', executor: 'process', node: { ...RTX_4090_NODE, node_name: 'gpu-server-2' } },
      },
    );
    expect(agent.status).toBe(201);
    Object.assign(ids, { node2_id: agent.body.node_id, agent2_key: agent.body.api_key });

    const hb = await api(
      'POST',
      `${P}/nodes/{node_id}/heartbeat`,
      { node_id: ids.node_id },
      {
        token: ids.api_key,
        body: {
          gpus: [
            { index: 0, memory_free: 20000, utilization: 10, temperature: 50 },
            { index: 1, memory_free: 24576 },
          ],
          cpu_cores_available: 14,
          memory_available: 30000,
          current_jobs: 0,
        },
      },
    );
    expect(hb.status).toBe(200);
    expect((await api('POST', `${P}/nodes/{node_id}/heartbeat`, { node_id: ids.node2_id }, { token: ids.api_key, body: {} })).status).toBe(
      400,
    );

    expect((await api('GET', `${P}/nodes`, {}, { token: t.tokens.alice, query: 'limit=1' })).body.items).toHaveLength(1);
    await api('GET', `${P}/nodes`, {}, { token: t.tokens.alice, query: 'status=online' });
    await api('GET', `${P}/nodes/{node_id}`, { node_id: ids.node_id }, { token: t.tokens.alice });
    await api('GET', `${P}/nodes/{node_id}`, { node_id: ids.node_id }, { token: ids.api_key });
    expect((await api('GET', `${P}/nodes/{node_id}`, { node_id: ids.node2_id }, { token: ids.api_key })).status).toBe(404);
    await api('GET', `${P}/nodes/{node_id}/stats`, { node_id: ids.node_id }, { token: t.tokens.alice });
    const fit = await api('GET', `${P}/available-nodes`, {}, { token: t.tokens.alice, query: 'gpu_memory_required=4096' });
    expect(fit.body.items.map((n: { node_id: string }) => n.node_id)).toEqual([ids.node_id]);
    expect((await api('GET', `${P}/available-nodes`, {}, { token: t.tokens.alice, query: 'gpu_count=x' })).status).toBe(400);

    await api('GET', `${P}/agents/{agent_id}`, { agent_id: ids.agent_id }, { token: ids.api_key });
    await api('GET', `${P}/agents/{agent_id}/config`, { agent_id: ids.agent_id }, { token: ids.api_key });
    await api('GET', `${P}/agents/{agent_id}`, { agent_id: ids.agent_id }, { token: t.tokens.admin });

    const admin = { token: t.tokens.admin };
    const n2 = { node_id: ids.node2_id };
    await api('PATCH', `${P}/nodes/{node_id}`, n2, { ...admin, body: { price_per_gpu_hour: 2.4, labels: { zone: 'eu-1' } } });
    expect((await api('PATCH', `${P}/nodes/{node_id}`, n2, { ...admin, body: { colour: 'blue' } })).status).toBe(400);
    expect((await api('POST', `${P}/nodes/{node_id}/cordon`, n2, admin)).body.admin_state).toBe('cordoned');
    await api('POST', `${P}/nodes/{node_id}/uncordon`, n2, admin);
    await api('POST', `${P}/nodes/{node_id}/drain`, n2, admin);
    expect((await api('POST', `${P}/nodes/{node_id}/drain`, n2, { token: t.tokens.alice })).status).toBe(403);
    expect((await api('DELETE', `${P}/nodes/{node_id}`, n2, admin)).status).toBe(204);
    expect((await api('DELETE', `${P}/nodes/{node_id}`, n2, admin)).status).toBe(404);
  });

  it('jobs: submit, list, read, report as the agent, logs, cancel', async () => {
    const alice = { token: t.tokens.alice };
    const created = await api(
      'POST',
      `${P}/jobs`,
      {},
      { ...alice, body: { job_name: 'train', docker_image: 'busybox', gpu_memory_required: 4096 } },
    );
    expect(created.status).toBe(201);
    ids.job_id = created.body.id;
    expect((await api('POST', `${P}/jobs`, {}, { ...alice, body: { docker_image: 'busybox', gpu_count: 99 } })).status).toBe(400);
    expect((await api('POST', `${P}/jobs`, {}, { body: { docker_image: 'busybox' } })).status).toBe(401);

    const batch = await api(
      'POST',
      `${P}/jobs/batch`,
      {},
      {
        ...alice,
        body: { jobs: [{ docker_image: 'busybox', input_data: { n: [1, 'two', null, { deep: true }] } }, { docker_image: 'busybox' }] },
      },
    );
    expect(batch.status).toBe(201);
    ids.batch_job_id = batch.body.items[0].id;

    await api('GET', `${P}/jobs`, {}, { ...alice, query: 'limit=2' });
    await api('GET', `${P}/jobs`, {}, { token: t.tokens.admin, query: 'user_id=alice&status=queued' });
    expect((await api('GET', `${P}/jobs`, {}, { ...alice, query: 'status=lost' })).status).toBe(400);
    const job = await api('GET', `${P}/jobs/{job_id}`, { job_id: ids.job_id }, alice);
    expect(job.body.wait_reason).toEqual(expect.any(String));
    expect((await api('GET', `${P}/jobs/{job_id}`, { job_id: randomUUID() }, alice)).status).toBe(404);
    expect((await api('GET', `${P}/jobs/{job_id}`, { job_id: ids.job_id }, { token: t.tokens.bob })).status).toBe(404);

    // The node's agent claims the GPU job and reports on it.
    const { token: lock } = await claimer.claim('gpu-8g');
    const agent = { token: ids.api_key };
    const job1 = { job_id: ids.job_id };
    expect(
      (await api('POST', `${P}/jobs/{job_id}/status`, job1, { ...agent, body: { status: 'assigned', lock_token: lock, gpu_indices: [0] } }))
        .status,
    ).toBe(200);
    await api('GET', `${P}/jobs/{job_id}`, job1, agent);
    expect(
      (
        await api('POST', `${P}/jobs/{job_id}/status`, job1, {
          ...agent,
          body: { status: 'assigned', lock_token: 'stale', gpu_indices: [0] },
        })
      ).status,
    ).toBe(409);
    const logs = await api('POST', `${P}/jobs/{job_id}/logs`, job1, {
      ...agent,
      body: {
        lock_token: lock,
        lines: [
          { stream: 'stdout', text: 'epoch 1' },
          { stream: 'stderr', text: 'warning' },
        ],
      },
    });
    expect(logs.status).toBe(202);
    const reports = await api(
      'POST',
      `${P}/jobs/status/batch`,
      {},
      {
        ...agent,
        body: {
          reports: [
            { job_id: ids.job_id, status: 'running', lock_token: lock, progress: 10 },
            { job_id: randomUUID(), status: 'running', lock_token: lock },
          ],
        },
      },
    );
    expect(reports.body.results.map((r: { ok: boolean }) => r.ok)).toEqual([true, false]);
    const done = await api('POST', `${P}/jobs/{job_id}/status`, job1, {
      ...agent,
      body: { status: 'succeeded', lock_token: lock, exit_code: 0, result: { accuracy: 0.93, curve: [0.1, 0.5] } },
    });
    expect(done.body.status).toBe('succeeded');

    const page = await api('GET', `${P}/jobs/{job_id}/logs`, job1, { ...alice, query: 'limit=1' });
    expect(page.body.items).toHaveLength(1);
    await api('GET', `${P}/jobs/{job_id}/logs`, job1, { ...agent, query: `after=${page.body.next_cursor}` });
    expect((await api('GET', `${P}/jobs/{job_id}/logs`, job1, { ...alice, query: 'after=nope' })).status).toBe(400);
    const followed = await readEvents(`${P}/jobs/${ids.job_id}/logs?follow=true`, t.tokens.alice, (es) =>
      es.some((e) => e.event === 'end'),
    );
    expect(followed.map((e) => e.event)).toContain('line');
    expect(followed.at(-1)).toMatchObject({ event: 'end', data: { status: 'succeeded' } });
    for (const e of followed) expectDocumentedEvent('GET', `${P}/jobs/{job_id}/logs`, e.event, e.data);

    const cancelled = await api('POST', `${P}/jobs/{job_id}/cancel`, { job_id: ids.batch_job_id }, alice);
    expect(cancelled.body.status).toBe('cancelled');
    expect((await api('POST', `${P}/jobs/{job_id}/cancel`, { job_id: ids.batch_job_id }, alice)).status).toBe(409);
  });

  it('accounting and webhook secrets', async () => {
    const alice = { token: t.tokens.alice };
    await api('GET', `${P}/usage`, {}, alice);
    await api('GET', `${P}/usage`, {}, { token: t.tokens.admin, query: 'group_by=node' });
    expect((await api('GET', `${P}/usage`, {}, { ...alice, query: 'user_id=bob' })).status).toBe(403);
    await api('GET', `${P}/users/{user_id}/limits`, { user_id: 'alice' }, alice);
    await api(
      'PUT',
      `${P}/users/{user_id}/limits`,
      { user_id: 'alice' },
      { token: t.tokens.admin, body: { money_budget: 100, budget_period: 'month' } },
    );
    expect((await api('PUT', `${P}/users/{user_id}/limits`, { user_id: 'alice' }, { ...alice, body: {} })).status).toBe(403);

    await api('GET', `${P}/users/{user_id}/webhook-secret`, { user_id: 'alice' }, alice);
    await api('POST', `${P}/users/{user_id}/webhook-secret/rotate`, { user_id: 'alice' }, alice);
  });

  it('identity, tokens and the session', async () => {
    expect((await api('GET', `${P}/me`, {}, { token: t.tokens.alice })).body).toMatchObject({ kind: 'user', user_id: 'alice' });
    await api('GET', `${P}/me`, {}, { token: ids.api_key });
    await api('GET', `${P}/me`, {}, { token: t.registrationToken });
    expect((await api('GET', `${P}/me`, {}, { token: 'not-a-token' })).status).toBe(401);
    expect((await api('POST', `${P}/tokens`, {}, { token: t.tokens.admin, body: { user_id: 'carol', ttl: '1h' } })).status).toBe(201);

    const session = await api('POST', `${P}/session`, {}, { body: { token: t.tokens.alice } });
    expect(session.status).toBe(204);
    expect(session.headers.get('set-cookie')).toMatch(/^imagepod_session=/);
    expect((await api('POST', `${P}/session`, {}, { body: { token: 'nope' } })).status).toBe(401);
    expect((await api('DELETE', `${P}/session`, {})).status).toBe(204);
  });

  it('the overview: queues, timeline, and the event stream', async () => {
    const alice = { token: t.tokens.alice };
    await api('GET', `${P}/queues`, {}, alice);
    await api('GET', `${P}/stats/timeline`, {}, { ...alice, query: 'minutes=5' });
    expect((await api('GET', `${P}/stats/timeline`, {}, { ...alice, query: 'minutes=0' })).status).toBe(400);

    const stream = readEvents(
      `${P}/events`,
      t.tokens.alice,
      (es) => es.some((e) => e.event === 'tick') && es.some((e) => e.event === 'job'),
    );
    // A status change to see on it, once the stream has had time to open.
    await new Promise((r) => setTimeout(r, 300));
    await api('POST', `${P}/jobs`, {}, { ...alice, body: { docker_image: 'busybox' } });
    const events = await stream;
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(['tick', 'job']));
    for (const e of events) expectDocumentedEvent('GET', `${P}/events`, e.event, e.data);
  });

  it('every documented operation was answered, and validated, at least once', () => {
    const missing = operationsOf(doc)
      .filter(
        ({ method, path, op }) => !Object.keys(op.responses).some((s) => s.startsWith('2') && validated.has(`${method} ${path} ${s}`)),
      )
      .map(({ method, path }) => `${method} ${path}`);
    expect(missing).toEqual([]);
  });
});
