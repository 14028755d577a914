import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { heartbeat, RTX_4090_NODE, registerNode, startTestApi, type TestApi } from '../support/api.js';
import { TestClaimer } from '../support/claim.js';

let t: TestApi;
let claimer: TestClaimer;

beforeAll(async () => {
  t = await startTestApi('jobs', { IMAGEPOD_JOB_TIMEOUT_MAX_SECONDS: '172800', IMAGEPOD_INPUT_DATA_MAX_BYTES: '4096' });
  claimer = new TestClaimer(t.prefix);
});
afterAll(async () => {
  await claimer.close();
  await t.close();
});

/** The original README's job. */
const SEED_JOB = {
  job_name: 'AI Training Job',
  docker_image: 'pytorch/pytorch',
  docker_tag: 'latest',
  gpu_memory_required: 8192,
  cpu_cores_required: 4,
  memory_required: 16384,
  input_data: { dataset: 'imagenet', epochs: 100 },
};
const CPU_JOB = { docker_image: 'busybox', command: ['echo', 'hi'], gpu_memory_required: 0 };

async function submit(token: string, body: Record<string, unknown> = CPU_JOB) {
  const r = await t.req('POST', '/jobs/', { token, body });
  if (r.status !== 201) throw new Error(`submit: ${r.status} ${r.text}`);
  return r.body;
}

describe('POST /jobs/', () => {
  it('accepts the original README job, queues it in its tier and returns it', async () => {
    const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: SEED_JOB });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      ...SEED_JOB,
      status: 'queued',
      tier: 'gpu-8g',
      gpu_count: 1,
      user_id: 'alice',
      image: 'pytorch/pytorch:latest',
      timeout_seconds: 86400,
      max_retries: 0,
      node_id: null,
    });
    expect(r.body.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.headers.get('location')).toBe(`/gpu-workers/jobs/${r.body.id}`);
    // The BullMQ job carries a small versioned payload: what a claim needs to choose it. The
    // spec lives once, in the job's record.
    const bull = await t.api.queues.get('gpu-8g').getJob(r.body.id);
    expect(bull?.data).toEqual({
      v: 2,
      req: 'g=1;m=8192;f=*;c=4;r=16384;n=*;s=*;p=*;t=86400;u=alice',
      job_id: r.body.id,
      owner: 'alice',
      tier: 'gpu-8g',
    });
    const record = await t.redis.hget(`${t.prefix}:{gpu-8g}:rec:${r.body.id}`, 'spec');
    expect(JSON.parse(record ?? '{}').input_data).toEqual(SEED_JOB.input_data);
  });

  it.each([
    [0, 'cpu'],
    [4096, 'gpu-8g'],
    [8192, 'gpu-8g'],
    [8193, 'gpu-16g'],
    [24576, 'gpu-24g'],
    [81920, 'gpu-80g'],
    [143771, 'gpu-141g'],
  ])('routes %i MiB per GPU to the %s queue', async (mib, tier) => {
    const job = await submit(t.tokens.alice, { docker_image: 'busybox', gpu_memory_required: mib });
    expect(job.tier).toBe(tier);
    expect(await t.api.queues.get(tier).getJob(job.id)).toBeDefined();
    for (const q of t.api.queues.all) if (q.name !== tier) expect(await q.getJob(job.id)).toBeUndefined();
  });

  it('refuses 200000 MiB per GPU: no tier holds it', async () => {
    const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { docker_image: 'busybox', gpu_memory_required: 200000 } });
    expect(r.status).toBe(400);
    expect(r.body.fields).toEqual([{ field: 'gpu_memory_required', message: expect.stringContaining('144384') }]);
  });

  it('takes a tag or digest inside docker_image', async () => {
    expect((await submit(t.tokens.alice, { docker_image: 'ghcr.io/org/app:v1.2' })).image).toBe('ghcr.io/org/app:v1.2');
    const digest = `sha256:${'a'.repeat(64)}`;
    const j = await submit(t.tokens.alice, { docker_image: `registry.example:5000/app@${digest}` });
    expect(j).toMatchObject({ image: `registry.example:5000/app@${digest}`, docker_tag: null });
  });

  it.each([
    ['docker_image', { docker_image: undefined }],
    ['docker_image', { docker_image: 'Has Spaces' }],
    ['docker_image', { docker_image: 'app@sha256:short' }],
    ['docker_tag', { docker_tag: '-bad' }],
    ['docker_tag', { docker_image: 'app:1', docker_tag: '2' }],
    ['gpu_memory_required', { gpu_memory_required: -1 }],
    ['gpu_memory_required', { gpu_memory_required: 1.5 }],
    ['gpu_memory_required', { gpu_memory_required: '8192' }],
    ['gpu_count', { gpu_count: 17 }],
    ['gpu_count', { gpu_count: 0, gpu_memory_required: 4096 }],
    ['gpu_type', { gpu_count: 0, gpu_memory_required: 0, gpu_type: 'H100' }],
    ['cpu_cores_required', { cpu_cores_required: 0 }],
    ['memory_required', { memory_required: -1 }],
    ['timeout_seconds', { timeout_seconds: 0 }],
    ['timeout_seconds', { timeout_seconds: 172801 }],
    ['max_retries', { max_retries: 21 }],
    ['priority', { priority: 1001 }],
    ['env.1BAD', { env: { '1BAD': 'x' } }],
    ['command', { command: 'echo hi' }],
    ['input_data', { input_data: { blob: 'x'.repeat(5000) } }],
    ['gpu_memory_requried', { gpu_memory_requried: 8192 }],
  ])('names the bad field %s', async (field, patch) => {
    const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { ...SEED_JOB, ...patch } });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('validation_failed');
    expect(r.body.fields.map((f: { field: string }) => f.field)).toContain(field);
    expect(r.text).not.toMatch(/at .*\.ts:\d+/);
  });

  it('bad bodies: not JSON is 400, too large is 413, nothing is written', async () => {
    const before = await t.redis.zcard(`${t.prefix}:{jobs}:all`);
    const bad = await t.req('POST', '/jobs/', { token: t.tokens.alice, raw: '{"docker_image": ' });
    expect(bad.status).toBe(400);
    expect(bad.body.fields).toEqual([{ field: 'body', message: 'not valid JSON' }]);
    const big = await t.req('POST', '/jobs/', {
      token: t.tokens.alice,
      raw: JSON.stringify({ ...SEED_JOB, input_data: 'x'.repeat(3 * 1024 * 1024) }),
    });
    expect(big.status).toBe(413);
    const form = await t.req('POST', '/jobs/', {
      token: t.tokens.alice,
      raw: 'a=b',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.status).toBe(400);
    expect(await t.redis.zcard(`${t.prefix}:{jobs}:all`)).toBe(before);
  });

  it('needs a person: no or a bad token 401, an agent key or the registration token 403', async () => {
    const { apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'submitter' });
    expect((await t.req('POST', '/jobs/', { body: CPU_JOB })).status).toBe(401);
    expect((await t.req('POST', '/jobs/', { token: 'nope', body: CPU_JOB })).status).toBe(401);
    expect((await t.req('POST', '/jobs/', { token: apiKey, body: CPU_JOB })).status).toBe(403);
    expect((await t.req('POST', '/jobs/', { token: t.registrationToken, body: CPU_JOB })).status).toBe(403);
  });
});

describe('reading jobs', () => {
  it('users see their own jobs only; another user gets 404; admins see all', async () => {
    const job = await submit(t.tokens.alice);
    expect((await t.req('GET', `/jobs/${job.id}`, { token: t.tokens.alice })).body.status).toBe('queued');
    const bob = await t.req('GET', `/jobs/${job.id}`, { token: t.tokens.bob });
    expect(bob.status).toBe(404);
    expect(bob.text).not.toContain('busybox');
    expect((await t.req('GET', `/jobs/${job.id}`, { token: t.tokens.admin })).status).toBe(200);
    expect((await t.req('GET', '/jobs/00000000-0000-4000-8000-000000000000', { token: t.tokens.admin })).status).toBe(404);
    const malformed = await t.req('GET', '/jobs/123', { token: t.tokens.alice });
    expect(malformed.status).toBe(400);
    expect(malformed.body.fields[0].field).toBe('job_id');
    expect((await t.req('GET', `/jobs/${job.id}`)).status).toBe(401);
  });

  it('lists newest first in pages, only the caller’s own, filtered by status', async () => {
    const carol = (await import('../../src/cli/mint-token.js')).mintToken(t.secret, 'carol', 'user', '1h');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await submit(carol)).id);
    await submit(t.tokens.bob);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r: { status: number; body: any } = await t.req('GET', `/jobs/?limit=2${cursor ? `&cursor=${cursor}` : ''}`, { token: carol });
      expect(r.status).toBe(200);
      seen.push(...r.body.items.map((j: { id: string }) => j.id));
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());

    await t.req('POST', `/jobs/${ids[0]}/cancel`, { token: carol });
    const cancelled = await t.req('GET', '/jobs/?status=cancelled', { token: carol });
    expect(cancelled.body.items.map((j: { id: string }) => j.id)).toEqual([ids[0]]);

    expect((await t.req('GET', '/jobs/?user_id=carol', { token: t.tokens.bob })).status).toBe(403);
    const admin = await t.req('GET', '/jobs/?user_id=carol&limit=100', { token: t.tokens.admin });
    expect(admin.body.items).toHaveLength(5);
    const all = await t.req('GET', '/jobs/?limit=500', { token: t.tokens.admin });
    expect(new Set(all.body.items.map((j: { user_id: string }) => j.user_id))).toEqual(new Set(['alice', 'bob', 'carol']));
    expect((await t.req('GET', '/jobs/?status=done', { token: carol })).status).toBe(400);
  });
});

/** Claims take the head of a queue: start each lifecycle test with empty queues. */
const emptyQueues = async () => {
  for (const q of t.api.queues.all) await q.drain(true);
};

describe('the job lifecycle as agents report it', () => {
  beforeEach(emptyQueues);
  async function onlineNode(name: string) {
    const n = await registerNode(t, { ...RTX_4090_NODE, node_name: name });
    await heartbeat(t, n.nodeId, n.apiKey, { gpu_memory_available: 24576, cpu_cores_available: 16, current_jobs: 0 });
    return n;
  }

  it('assigned, pulling, running, succeeded: with the claim’s lock token, once', async () => {
    const node = await onlineNode('life-1');
    const job = await submit(t.tokens.alice, { docker_image: 'busybox', gpu_memory_required: 2048 });
    const { token } = await claimer.claim('gpu-8g');
    const report = (body: Record<string, unknown>, key = node.apiKey) => t.req('POST', `/jobs/${job.id}/status`, { token: key, body });

    const a = await report({ status: 'assigned', lock_token: token, gpu_indices: [0] });
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ status: 'assigned', node_id: node.nodeId, attempts: 1 });
    expect((await report({ status: 'pulling', lock_token: token, progress: 40 })).body).toMatchObject({ status: 'pulling', progress: 40 });
    const running = await report({ status: 'running', lock_token: token, progress: 0, message: 'container started' });
    expect(running.body).toMatchObject({ status: 'running', status_message: 'container started' });
    expect(running.body.started_at).not.toBeNull();
    await sleep(20);
    const done = await report({ status: 'succeeded', lock_token: token, exit_code: 0, result: { accuracy: 0.93 } });
    expect(done.body).toMatchObject({ status: 'succeeded', exit_code: 0, result: { accuracy: 0.93 }, node_id: node.nodeId });
    expect(done.body.completed_at).not.toBeNull();

    // The same final report again changes nothing and counts once.
    const again = await report({ status: 'succeeded', lock_token: token, exit_code: 0, result: { accuracy: 0.5 } });
    expect(again.status).toBe(200);
    expect(again.body.result).toEqual({ accuracy: 0.93 });
    const stats = (await t.req('GET', `/nodes/${node.nodeId}/stats`, { token: t.tokens.alice })).body;
    expect(stats).toMatchObject({ jobs_run: 1, jobs_succeeded: 1, jobs_failed: 0 });
    expect(stats.gpu_hours).toBeGreaterThanOrEqual(0);

    // A final status is never left.
    const back = await report({ status: 'running', lock_token: token });
    expect(back.status).toBe(409);
    expect(back.body.error).toBe('invalid_transition');
    // And the user sees the result.
    expect((await t.req('GET', `/jobs/${job.id}`, { token: t.tokens.alice })).body.status).toBe('succeeded');
  });

  it('refuses reports without the claim: no token 400, a wrong token 409, another node 404, a user 403', async () => {
    const node = await onlineNode('life-2');
    const other = await onlineNode('life-2b');
    const job = await submit(t.tokens.alice, { docker_image: 'busybox', gpu_memory_required: 2048 });
    const { token } = await claimer.claim('gpu-8g');
    const report = (body: Record<string, unknown>, key: string) => t.req('POST', `/jobs/${job.id}/status`, { token: key, body });

    const noToken = await report({ status: 'assigned' }, node.apiKey);
    expect(noToken.status).toBe(400);
    expect(noToken.body.fields[0].field).toBe('lock_token');
    const wrong = await report({ status: 'assigned', lock_token: 'not-the-token', gpu_indices: [0] }, node.apiKey);
    expect(wrong.status).toBe(409);
    expect(wrong.body.error).toBe('lock_lost');
    expect((await report({ status: 'assigned', lock_token: token, gpu_indices: [0] }, node.apiKey)).status).toBe(200);
    expect((await report({ status: 'running', lock_token: token }, other.apiKey)).status).toBe(404);
    expect((await report({ status: 'running', lock_token: token }, t.tokens.alice)).status).toBe(403);
    expect((await report({ status: 'finished', lock_token: token }, node.apiKey)).status).toBe(400);
    expect((await report({ status: 'running', lock_token: token, progress: 101 }, node.apiKey)).status).toBe(400);
    expect(
      (
        await t.req('POST', '/jobs/00000000-0000-4000-8000-000000000000/status', {
          token: node.apiKey,
          body: { status: 'running', lock_token: token },
        })
      ).status,
    ).toBe(404);
    // An admin may end a job by hand, but not invent progress.
    expect((await report({ status: 'running' }, t.tokens.admin)).status).toBe(400);
    expect((await report({ status: 'failed', error_message: 'ended by an operator' }, t.tokens.admin)).body.status).toBe('failed');
  });

  it('a failure with retries left puts the job back in the queue', async () => {
    const node = await onlineNode('life-3');
    const job = await submit(t.tokens.alice, { docker_image: 'busybox', max_retries: 1 });
    const first = await claimer.claim('cpu');
    const report = (body: Record<string, unknown>) => t.req('POST', `/jobs/${job.id}/status`, { token: node.apiKey, body });
    await report({ status: 'assigned', lock_token: first.token, gpu_indices: [] });
    const retry = await report({ status: 'failed', lock_token: first.token, exit_code: 1, error_message: 'boom' });
    expect(retry.body).toMatchObject({ status: 'queued', error_message: 'boom', node_id: null });
    // The agent hands the BullMQ job back; the next claim runs it again, and this time it ends.
    await first.job.moveToWait(first.token);
    const second = await claimer.claim('cpu');
    expect(second.job.id).toBe(job.id);
    await report({ status: 'assigned', lock_token: second.token, gpu_indices: [] });
    const final = await report({ status: 'failed', lock_token: second.token, exit_code: 1 });
    expect(final.body).toMatchObject({ status: 'failed', attempts: 2 });
  });

  it('a job whose agent lost its lock shows queued again (stalled), not running', async () => {
    const shortLocks = new TestClaimer(t.prefix, 300);
    try {
      const node = await onlineNode('life-4');
      const job = await submit(t.tokens.alice, { docker_image: 'busybox', gpu_memory_required: 30000 });
      const { token } = await shortLocks.claim('gpu-48g');
      await t.req('POST', `/jobs/${job.id}/status`, {
        token: node.apiKey,
        body: { status: 'assigned', lock_token: token, gpu_indices: [0] },
      });
      await t.req('POST', `/jobs/${job.id}/status`, { token: node.apiKey, body: { status: 'running', lock_token: token } });
      expect((await t.req('GET', `/jobs/${job.id}`, { token: t.tokens.alice })).body.status).toBe('running');
      await sleep(500);
      const v = (await t.req('GET', `/jobs/${job.id}`, { token: t.tokens.alice })).body;
      expect(v).toMatchObject({ status: 'queued', status_reason: 'stalled', node_id: null });
      const late = await t.req('POST', `/jobs/${job.id}/status`, { token: node.apiKey, body: { status: 'succeeded', lock_token: token } });
      expect(late.status).toBe(409);
      expect(late.body.error).toBe('lock_lost');
    } finally {
      await shortLocks.close();
    }
  });
});

describe('cancel', () => {
  beforeEach(emptyQueues);
  it('a queued job is cancelled at once and leaves the queue', async () => {
    const job = await submit(t.tokens.alice, { docker_image: 'busybox', gpu_memory_required: 70000 });
    expect((await t.req('POST', `/jobs/${job.id}/cancel`, { token: t.tokens.bob })).status).toBe(404);
    const c = await t.req('POST', `/jobs/${job.id}/cancel`, { token: t.tokens.alice });
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ status: 'cancelled', status_reason: 'cancelled_by_user' });
    expect(c.body.completed_at).not.toBeNull();
    expect(await t.api.queues.get('gpu-80g').getJob(job.id)).toBeUndefined();
    const again = await t.req('POST', `/jobs/${job.id}/cancel`, { token: t.tokens.alice });
    expect(again.status).toBe(409);
    expect(again.body.error).toBe('job_finished');
  });

  it('a running job: the node learns it from its heartbeat, and the job ends when the agent confirms', async () => {
    const node = await registerNode(t, { ...RTX_4090_NODE, node_name: 'cancel-node' });
    const beat = { gpu_memory_available: 24576, cpu_cores_available: 16, current_jobs: 1 };
    const job = await submit(t.tokens.alice, { docker_image: 'busybox', gpu_memory_required: 20000 });
    const { token } = await claimer.claim('gpu-24g');
    await t.req('POST', `/jobs/${job.id}/status`, {
      token: node.apiKey,
      body: { status: 'assigned', lock_token: token, gpu_indices: [0] },
    });
    await t.req('POST', `/jobs/${job.id}/status`, { token: node.apiKey, body: { status: 'running', lock_token: token } });

    const c = await t.req('POST', `/jobs/${job.id}/cancel`, { token: t.tokens.admin });
    expect(c.body).toMatchObject({ status: 'cancelled', completed_at: null });
    expect((await heartbeat(t, node.nodeId, node.apiKey, beat)).body.cancel_job_ids).toEqual([job.id]);
    // Progress reports are refused now, which also tells the agent to stop.
    expect(
      (await t.req('POST', `/jobs/${job.id}/status`, { token: node.apiKey, body: { status: 'running', lock_token: token } })).status,
    ).toBe(409);
    const ack = await t.req('POST', `/jobs/${job.id}/status`, {
      token: node.apiKey,
      body: { status: 'cancelled', lock_token: token, exit_code: 137 },
    });
    expect(ack.status).toBe(200);
    expect(ack.body.completed_at).not.toBeNull();
    expect((await heartbeat(t, node.nodeId, node.apiKey, beat)).body.cancel_job_ids).toEqual([]);
    expect((await t.req('GET', `/nodes/${node.nodeId}/stats`, { token: t.tokens.alice })).body).toMatchObject({
      jobs_run: 1,
      jobs_cancelled: 1,
    });
  });
});

describe('logs', () => {
  beforeEach(emptyQueues);
  it('agents append lines; the owner reads them in pages and can follow them live (SSE)', async () => {
    const node = await registerNode(t, { ...RTX_4090_NODE, node_name: 'log-node' });
    const job = await submit(t.tokens.alice, { docker_image: 'busybox', gpu_memory_required: 100 });
    const { token } = await claimer.claim('gpu-8g');
    await t.req('POST', `/jobs/${job.id}/status`, {
      token: node.apiKey,
      body: { status: 'assigned', lock_token: token, gpu_indices: [0] },
    });
    const append = (lines: { stream: string; text: string }[], key = node.apiKey) =>
      t.req('POST', `/jobs/${job.id}/logs`, { token: key, body: { lines } });

    expect(
      (
        await append([
          { stream: 'stdout', text: 'line 1' },
          { stream: 'stderr', text: 'line 2' },
        ])
      ).status,
    ).toBe(202);
    expect((await append([{ stream: 'stdout', text: 'x' }], t.tokens.alice)).status).toBe(403);
    const other = await registerNode(t, { ...RTX_4090_NODE, node_name: 'log-other' });
    expect((await append([{ stream: 'stdout', text: 'x' }], other.apiKey)).status).toBe(404);
    expect((await append([{ stream: 'video', text: 'x' }])).status).toBe(400);

    const page1 = await t.req('GET', `/jobs/${job.id}/logs?limit=1`, { token: t.tokens.alice });
    expect(page1.body.items).toEqual([{ id: expect.any(String), time: expect.any(String), stream: 'stdout', text: 'line 1' }]);
    const page2 = await t.req('GET', `/jobs/${job.id}/logs?after=${page1.body.next_cursor}`, { token: t.tokens.alice });
    expect(page2.body.items.map((l: { text: string }) => l.text)).toEqual(['line 2']);
    expect((await t.req('GET', `/jobs/${job.id}/logs`, { token: t.tokens.bob })).status).toBe(404);

    // Follow: lines written after the stream opens arrive, and the stream ends with the job.
    const controller = new AbortController();
    const res = await fetch(`${t.url}/gpu-workers/jobs/${job.id}/logs?follow=true`, {
      headers: { authorization: `Bearer ${t.tokens.alice}` },
      signal: controller.signal,
    });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body?.getReader();
    if (!reader) throw new Error('no body');
    let text = '';
    const readUntil = async (needle: string) => {
      while (!text.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    };
    await readUntil('line 2');
    await append([{ stream: 'stdout', text: 'line 3 live' }]);
    await readUntil('line 3 live');
    await t.req('POST', `/jobs/${job.id}/status`, { token: node.apiKey, body: { status: 'succeeded', lock_token: token, exit_code: 0 } });
    await readUntil('event: end');
    expect(text).toContain('"status":"succeeded"');
    controller.abort();
  });
});
