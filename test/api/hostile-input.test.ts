import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { API_BASE } from '../../src/http/app.js';
import { MAX_JSON_DEPTH } from '../../src/http/json-body.js';
import { type OperationSpec, operations } from '../../src/http/openapi/operations.js';
import { Keys } from '../../src/redis/keys.js';
import { RTX_4090_NODE, registerNode, startTestApi, type TestApi } from '../support/api.js';

/**
 * Regressions for what the fuzzer (test/fuzz/routes.test.ts) found, each once a 500 or worse, and
 * the rule for unknown fields: bodies and query strings are strict on every route (a field a
 * route does not take is a 400 naming it), headers a route does not use are ignored.
 */

let t: TestApi;
let ops: OperationSpec[];
let agentKey = '';
beforeAll(async () => {
  t = await startTestApi('hostile-input');
  const config = t.api.context.config;
  ops = operations({ apiBase: API_BASE, pageSizeMax: config.limits.pageSizeMax, jobWaitMaxSeconds: config.jobWaitMaxSeconds });
  agentKey = (await registerNode(t, RTX_4090_NODE)).apiKey;
});
/** What the fuzzer found, each fixed in src and held by a test below: the figures for the README. */
const FOUND_BY_THE_FUZZER = [
  'a path parameter that is not valid percent-encoding (/jobs/%zz) was a 500',
  'JSON nested 10,000 deep (input_data, result) overflowed the stack: a 500',
  'a body that does not inflate with its Content-Encoding was a 500',
  'a log line dated past what Date holds was stored, then every read of that log was a 500',
  'HEAD /events was never answered (and HEAD on logs?follow=true held a Redis connection until the client hung up)',
  'bytes that are not UTF-8 were read as U+FFFD instead of refused',
  'a key named __proto__ in env, node_selector, labels or input_data was silently dropped',
];
afterAll(async () => {
  await t?.close();
  mkdirSync('test/artifacts', { recursive: true });
  writeFileSync('test/artifacts/hostile-input.json', `${JSON.stringify({ bugs_found_and_fixed: FOUND_BY_THE_FUZZER }, null, 2)}\n`);
  console.log(`hostile input: ${FOUND_BY_THE_FUZZER.length} bugs found by the fuzzer and fixed, each with a regression test`);
});

/** A request with exactly these bytes and headers (fetch would rewrite some of them). */
function raw(method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; text: string }> {
  const url = new URL(t.url);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
    });
    req.setTimeout(5000, () => req.destroy(new Error(`${method} ${path}: no answer within 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const alice = () => ({ authorization: `Bearer ${t.tokens.alice}` });
const json = () => ({ ...alice(), 'content-type': 'application/json' });
const fieldsOf = (text: string): string[] => (JSON.parse(text) as { fields?: { field: string }[] }).fields?.map((f) => f.field) ?? [];

function expect400(r: { status: number; text: string }, fields: string[]): void {
  expect(r.status, r.text).toBe(400);
  expect(JSON.parse(r.text)).toMatchObject({ error: 'validation_failed', request_id: expect.any(String) });
  expect(fieldsOf(r.text)).toEqual(fields);
}

describe('found by the fuzzer', () => {
  it('a path parameter that is not valid percent-encoding is a 400 naming path (was a 500)', async () => {
    for (const path of ['/jobs/%zz', '/jobs/%E0%A4%A', '/nodes/%/stats', '/users/%C0/limits']) {
      expect400(await raw('GET', `${API_BASE}${path}`, alice()), ['path']);
    }
    // Also on a path whose route has another method: the router decodes before it looks at methods.
    expect400(await raw('DELETE', `${API_BASE}/nodes/%E0%A4%A/heartbeat`, alice()), ['path']);
  });

  it(`JSON nested deeper than ${MAX_JSON_DEPTH} levels is a 400 naming where (10,000 deep was a 500: stack overflow)`, async () => {
    const arrays = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    const objects = (n: number) => `${'{"a":'.repeat(n)}1${'}'.repeat(n)}`;
    for (const deep of [arrays(10_000), objects(10_000), arrays(MAX_JSON_DEPTH)]) {
      const body = Buffer.from(`{"docker_image":"busybox","input_data":${deep}}`);
      expect400(await raw('POST', `${API_BASE}/jobs/`, json(), body), ['input_data']);
    }
    expect400(await raw('POST', `${API_BASE}/jobs/`, json(), Buffer.from(arrays(10_000))), ['body']);
    const report = Buffer.from(`{"status":"succeeded","result":${objects(10_000)}}`);
    expect400(await raw('POST', `${API_BASE}/jobs/${randomUUID()}/status`, { ...json(), authorization: `Bearer ${agentKey}` }, report), [
      'result',
    ]);
    // Deep, but within the limit: accepted as it is.
    const ok = await t.req('POST', '/jobs/', {
      token: t.tokens.alice,
      raw: `{"docker_image":"busybox","input_data":${arrays(MAX_JSON_DEPTH - 2)}}`,
    });
    expect(ok.status, ok.text).toBe(201);
    expect(JSON.stringify(ok.body.input_data)).toBe(arrays(MAX_JSON_DEPTH - 2));
  });

  it('a body that does not inflate with its Content-Encoding is a 400 (was a 500); one that does is read', async () => {
    for (const encoding of ['gzip', 'deflate', 'br']) {
      expect400(await raw('POST', `${API_BASE}/jobs/`, { ...json(), 'content-encoding': encoding }, Buffer.from('not compressed')), [
        'body',
      ]);
    }
    // Any route, even one that is only matched after the body is read.
    expect400(await raw('PUT', '/docs', { 'content-type': 'application/json', 'content-encoding': 'gzip' }, Buffer.from('x')), ['body']);
    const zipped = await raw(
      'POST',
      `${API_BASE}/jobs/`,
      { ...json(), 'content-encoding': 'gzip' },
      gzipSync('{"docker_image":"busybox"}'),
    );
    expect(zipped.status, zipped.text).toBe(201);
  });

  it('bytes that are not UTF-8 are a 400 naming body (were read as U+FFFD)', async () => {
    for (const bad of [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80]]) {
      const body = Buffer.concat([Buffer.from('{"docker_image":"busybox","job_name":"a'), Buffer.from(bad), Buffer.from('"}')]);
      expect400(await raw('POST', `${API_BASE}/jobs/`, json(), body), ['body']);
    }
  });

  it('a key named __proto__ is a 400 naming where it is, at any depth (was silently dropped)', async () => {
    const cases: [string, string][] = [
      ['{"docker_image":"busybox","__proto__":{"isAdmin":true}}', '__proto__'],
      ['{"docker_image":"busybox","env":{"__proto__":"x"}}', 'env.__proto__'],
      ['{"docker_image":"busybox","node_selector":{"__proto__":{"zone":"x"}}}', 'node_selector.__proto__'],
      ['{"docker_image":"busybox","input_data":{"a":[{"__proto__":{"polluted":1}}]}}', 'input_data.a.0.__proto__'],
    ];
    for (const [body, field] of cases) expect400(await raw('POST', `${API_BASE}/jobs/`, json(), Buffer.from(body)), [field]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    // `constructor` and `prototype` are only words: kept as data.
    const data = { constructor: { prototype: { polluted: 1 } }, prototype: 'x' };
    const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, raw: JSON.stringify({ docker_image: 'busybox', input_data: data }) });
    expect(r.status).toBe(201);
    expect(r.body.input_data).toEqual(data);
  });

  it('a log line dated past year 9999 is a 400 (it was stored, and every read of the log was a 500)', async () => {
    const id = (await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { docker_image: 'busybox' } })).body.id as string;
    const append = await t.req('POST', `/jobs/${id}/logs`, {
      token: t.tokens.admin,
      body: { lines: [{ stream: 'stdout', text: 'x', time: 4503599627370495 }] },
    });
    expect(append.status).toBe(400);
    expect(append.body.fields.map((f: { field: string }) => f.field)).toEqual(['lines.0.time']);
    // A line stored before the limit existed still reads.
    await t.redis.xadd(new Keys(t.prefix).jobLog('cpu', id), '*', 't', '99999999999999999999', 's', 'stdout', 'm', 'old');
    const read = await t.req('GET', `/jobs/${id}/logs`, { token: t.tokens.alice });
    expect(read.status, read.text).toBe(200);
    expect(read.body.items.map((l: { text: string }) => l.text)).toEqual(['old']);
  });

  it('HEAD on a stream answers with its headers at once (it was never answered)', async () => {
    const id = (await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { docker_image: 'busybox' } })).body.id as string;
    expect((await raw('HEAD', `${API_BASE}/events`, alice())).status).toBe(200);
    expect((await raw('HEAD', `${API_BASE}/jobs/${id}/logs?follow=true`, alice())).status).toBe(200);
  });
});

const ofSchema = (s: z.ZodType) => z.toJSONSchema(s, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;

/** Every object schema with named properties that would let other properties through. */
function lenientObjects(schema: unknown, at = '$'): string[] {
  if (Array.isArray(schema)) return schema.flatMap((s, i) => lenientObjects(s, `${at}[${i}]`));
  if (schema === null || typeof schema !== 'object') return [];
  const s = schema as Record<string, unknown>;
  const own = s.properties !== undefined && s.additionalProperties !== false ? [at] : [];
  return [...own, ...Object.entries(s).flatMap(([k, v]) => lenientObjects(v, `${at}.${k}`))];
}

/** A credential each route admits, so the answer is about the input, not who asks. */
function tokenFor(op: OperationSpec): Record<string, string> {
  if (op.callers.length === 0) return {};
  if (op.callers.includes('user') || op.callers.includes('admin')) return { authorization: `Bearer ${t.tokens.admin}` };
  if (op.callers.includes('agent')) return { authorization: `Bearer ${agentKey}` };
  return { authorization: `Bearer ${t.registrationToken}` };
}

const urlOf = (op: OperationSpec) =>
  op.path
    .replace(':jobId', randomUUID())
    .replace(':nodeId', 'gpu-000000000000')
    .replace(':agentId', 'agent-000000000000')
    .replace(':userId', 'alice');

describe('unknown fields', () => {
  it('every body and query schema is a strict object, all the way down', () => {
    for (const op of ops) {
      for (const schema of [op.body, op.query]) {
        if (schema !== undefined) expect(lenientObjects(ofSchema(schema)), `${op.method} ${op.path}`).toEqual([]);
      }
    }
  });

  it('in a body, on every route that takes one, are a 400 naming the field', async () => {
    const routes = ops.filter((op) => op.body !== undefined);
    expect(routes.length).toBeGreaterThan(10);
    for (const op of routes) {
      const body = Buffer.from('{"zzz_unknown":1}');
      const r = await raw(op.method.toUpperCase(), urlOf(op), { ...tokenFor(op), 'content-type': 'application/json' }, body);
      expect(r.status, `${op.method} ${op.path}: ${r.text}`).toBe(400);
      expect(fieldsOf(r.text), `${op.method} ${op.path}`).toContain('zzz_unknown');
    }
  });

  it('in a body, on a route that takes none, are a 400 naming the field; no body, or {}, is fine', async () => {
    const id = (await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { docker_image: 'busybox' } })).body.id as string;
    const cancel = `${API_BASE}/jobs/${id}/cancel`;
    expect400(await raw('POST', cancel, json(), Buffer.from('{"force":true}')), ['force']);
    expect400(await raw('POST', cancel, json(), Buffer.from('[1]')), ['body']);
    expect400(await raw('POST', cancel, { ...alice(), 'content-type': 'text/plain' }, Buffer.from('force')), ['body']);
    // Who may ask is answered first: no credential is a 401, a caller the route refuses its 403.
    const force = Buffer.from('{"force":true}');
    expect((await raw('POST', cancel, { 'content-type': 'application/json' }, force)).status).toBe(401);
    expect((await raw('POST', cancel, { authorization: `Bearer ${agentKey}`, 'content-type': 'application/json' }, force)).status).toBe(
      403,
    );
    expect((await raw('POST', cancel, json(), Buffer.from('{}'))).status).toBe(200);
    expect((await raw('GET', `${API_BASE}/jobs/${id}`, alice())).status).toBe(200);
  });

  it('in a query string, on every route under /gpu-workers, are a 400 naming the field', async () => {
    for (const op of ops.filter((o) => o.path.startsWith(API_BASE))) {
      const r = await raw(op.method.toUpperCase(), `${urlOf(op)}?zzz_unknown=1`, {
        ...tokenFor(op),
        ...(op.method !== 'get' && op.method !== 'delete' && { 'content-type': 'application/json' }),
      });
      expect(r.status, `${op.method} ${op.path}: ${r.text}`).toBe(400);
      expect(fieldsOf(r.text), `${op.method} ${op.path}`).toContain('zzz_unknown');
    }
  });

  it('a body that is not JSON is a 400 naming body, not a body that silently is not there', async () => {
    expect400(
      await raw('POST', `${API_BASE}/jobs/`, { ...alice(), 'content-type': 'text/plain' }, Buffer.from('{"docker_image":"busybox"}')),
      ['body'],
    );
  });

  it('headers a route does not use are ignored', async () => {
    const r = await raw(
      'POST',
      `${API_BASE}/jobs/`,
      { ...json(), 'x-imagepod-role': 'admin', 'x-unknown': '1', 'x-http-method-override': 'DELETE' },
      Buffer.from('{"docker_image":"busybox"}'),
    );
    expect(r.status, r.text).toBe(201);
    expect(JSON.parse(r.text).user_id).toBe('alice');
  });
});
