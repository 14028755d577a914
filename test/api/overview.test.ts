import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { RTX_4090_NODE, registerNode, startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

let t: TestApi;
let dashboardDir: string;

beforeAll(async () => {
  dashboardDir = mkdtempSync(join(tmpdir(), 'imagepod-dash-'));
  writeFileSync(join(dashboardDir, 'index.html'), '<!doctype html><title>ImagePod dashboard</title><div id="root"></div>');
  t = await startTestApi('overview', {
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200',
    IMAGEPOD_HEARTBEAT_TTL_MS: '1000',
    IMAGEPOD_DASHBOARD_DIR: dashboardDir,
  });
});
afterAll(async () => t.close());

/** A server-sent event stream read as a browser's EventSource would, collecting events by name. */
async function openEvents(path: string, headers: Record<string, string>) {
  const ctrl = new AbortController();
  const res = await fetch(`${t.url}/gpu-workers${path}`, { headers, signal: ctrl.signal });
  const events: { event: string; data: any }[] = [];
  const done = (async () => {
    if (!res.body) return;
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event !== undefined && data !== undefined) events.push({ event, data: JSON.parse(data) });
        }
      }
    } catch {
      /* aborted */
    }
  })();
  return {
    res,
    events,
    jobEvents: (jobId: string) => events.filter((e) => e.event === 'job' && e.data.job_id === jobId).map((e) => e.data),
    async close() {
      ctrl.abort();
      await done;
    },
  };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function signIn(token: string): Promise<string> {
  const r = await t.req('POST', '/session', { body: { token } });
  expect(r.status).toBe(204);
  const cookie = r.headers.get('set-cookie') ?? '';
  return cookie.split(';')[0] as string;
}

describe('live events', () => {
  it('streams each status change of a job to its owner and to admins, not to other users, with ticks of the queues and fleet', async () => {
    const alice = await openEvents('/events', bearer(t.tokens.alice));
    const bob = await openEvents('/events', bearer(t.tokens.bob));
    const admin = await openEvents('/events', bearer(t.tokens.admin));
    expect(alice.res.headers.get('content-type')).toContain('text/event-stream');
    try {
      const jobs = jobsOf(t);
      const id = await jobs.submit({ docker_image: 'busybox', gpu_memory_required: 4096, gpu_count: 2 });
      await waitFor('queued event', async () => alice.jobEvents(id).length > 0 && admin.jobEvents(id).length > 0);
      expect(alice.jobEvents(id)[0]).toMatchObject({ job_id: id, user_id: 'alice', status: 'queued', previous: null, final: false });

      await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
      await waitFor('cancelled event', async () => alice.jobEvents(id).some((e) => e.status === 'cancelled'));
      expect(alice.jobEvents(id).at(-1)).toMatchObject({ status: 'cancelled', previous: 'queued', final: true });
      await waitFor('a tick', async () => alice.events.some((e) => e.event === 'tick'));
      const tick = alice.events.find((e) => e.event === 'tick')?.data;
      expect(tick.queues.map((q: { tier: string }) => q.tier)).toContain('gpu-8g');
      expect(tick.fleet).toMatchObject({ nodes_by_status: expect.any(Object), gpus_total: expect.any(Number) });
      expect(bob.jobEvents(id)).toEqual([]);
    } finally {
      await Promise.all([alice.close(), bob.close(), admin.close()]);
    }
  });

  it('needs a person: no credentials is 401, an agent key 403', async () => {
    expect((await t.req('GET', '/events')).status).toBe(401);
    const { apiKey } = await registerNode(t);
    expect((await t.req('GET', '/events', { token: apiKey })).status).toBe(403);
  });
});

describe('queues and the last hour', () => {
  let agent: Agent;
  afterAll(async () => agent?.stop(0));

  it('counts queued jobs and the GPU memory they ask for per tier, and says what the oldest wait for', async () => {
    const before = (await t.req('GET', '/queues', { token: t.tokens.admin })).body.items.find((q: any) => q.tier === 'gpu-48g');
    const jobs = jobsOf(t);
    const a = await jobs.submit({ docker_image: 'busybox', gpu_memory_required: 40_000, gpu_count: 2, job_name: 'big-a' });
    const b = await jobs.submit({ docker_image: 'busybox', gpu_memory_required: 30_000, gpu_count: 1, job_name: 'big-b' });
    const queues = async (token: string) => (await t.req('GET', '/queues', { token })).body.items;
    const tier = (await queues(t.tokens.admin)).find((q: any) => q.tier === 'gpu-48g');
    expect(tier.pending_jobs - before.pending_jobs).toBe(2);
    expect(tier.pending_gpu_memory_mib - before.pending_gpu_memory_mib).toBe(2 * 40_000 + 30_000);
    expect(tier).toMatchObject({ min_gpu_memory_mib: 24576, max_gpu_memory_mib: 49152 });
    expect(tier.waiting).toBeGreaterThanOrEqual(2);
    const oldest = tier.oldest_waiting.find((j: any) => j.job_id === a);
    expect(oldest).toMatchObject({ user_id: 'alice', job_name: 'big-a', gpu_count: 2, gpu_memory_mib: 40_000 });
    expect(oldest.wait_reason).toMatch(/no live node/i);
    // Bob sees the counts, not alice's jobs.
    const bobs = (await queues(t.tokens.bob)).find((q: any) => q.tier === 'gpu-48g');
    expect(bobs.oldest_waiting).toEqual([]);

    await t.req('POST', `/jobs/${a}/cancel`, { token: t.tokens.alice });
    await t.req('POST', `/jobs/${b}/cancel`, { token: t.tokens.alice });
    await waitFor('pending back down', async () => {
      const now = (await queues(t.tokens.admin)).find((q: any) => q.tier === 'gpu-48g');
      return now.pending_jobs === before.pending_jobs && now.pending_gpu_memory_mib === before.pending_gpu_memory_mib;
    });
  });

  it('shows jobs started and finished this minute, the fleet GPU memory sampled, and the pending count back to zero once a job runs', async () => {
    agent = await startAgent(t, { IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090' });
    const jobs = jobsOf(t);
    const pendingOf = async () =>
      (await t.req('GET', '/queues', { token: t.tokens.admin })).body.items.find((q: any) => q.tier === 'gpu-24g').pending_jobs;
    const counted = async () => {
      const points = (await t.req('GET', '/stats/timeline?minutes=3', { token: t.tokens.alice })).body.points as any[];
      return {
        started: points.reduce((n, p) => n + p.jobs_started, 0),
        finished: points.reduce((n, p) => n + p.jobs_finished, 0),
      };
    };
    const before = await counted();
    const id = await jobs.submit({
      docker_image: 'busybox',
      command: ['sh', '-c', 'echo hi'],
      gpu_memory_required: 20_000,
      memory_required: 64,
    });
    expect((await jobs.finished(id)).status).toBe('succeeded');
    expect(await pendingOf()).toBe(0);

    await waitFor(
      'node online',
      async () => (await t.req('GET', `/nodes/${agent.identity.node_id}`, { token: t.tokens.admin })).body.status === 'online',
    );
    // The sampler runs every 20 s; take this minute's sample now rather than wait for it.
    await t.api.context.overview.sampleNow();
    const r = await t.req('GET', '/stats/timeline?minutes=5', { token: t.tokens.alice });
    expect(r.status).toBe(200);
    expect(r.body.step_seconds).toBe(60);
    expect(r.body.points).toHaveLength(5);
    const after = await counted();
    expect(after.started - before.started).toBe(1);
    expect(after.finished - before.finished).toBe(1);
    expect(Date.parse(r.body.points[4].at)).toBeGreaterThan(Date.parse(r.body.points[0].at));
    const fleet = (await t.req('GET', '/stats/timeline?minutes=1', { token: t.tokens.alice })).body.points[0];
    expect(fleet.gpu_memory_total_mib).toBeGreaterThanOrEqual(24564);
    expect(fleet.gpu_memory_used_mib).toBeGreaterThanOrEqual(0);
    expect((await t.req('GET', '/stats/timeline?minutes=0', { token: t.tokens.alice })).body.fields[0].field).toBe('minutes');
  });

  it('reads every hour a long window spans', async () => {
    // A count 60-119 minutes ago lies in the hour before this one: write it there, as the scripts would.
    const at = Date.now() - 90 * 60_000;
    const hour = Math.floor(at / 3_600_000);
    const minute = Math.floor(at / 60_000) % 60;
    await t.redis.hset(`${t.prefix}:{gpu-8g}:timeline:${hour}`, `s${minute}`, '7', `f${minute}`, '5');
    const r = await t.req('GET', '/stats/timeline?minutes=120', { token: t.tokens.alice });
    expect(r.body.points).toHaveLength(120);
    const point = r.body.points.find((p: any) => Date.parse(p.at) === Math.floor(at / 60_000) * 60_000);
    expect(point).toMatchObject({ jobs_started: 7, jobs_finished: 5 });
  });
});

describe('dashboard sessions', () => {
  it('trades a person token for an HttpOnly, SameSite=Strict cookie that works in place of the token', async () => {
    const r = await t.req('POST', '/session', { body: { token: t.tokens.alice } });
    expect(r.status).toBe(204);
    const set = r.headers.get('set-cookie') ?? '';
    expect(set).toMatch(/^imagepod_session=[^;]+;/);
    expect(set).toContain('HttpOnly');
    expect(set).toContain('SameSite=Strict');
    expect(Number(/Max-Age=(\d+)/.exec(set)?.[1])).toBeLessThanOrEqual(3600);
    const cookie = set.split(';')[0] as string;
    const session = cookie.slice('imagepod_session='.length);
    expect(session).not.toBe(t.tokens.alice);

    const list = await t.req('GET', '/jobs', { headers: { cookie } });
    expect(list.status).toBe(200);
    // The session is no bearer token.
    expect((await t.req('GET', '/jobs', { token: session })).status).toBe(401);
  });

  it('refuses a state change by cookie without a same-origin Origin header, and allows it with one', async () => {
    const cookie = await signIn(t.tokens.alice);
    const body = { docker_image: 'busybox' };
    const noOrigin = await t.req('POST', '/jobs', { headers: { cookie }, body });
    expect(noOrigin.status).toBe(403);
    const foreign = await t.req('POST', '/jobs', { headers: { cookie, origin: 'https://evil.example' }, body });
    expect(foreign.status).toBe(403);
    const own = await t.req('POST', '/jobs', { headers: { cookie, origin: t.url }, body });
    expect(own.status).toBe(201);
    await t.req('POST', `/jobs/${own.body.id}/cancel`, { token: t.tokens.alice });
  });

  it('refuses agent keys, the registration token and bad tokens; signing out clears the cookie', async () => {
    const { apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'session-node' });
    expect((await t.req('POST', '/session', { body: { token: apiKey } })).status).toBe(401);
    expect((await t.req('POST', '/session', { body: { token: t.registrationToken } })).status).toBe(401);
    expect((await t.req('POST', '/session', { body: { token: 'not.a.jwt' } })).status).toBe(401);
    const missing = await t.req('POST', '/session', { body: {} });
    expect(missing.status).toBe(400);
    expect(missing.body.fields[0].field).toBe('token');
    const out = await t.req('DELETE', '/session');
    expect(out.status).toBe(204);
    expect(out.headers.get('set-cookie')).toMatch(/imagepod_session=;.*Max-Age=0/);
    expect((await t.req('GET', '/jobs', { headers: { cookie: 'imagepod_session=forged' } })).status).toBe(401);
    // Not valid percent-encoding: no session, not a crash.
    expect((await t.req('GET', '/jobs', { headers: { cookie: 'imagepod_session=%zz' } })).status).toBe(401);
  });

  it('ends the session for every copy of the cookie on sign-out', async () => {
    const cookie = await signIn(t.tokens.alice);
    expect((await t.req('GET', '/jobs', { headers: { cookie } })).status).toBe(200);
    expect((await t.req('DELETE', '/session', { headers: { cookie } })).status).toBe(204);
    // A copy kept elsewhere (another tab, a log, a thief) no longer works.
    const replay = await t.req('GET', '/jobs', { headers: { cookie } });
    expect(replay.status).toBe(401);
    expect(replay.body.message).toMatch(/session has ended/);
  });
});

describe('Bull Board', () => {
  it('is for admins only, signed in by cookie, with one entry per tier queue', async () => {
    const anon = await fetch(`${t.url}/admin/queues`);
    expect(anon.status).toBe(401);
    const user = await fetch(`${t.url}/admin/queues`, { headers: { cookie: await signIn(t.tokens.alice) } });
    expect(user.status).toBe(403);
    const cookie = await signIn(t.tokens.admin);
    const page = await fetch(`${t.url}/admin/queues`, { headers: { cookie } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<div id="root"');
    const api = await fetch(`${t.url}/admin/queues/api/queues`, { headers: { cookie } });
    expect(api.status).toBe(200);
    const names = ((await api.json()) as { queues: { name: string; readOnlyMode: boolean }[] }).queues.map((q) => q.name);
    for (const tier of ['cpu', 'gpu-8g', 'gpu-16g', 'gpu-24g', 'gpu-48g', 'gpu-80g', 'gpu-141g']) expect(names).toContain(tier);
    // Read-only: a queue cannot be paused from the board.
    const pause = await fetch(`${t.url}/admin/queues/api/queues/cpu/pause`, { method: 'PUT', headers: { cookie, origin: t.url } });
    expect(pause.status).toBeGreaterThanOrEqual(400);
    const after = await fetch(`${t.url}/admin/queues/api/queues`, { headers: { cookie } });
    const cpu = ((await after.json()) as { queues: { name: string; isPaused: boolean }[] }).queues.find((q) => q.name === 'cpu');
    expect(cpu?.isPaused).toBe(false);
  });
});

describe('the dashboard files', () => {
  it('serves the built dashboard at / and for its deep links, with a content security policy, and leaves API paths alone', async () => {
    const root = await fetch(`${t.url}/`, { headers: { accept: 'text/html' } });
    expect(root.status).toBe(200);
    expect(await root.text()).toContain('ImagePod dashboard');
    expect(root.headers.get('content-security-policy')).toContain("default-src 'self'");
    const deep = await fetch(`${t.url}/jobs/123`, { headers: { accept: 'text/html' } });
    expect(await deep.text()).toContain('ImagePod dashboard');
    const api = await fetch(`${t.url}/gpu-workers/nope`, { headers: { accept: 'text/html' } });
    expect(api.status).toBe(401);
  });
});
