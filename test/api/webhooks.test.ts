import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { verifyWebhook } from '../../src/domain/webhooks.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';

/** A real HTTP receiver on 127.0.0.1 that records what it gets and answers as told, per path. */
interface Received {
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}
interface Receiver {
  readonly url: string;
  readonly received: Received[];
  /** Status codes to answer on a path, in order; then 200. */
  plan(path: string, codes: number[]): void;
  on(path: string): Received[];
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const received: Received[] = [];
  const plans = new Map<string, number[]>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      const path = req.url ?? '/';
      received.push({ path, headers: req.headers, body });
      const code = plans.get(path)?.shift() ?? 200;
      // 0: never answer.
      if (code === 0) return;
      res.statusCode = code;
      if (code >= 300 && code < 400) res.setHeader('Location', '/elsewhere');
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    plan: (path, codes) => plans.set(path, [...codes]),
    on: (path) => received.filter((r) => r.path === path),
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let t: TestApi;
/** A second API with no allow-list, for the address rules; no agent serves it. */
let strict: TestApi;
let receiver: Receiver;
const agents: Agent[] = [];

beforeAll(async () => {
  receiver = await startReceiver();
  t = await startTestApi('webhooks', {
    IMAGEPOD_WEBHOOK_ALLOW: '127.0.0.1',
    IMAGEPOD_WEBHOOK_BACKOFF_MS: '100',
    IMAGEPOD_WEBHOOK_ATTEMPTS: '4',
    IMAGEPOD_WEBHOOK_TIMEOUT_MS: '1000',
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200',
    IMAGEPOD_HEARTBEAT_TTL_MS: '1000',
  });
  strict = await startTestApi('webhooks-strict');
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop(0)));
});
afterAll(async () => {
  await Promise.all([t?.close(), strict?.close(), receiver?.close()]);
});

const quickJob = (extra: Record<string, unknown> = {}) => ({
  docker_image: 'busybox',
  command: ['sh', '-c', 'echo done'],
  memory_required: 64,
  ...extra,
});
/** A job no agent will take (no node has this name), to end it by cancelling. */
const parkedJob = (extra: Record<string, unknown> = {}) => quickJob({ node_name: 'no-such-node', ...extra });

async function submit(api: TestApi, body: Record<string, unknown>, token = api.tokens.alice): Promise<string> {
  const r = await api.req('POST', '/jobs/', { token, body });
  if (r.status !== 201) throw new Error(`submit: ${r.status} ${r.text}`);
  return r.body.id;
}
const view = async (api: TestApi, id: string) => (await api.req('GET', `/jobs/${id}`, { token: api.tokens.alice })).body;
const webhookSettled = (api: TestApi, id: string) =>
  waitFor(`job ${id} webhook settled`, async () => {
    const v = await view(api, id);
    return v.webhook_status === 'delivered' || v.webhook_status === 'failed' ? v : undefined;
  });
const secretOf = async (api: TestApi, user: string, token: string) =>
  (await api.req('GET', `/users/${user}/webhook-secret`, { token })).body.secret as string;
const withoutWebhookState = ({ webhook_status, webhook_deliveries, ...rest }: Record<string, unknown>) => rest;

describe('webhook secrets', () => {
  it('are per user: made on first read, the same after, readable by the user and admins only', async () => {
    const first = await t.req('GET', '/users/alice/webhook-secret', { token: t.tokens.alice });
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ secret: expect.stringMatching(/^whsec_[A-Za-z0-9_-]{43}$/), created_at: expect.any(String) });
    expect((await t.req('GET', '/users/alice/webhook-secret', { token: t.tokens.alice })).body).toEqual(first.body);
    expect((await t.req('GET', '/users/alice/webhook-secret', { token: t.tokens.admin })).body.secret).toBe(first.body.secret);

    const bobs = await t.req('GET', '/users/alice/webhook-secret', { token: t.tokens.bob });
    expect(bobs.status).toBe(403);
    expect(bobs.text).not.toContain(first.body.secret);
    expect((await t.req('POST', '/users/alice/webhook-secret/rotate', { token: t.tokens.bob })).status).toBe(403);
    expect(await secretOf(t, 'bob', t.tokens.bob)).not.toBe(first.body.secret);
  });
});

describe('delivery', () => {
  it('POSTs the finished job once, signed with the owner secret', async () => {
    const a = await startAgent(t);
    agents.push(a);
    const secret = await secretOf(t, 'alice', t.tokens.alice);
    const id = await submit(t, quickJob({ webhook_url: `${receiver.url}/once` }));
    const settled = await webhookSettled(t, id);

    expect(settled).toMatchObject({ status: 'succeeded', webhook_url: `${receiver.url}/once`, webhook_status: 'delivered' });
    expect(settled.webhook_deliveries).toEqual([
      { attempt: 1, at: expect.any(String), status_code: 200, error: null, duration_ms: expect.any(Number) },
    ]);
    const got = receiver.on('/once');
    expect(got).toHaveLength(1);
    const [hook] = got;
    if (hook === undefined) throw new Error('unreachable');
    expect(hook.headers).toMatchObject({
      'content-type': 'application/json',
      'user-agent': 'ImagePod-Webhook/1',
      'x-imagepod-event': 'job.finished',
      'x-imagepod-delivery': id,
      'x-imagepod-timestamp': expect.stringMatching(/^\d+$/),
      'x-imagepod-signature': expect.stringMatching(/^sha256=[0-9a-f]{64}$/),
    });
    const h = hook.headers as Record<string, string>;
    expect(verifyWebhook(secret, h['x-imagepod-timestamp'] ?? '', hook.body, h['x-imagepod-signature'] ?? '')).toBe(true);
    expect(verifyWebhook(secret, h['x-imagepod-timestamp'] ?? '', `${hook.body} `, h['x-imagepod-signature'] ?? '')).toBe(false);
    // The body is the job as GET /jobs/{id} shows it (whose webhook fields have moved on since).
    expect(withoutWebhookState(JSON.parse(hook.body))).toEqual(withoutWebhookState(settled));
  });

  it('retries with backoff until the receiver answers 2xx, and shows every attempt', async () => {
    receiver.plan('/flaky', [500, 503]);
    const id = await submit(t, parkedJob({ webhook_url: `${receiver.url}/flaky` }));
    expect((await view(t, id)).webhook_status).toBe('pending');
    await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
    const settled = await webhookSettled(t, id);
    expect(settled.webhook_status).toBe('delivered');
    expect(settled.webhook_deliveries.map((d: { attempt: number; status_code: number | null }) => [d.attempt, d.status_code])).toEqual([
      [1, 500],
      [2, 503],
      [3, 200],
    ]);
    expect(settled.webhook_deliveries[0].error).toBe('the receiver answered 500');
    expect(receiver.on('/flaky')).toHaveLength(3);
  });

  it('counts no answer in time and a redirect as failures (redirects are not followed)', async () => {
    receiver.plan('/slow', [0, 302]);
    const id = await submit(t, parkedJob({ webhook_url: `${receiver.url}/slow` }));
    await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
    const settled = await webhookSettled(t, id);
    expect(settled.webhook_status).toBe('delivered');
    expect(settled.webhook_deliveries.map((d: { status_code: number | null; error: string | null }) => [d.status_code, d.error])).toEqual([
      [null, 'no answer within 1 s'],
      [302, 'redirects are not followed'],
      [200, null],
    ]);
    expect(receiver.on('/elsewhere')).toHaveLength(0);
  });

  it('gives up after the configured attempts', async () => {
    receiver.plan('/down', [500, 500, 500, 500, 500]);
    const id = await submit(t, parkedJob({ webhook_url: `${receiver.url}/down` }));
    await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
    const settled = await webhookSettled(t, id);
    expect(settled.webhook_status).toBe('failed');
    expect(settled.webhook_deliveries).toHaveLength(4);
  });

  it('signs with the new secret after rotation', async () => {
    const old = await secretOf(t, 'alice', t.tokens.alice);
    const rotated = await t.req('POST', '/users/alice/webhook-secret/rotate', { token: t.tokens.alice });
    expect(rotated.status).toBe(200);
    expect(rotated.body.secret).not.toBe(old);
    expect(await secretOf(t, 'alice', t.tokens.alice)).toBe(rotated.body.secret);

    const id = await submit(t, parkedJob({ webhook_url: `${receiver.url}/rotated` }));
    await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
    expect((await webhookSettled(t, id)).webhook_status).toBe('delivered');
    const [hook] = receiver.on('/rotated');
    const h = hook?.headers as Record<string, string>;
    const check = (secret: string) =>
      verifyWebhook(secret, h['x-imagepod-timestamp'] ?? '', hook?.body ?? '', h['x-imagepod-signature'] ?? '');
    expect(JSON.parse(hook?.body ?? '{}')).toMatchObject({ id, status: 'cancelled' });
    expect(check(rotated.body.secret)).toBe(true);
    expect(check(old)).toBe(false);
  });

  it('a job without webhook_url shows no webhook state', async () => {
    const id = await submit(t, parkedJob());
    expect(await view(t, id)).toMatchObject({ webhook_url: null, webhook_status: null, webhook_deliveries: [] });
  });
});

describe('addresses webhooks may not reach', () => {
  it('refuses a literal internal address at submission, naming webhook_url', async () => {
    for (const url of ['http://127.0.0.1:9/hook', 'http://169.254.169.254/latest/meta-data/', 'http://[::1]/', 'http://10.0.0.1/']) {
      const r = await strict.req('POST', '/jobs/', { token: strict.tokens.alice, body: parkedJob({ webhook_url: url }) });
      expect(r.status, url).toBe(400);
      expect(r.body.fields.map((f: { field: string }) => f.field)).toEqual(['webhook_url']);
    }
    const batch = await strict.req('POST', '/jobs/batch', {
      token: strict.tokens.alice,
      body: { jobs: [parkedJob(), parkedJob({ webhook_url: 'http://169.254.169.254/' })] },
    });
    expect(batch.status).toBe(400);
    expect(batch.body.fields.map((f: { field: string }) => f.field)).toEqual(['jobs.1.webhook_url']);
    const ftp = await strict.req('POST', '/jobs/', { token: strict.tokens.alice, body: parkedJob({ webhook_url: 'ftp://example.com/' }) });
    expect(ftp.status).toBe(400);
  });

  it('refuses at delivery a host name that resolves to loopback, and says why', async () => {
    const port = new URL(receiver.url).port;
    const path = '/via-localhost';
    const id = await submit(strict, parkedJob({ webhook_url: `http://localhost:${port}${path}` }));
    await strict.req('POST', `/jobs/${id}/cancel`, { token: strict.tokens.alice });
    const settled = await webhookSettled(strict, id);
    expect(settled.webhook_status).toBe('failed');
    // Refused, not retried: nothing on the other side could change that.
    expect(settled.webhook_deliveries).toHaveLength(1);
    expect(settled.webhook_deliveries[0]).toMatchObject({
      status_code: null,
      error: expect.stringMatching(/^localhost resolves to .*loopback/),
    });
    expect(receiver.on(path)).toHaveLength(0);
  });
});

describe('POST /jobs?wait=', () => {
  it('answers 200 with the finished job when it ends in time', async () => {
    const a = await startAgent(t);
    agents.push(a);
    const r = await t.req('POST', '/jobs/?wait=20', { token: t.tokens.alice, body: quickJob() });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ status: 'succeeded', exit_code: 0, node_id: a.identity.node_id, cost: expect.any(Number) });
    expect(r.headers.get('location')).toBe(`/gpu-workers/jobs/${r.body.id}`);
  });

  it('answers 201 with the job as it is when it has not ended', async () => {
    const r = await strict.req('POST', '/jobs/?wait=1', { token: strict.tokens.alice, body: quickJob() });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ status: 'queued', wait_reason: expect.any(String) });
  });

  it('refuses a wait that is not between 0 and the maximum, naming wait', async () => {
    for (const wait of ['0', '-1', 'abc', '301', '']) {
      const r = await strict.req('POST', `/jobs/?wait=${wait}`, { token: strict.tokens.alice, body: quickJob() });
      expect(r.status, `wait=${wait}`).toBe(400);
      expect(r.body.fields.map((f: { field: string }) => f.field)).toEqual(['wait']);
    }
  });
});
