import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobCreateBody } from '../../src/domain/schemas/job.js';
import { Keys } from '../../src/redis/keys.js';
import { runScript, ScriptName } from '../../src/redis/scripts.js';
import { fingerprintOf } from '../../src/services/idempotency.js';
import { newRecordFields } from '../../src/services/job-model.js';
import { startTestApi, type TestApi } from '../support/api.js';

/** Idempotency-Key on submissions: a retry never makes a second job or a second budget hold. */
let t: TestApi;

beforeAll(async () => {
  t = await startTestApi('idempotency', { IMAGEPOD_IDEMPOTENCY_LEASE_SECONDS: '2' });
});
afterAll(async () => {
  await t.close();
});

/** Worst case 1.0: one attempt of at most an hour at 1/h. */
const JOB = { docker_image: 'busybox', command: ['echo', 'hi'], timeout_seconds: 3600, max_price_per_hour: 1 };

const post = (token: string, key: string | undefined, body: unknown, path = '/jobs/') =>
  t.req('POST', path, { token, body, ...(key !== undefined && { headers: { 'Idempotency-Key': key } }) });

async function listIds(token: string): Promise<string[]> {
  const r = await t.req('GET', '/jobs/?limit=500', { token });
  expect(r.status).toBe(200);
  return r.body.items.map((j: { id: string }) => j.id);
}

const recordKey = (user: string, key: string) => new Keys(t.prefix).idempotency(user, createHash('sha256').update(key).digest('hex'));

describe('Idempotency-Key on POST /jobs/', () => {
  it('a repeat answers the first answer again and submits nothing', async () => {
    const key = randomUUID();
    const first = await post(t.tokens.alice, key, JOB);
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await post(t.tokens.alice, key, { ...JOB });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('location')).toBe(`/gpu-workers/jobs/${first.body.id}`);
    expect(again.body).toEqual(first.body);
    expect((await listIds(t.tokens.alice)).filter((id) => id === first.body.id)).toHaveLength(1);
  });

  it('the same body with its keys in another order is the same request', async () => {
    const key = randomUUID();
    const first = await post(t.tokens.alice, key, JOB);
    const reordered = Object.fromEntries(Object.entries(JOB).reverse());
    expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(JOB));
    const again = await post(t.tokens.alice, key, reordered);
    expect(again.status).toBe(201);
    expect(again.body.id).toBe(first.body.id);
  });

  it('the same key with another body is a 422, and nothing is submitted', async () => {
    const key = randomUUID();
    const first = await post(t.tokens.alice, key, JOB);
    const before = await listIds(t.tokens.alice);
    const other = await post(t.tokens.alice, key, { ...JOB, job_name: 'something else' });
    expect(other.status).toBe(422);
    expect(other.body.error).toBe('idempotency_key_reused');
    expect(await listIds(t.tokens.alice)).toEqual(before);
    // Nor may a key of a single submission be used for a batch.
    const batch = await post(t.tokens.alice, key, { jobs: [JOB] }, '/jobs/batch');
    expect(batch.status).toBe(422);
    expect((await post(t.tokens.alice, key, JOB)).body.id).toBe(first.body.id);
  });

  it('keys are per user', async () => {
    const key = randomUUID();
    const a = await post(t.tokens.alice, key, JOB);
    const b = await post(t.tokens.bob, key, JOB);
    expect(b.status).toBe(201);
    expect(b.headers.get('idempotent-replayed')).toBeNull();
    expect(b.body.id).not.toBe(a.body.id);
    expect(b.body.user_id).toBe('bob');
  });

  it.each([
    ['empty', ''],
    ['256 characters', 'k'.repeat(256)],
    ['not ASCII', 'clé'],
  ])('a key that is %s is a 400 naming the header', async (_, key) => {
    const r = await post(t.tokens.alice, key, JOB);
    expect(r.status).toBe(400);
    expect(r.body.fields).toEqual([{ field: 'Idempotency-Key', message: expect.any(String) }]);
  });

  it('255 printable characters, spaces and punctuation included, are a key', async () => {
    const key = `a b:{c}/"${'x'.repeat(246)}`;
    expect(key).toHaveLength(255);
    const first = await post(t.tokens.alice, key, JOB);
    expect(first.status).toBe(201);
    expect((await post(t.tokens.alice, key, JOB)).body.id).toBe(first.body.id);
  });

  it('a refused submission is not remembered: the same key may be sent again', async () => {
    const key = randomUUID();
    const bad = await post(t.tokens.alice, key, { ...JOB, gpu_memory_required: 10_000_000 });
    expect(bad.status).toBe(400);
    // The same key now with a valid body is a new request, not a reuse.
    const good = await post(t.tokens.alice, key, JOB);
    expect(good.status).toBe(201);
  });

  it('concurrent repeats make one job: the others get it too, or a 409 with Retry-After', async () => {
    const key = randomUUID();
    const replies = await Promise.all(Array.from({ length: 8 }, () => post(t.tokens.alice, key, JOB)));
    const ok = replies.filter((r) => r.status === 201);
    const busy = replies.filter((r) => r.status === 409);
    expect(ok.length + busy.length).toBe(8);
    expect(ok.filter((r) => r.headers.get('idempotent-replayed') === null)).toHaveLength(1);
    expect(new Set(ok.map((r) => r.body.id)).size).toBe(1);
    for (const r of busy) {
      expect(r.body.error).toBe('idempotency_in_progress');
      expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    }
    const id = ok[0]?.body.id;
    expect((await listIds(t.tokens.alice)).filter((x) => x === id)).toHaveLength(1);
  });

  it('with ?wait= a repeat waits again, for the same job', async () => {
    const key = randomUUID();
    const first = await post(t.tokens.alice, key, JOB, '/jobs/?wait=0.2');
    expect(first.status).toBe(201);
    const again = await post(t.tokens.alice, key, JOB, '/jobs/?wait=0.2');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.id).toBe(first.body.id);
  });

  it('a repeat holds the budget once', async () => {
    expect((await t.req('PUT', '/users/carol/limits', { token: t.tokens.admin, body: { money_budget: 2.5 } })).status).toBe(200);
    const carol = (await import('../../src/cli/mint-token.js')).mintToken(t.secret, 'carol', 'user', '1h');
    const key = randomUUID();
    for (let i = 0; i < 3; i++) expect((await post(carol, key, JOB)).status).toBe(201);
    const limits = await t.req('GET', '/users/carol/limits', { token: carol });
    expect(limits.body.held_money).toBe(1);
    // Two more worst cases of 1.0 do not fit in what is left (1.5): the repeats held nothing.
    expect((await post(carol, randomUUID(), JOB)).status).toBe(201);
    expect((await post(carol, randomUUID(), JOB)).status).toBe(402);
  });
});

describe('Idempotency-Key on POST /jobs/batch', () => {
  it('a repeat answers the same jobs, in order', async () => {
    const key = randomUUID();
    const body = { jobs: [JOB, { ...JOB, job_name: 'second' }] };
    const first = await post(t.tokens.alice, key, body, '/jobs/batch');
    expect(first.status).toBe(201);
    const again = await post(t.tokens.alice, key, body, '/jobs/batch');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    const ids = await listIds(t.tokens.alice);
    for (const j of first.body.items) expect(ids.filter((x) => x === j.id)).toHaveLength(1);
  });
});

describe('a first request that died', () => {
  it('after its lease, a retry takes over with the ids it chose, so there is still one job', async () => {
    const key = randomUUID();
    const id = randomUUID();
    // A request that reserved the key and died before it wrote anything.
    const fingerprint = fingerprintOf({ kind: 'job', body: jobCreateBody.parse(JOB), jobs: 1 });
    await t.redis.hset(recordKey('alice', key), { fp: fingerprint, ids: id, state: 'pending', owner: 'dead', lease: Date.now() + 1500 });
    await t.redis.pexpire(recordKey('alice', key), 60_000);
    const early = await post(t.tokens.alice, key, JOB);
    expect(early.status).toBe(409);
    expect(early.body.error).toBe('idempotency_in_progress');
    expect(Number(early.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    await new Promise((r) => setTimeout(r, Number(early.headers.get('retry-after')) * 1000));
    const late = await post(t.tokens.alice, key, JOB);
    expect(late.status).toBe(201);
    expect(late.body.id).toBe(id);
    expect((await t.req('GET', `/jobs/${id}`, { token: t.tokens.alice })).body.status).toBe('queued');
    expect((await post(t.tokens.alice, key, JOB)).body.id).toBe(id);
  });

  it('one that died between writing its job and enqueueing it: the retry enqueues that job', async () => {
    const key = randomUUID();
    const id = randomUUID();
    const k = new Keys(t.prefix);
    const { spec, tier, queue } = t.api.context.jobs.buildSpec(jobCreateBody.parse(JOB));
    const pendingBefore = Number(await t.redis.hget(k.pending(tier), 'jobs'));
    // What the first attempt wrote before it died: the key, the lookup entries and the record.
    const now = Date.now();
    await t.redis.hset(recordKey('bob', key), {
      fp: fingerprintOf({ kind: 'job', body: jobCreateBody.parse(JOB), jobs: 1 }),
      ids: id,
      state: 'pending',
      owner: 'dead',
      lease: now - 1,
    });
    await t.redis.multi().hset(k.jobQueueIndex, id, queue).zadd(k.jobsAll, now, id).zadd(k.jobsOfUser('bob'), now, id).exec();
    await runScript(
      t.redis,
      ScriptName.CreateJob,
      [k.jobRecord(tier, id), ...k.jobWatchKeys(tier, now)],
      [JSON.stringify(newRecordFields(id, 'bob', queue, spec, 1, now)), now],
    );
    expect(await t.api.queues.get(queue).getJob(id)).toBeUndefined();

    const retry = await post(t.tokens.bob, key, JOB);
    expect(retry.status).toBe(201);
    expect(retry.body.id).toBe(id);
    expect((await t.api.queues.get(queue).getJob(id))?.data.job_id).toBe(id);
    expect((await t.req('GET', `/jobs/${id}`, { token: t.tokens.bob })).body.status).toBe('queued');
    // Counted as pending once, by the first attempt's record, not again.
    expect(Number(await t.redis.hget(k.pending(tier), 'jobs'))).toBe(pendingBefore + 1);
    expect((await listIds(t.tokens.bob)).filter((x) => x === id)).toHaveLength(1);
  });
});
