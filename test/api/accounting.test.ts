import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/cli/mint-token.js';
import { heartbeat, registerNode, startTestApi, type TestApi } from '../support/api.js';
import { TestClaimer } from '../support/claim.js';

/** Costs, the ledger, usage, budgets and the running-jobs cap, through the API. */
let t: TestApi;
let claimer: TestClaimer;
let node: { nodeId: string; apiKey: string };

const H100_NODE = {
  node_name: 'priced-h100',
  hostname: 'priced-h100.local',
  gpu_count: 2,
  gpu_type: 'NVIDIA H100 80GB HBM3',
  gpu_memory_total: 81920,
  cpu_cores: 32,
  memory_total: 262144,
  max_concurrent_jobs: 8,
  price_per_gpu_hour: 2.4,
  price_per_cpu_core_hour: 0.01,
  price_per_gib_ram_hour: 0.001,
};

beforeAll(async () => {
  t = await startTestApi('accounting', { IMAGEPOD_HEARTBEAT_TTL_MS: '600000' });
  claimer = new TestClaimer(t.prefix);
  node = await registerNode(t, H100_NODE);
  await heartbeat(t, node.nodeId, node.apiKey, { gpu_memory_available: 81920, cpu_cores_available: 32, current_jobs: 0 });
});
afterAll(async () => {
  await claimer.close();
  await t.close();
});
beforeEach(async () => {
  for (const q of t.api.queues.all) await q.drain(true);
});

const user = (sub: string) => mintToken(t.secret, sub, 'user', '1h');

async function submit(token: string, body: Record<string, unknown>) {
  return t.req('POST', '/jobs/', { token, body: { docker_image: 'busybox', ...body } });
}

/** Runs a submitted job through the agent's reports: claimed, running for `ms`, then ended. */
async function run(jobId: string, queue: string, ms: number, gpuIndices: number[], end = 'succeeded') {
  const { token } = await claimer.claim(queue);
  const report = (body: Record<string, unknown>) =>
    t.req('POST', `/jobs/${jobId}/status`, { token: node.apiKey, body: { lock_token: token, ...body } });
  const assigned = await report({ status: 'assigned', gpu_indices: gpuIndices });
  expect(assigned.status, assigned.text).toBe(200);
  await report({ status: 'running' });
  await sleep(ms);
  const done = await report({ status: end, exit_code: 0 });
  expect(done.status).toBe(200);
  return { token, report, done: done.body };
}

describe('cost', () => {
  it('a job pays the share of a GPU it declared, per hour it ran, written to the ledger once', async () => {
    const alice = user('cost-alice');
    const r = await submit(alice, { gpu_memory_required: 40960, cpu_cores_required: 4, memory_required: 8192, timeout_seconds: 3600 });
    expect(r.status).toBe(201);
    // Worst case at submission: the hour it may run, at the dearest node's prices, a whole GPU.
    expect(r.body.worst_case_cost).toBeCloseTo(2.4 + 4 * 0.01 + 8 * 0.001, 6);

    const { report, done } = await run(r.body.id, 'gpu-48g', 300, [1]);
    // Half of an 80 GiB GPU: 1.2/h, plus CPU and RAM.
    expect(done.hourly_rate).toBeCloseTo(1.2 + 0.04 + 0.008, 6);
    expect(done.gpu_indices).toEqual([1]);
    const ranHours = (Date.parse(done.completed_at) - Date.parse(done.started_at)) / 3_600_000;
    expect(done.cost).toBeCloseTo(done.hourly_rate * ranHours, 5);
    expect(done.gpu_hours).toBeCloseTo(0.5 * ranHours, 6);

    // The agent repeats its report (it lost the answer): still one ledger entry.
    const again = await report({ status: 'succeeded', exit_code: 0 });
    expect(again.status).toBe(200);
    const usage = (await t.req('GET', '/usage/', { token: alice })).body;
    expect(usage.total.jobs).toBe(1);
    expect(usage.total.cost).toBeCloseTo(done.cost, 6);
    expect(await t.redis.hlen(`${t.prefix}:{acct}:ledger`)).toBeGreaterThanOrEqual(1);
    expect(await t.redis.hexists(`${t.prefix}:{acct}:ledger`, r.body.id)).toBe(1);
  });

  it('a retried job pays for every attempt that ran, and counts as one job', async () => {
    const erin = user('cost-erin');
    const rate = 1.2 + 4 * 0.01 + 8 * 0.001;
    const limits = async () => (await t.req('GET', '/users/cost-erin/limits', { token: erin })).body;
    await t.req('PUT', '/users/cost-erin/limits', { token: t.tokens.admin, body: { money_budget: 100 } });
    const r = await submit(erin, {
      gpu_memory_required: 40960,
      cpu_cores_required: 4,
      memory_required: 8192,
      timeout_seconds: 3600,
      max_retries: 1,
    });
    // Worst case: both attempts run their hour, each on a whole GPU at the dearest price.
    expect(r.body.worst_case_cost).toBeCloseTo(2 * (2.4 + 0.04 + 0.008), 6);

    // The first attempt runs, fails, and goes back to the queue.
    const first = await claimer.claim('gpu-48g');
    const report = (token: string, body: Record<string, unknown>) =>
      t.req('POST', `/jobs/${r.body.id}/status`, { token: node.apiKey, body: { lock_token: token, ...body } });
    await report(first.token, { status: 'assigned', gpu_indices: [0] });
    const running = (await report(first.token, { status: 'running' })).body;
    await sleep(200);
    const failed = await report(first.token, { status: 'failed', exit_code: 1, reason: 'non_zero_exit' });
    expect(failed.body.status).toBe('queued');
    const firstRanHours = (Date.now() - Date.parse(running.started_at)) / 3_600_000;
    await first.job.moveToWait(first.token);
    // The attempt is spent, and no longer held as well.
    const between = await limits();
    expect(between.spent_money).toBeCloseTo(rate * firstRanHours, 4);
    expect(between.held_money).toBeCloseTo(r.body.worst_case_cost - between.spent_money, 4);

    // The second attempt succeeds.
    const { done } = await run(r.body.id, 'gpu-48g', 100, [1]);
    const secondRanHours = (Date.parse(done.completed_at) - Date.parse(done.started_at)) / 3_600_000;
    expect(done.cost).toBeCloseTo(rate * (firstRanHours + secondRanHours), 4);
    expect(done.gpu_hours).toBeCloseTo(0.5 * (firstRanHours + secondRanHours), 4);

    const ledger = `${t.prefix}:{acct}:ledger`;
    const attempt = JSON.parse((await t.redis.hget(ledger, `${r.body.id}:1`)) ?? '{}');
    expect(attempt).toMatchObject({ attempt: 1, status: 'failed', user_id: 'cost-erin' });
    expect(await t.redis.hexists(ledger, r.body.id)).toBe(1);
    const usage = (await t.req('GET', '/usage/', { token: erin })).body;
    expect(usage.total.jobs).toBe(1);
    expect(usage.total.cost).toBeCloseTo(done.cost, 5);
    const after = await limits();
    expect(after.held_money).toBe(0);
    expect(after.spent_money).toBeCloseTo(done.cost, 4);
  });

  it('an attempt left unbilled by an API that died is billed by the next report, at its own rate', async () => {
    const fay = user('cost-fay');
    const r = await submit(fay, { gpu_memory_required: 40960, cpu_cores_required: 4, memory_required: 8192, max_retries: 1 });
    // What the status script leaves when a retried attempt's report is recorded but the API dies
    // before billing it: attempt 1 ran 36 s on this node at 10/h.
    const rec = `${t.prefix}:{gpu-48g}:rec:${r.body.id}`;
    await t.redis.hset(rec, { attempts: '1', pending_attempt: `1|1000000|1036000|${node.nodeId}|failed|10|0.5` });
    const { done } = await run(r.body.id, 'gpu-48g', 50, [0]);
    const entry = JSON.parse((await t.redis.hget(`${t.prefix}:{acct}:ledger`, `${r.body.id}:1`)) ?? '{}');
    expect(entry).toMatchObject({ attempt: 1, cost: 0.1, gpu_hours: 0.005, hourly_rate: 10, status: 'failed', node_id: node.nodeId });
    expect(await t.redis.hexists(rec, 'pending_attempt')).toBe(0);
    const ranHours = (Date.parse(done.completed_at) - Date.parse(done.started_at)) / 3_600_000;
    expect(done.cost).toBeCloseTo(0.1 + (1.2 + 0.04 + 0.008) * ranHours, 5);
  });

  it('a job cancelled in the queue after an attempt that ran shows what that attempt cost', async () => {
    const gus = user('cost-gus');
    const r = await submit(gus, { gpu_memory_required: 40960, cpu_cores_required: 4, memory_required: 8192, max_retries: 2 });
    const first = await claimer.claim('gpu-48g');
    const report = (body: Record<string, unknown>) =>
      t.req('POST', `/jobs/${r.body.id}/status`, { token: node.apiKey, body: { lock_token: first.token, ...body } });
    await report({ status: 'assigned', gpu_indices: [0] });
    await report({ status: 'running' });
    await sleep(100);
    expect((await report({ status: 'failed', exit_code: 1 })).body.status).toBe('queued');
    await first.job.moveToWait(first.token);
    const cancelled = (await t.req('POST', `/jobs/${r.body.id}/cancel`, { token: gus })).body;
    expect(cancelled.status).toBe('cancelled');
    const entry = JSON.parse((await t.redis.hget(`${t.prefix}:{acct}:ledger`, `${r.body.id}:1`)) ?? '{}');
    expect(entry.cost).toBeGreaterThan(0);
    expect(cancelled.cost).toBeCloseTo(entry.cost, 6);
    expect((await t.req('GET', '/usage/', { token: gus })).body.total.cost).toBeCloseTo(entry.cost, 6);
  });

  it('a job that asks for no GPU memory holds, and pays for, whole GPUs', async () => {
    const bob = user('cost-bob');
    const r = await submit(bob, { gpu_count: 2, cpu_cores_required: 1, memory_required: 1024 });
    const { done } = await run(r.body.id, 'gpu-8g', 50, [0, 1]);
    expect(done.hourly_rate).toBeCloseTo(2 * 2.4 + 0.01 + 0.001, 6);
  });

  it('the node must be within the job’s price limit, or the claim is refused', async () => {
    const carol = user('cost-carol');
    const r = await submit(carol, { gpu_memory_required: 81920, max_price_per_hour: 1 });
    expect(r.body.worst_case_cost).toBeCloseTo(24, 6);
    const { token } = await claimer.claim('gpu-80g');
    const refused = await t.req('POST', `/jobs/${r.body.id}/status`, {
      token: node.apiKey,
      body: { status: 'assigned', lock_token: token, gpu_indices: [0] },
    });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toBe('price_too_high');
    expect((await t.req('GET', `/jobs/${r.body.id}`, { token: carol })).body.status).toBe('queued');
  });

  it('an admin changes a node’s prices; jobs taken afterwards pay them', async () => {
    expect((await t.req('PATCH', `/nodes/${node.nodeId}`, { token: t.tokens.alice, body: { price_per_gpu_hour: 1 } })).status).toBe(403);
    const bad = await t.req('PATCH', `/nodes/${node.nodeId}`, { token: t.tokens.admin, body: { price_per_gpu_hour: -1 } });
    expect(bad.status).toBe(400);
    expect(bad.body.fields[0].field).toBe('price_per_gpu_hour');
    const p = await t.req('PATCH', `/nodes/${node.nodeId}`, {
      token: t.tokens.admin,
      body: { price_per_gpu_hour: 3, labels: { zone: 'eu' } },
    });
    expect(p.body).toMatchObject({ price_per_gpu_hour: 3, labels: { zone: 'eu' } });
    const ack = await heartbeat(t, node.nodeId, node.apiKey, { gpu_memory_available: 81920, cpu_cores_available: 32, current_jobs: 0 });
    expect(ack.body).toMatchObject({ price_per_gpu_hour: 3, labels: { zone: 'eu' } });
    const dave = user('cost-dave');
    const r = await submit(dave, { gpu_memory_required: 81920, cpu_cores_required: 1, memory_required: 1024, timeout_seconds: 1800 });
    // The worst case follows the fleet's highest price.
    expect(r.body.worst_case_cost).toBeCloseTo(0.5 * (3 + 0.01 + 0.001), 6);
    const { done } = await run(r.body.id, 'gpu-80g', 20, [0]);
    expect(done.hourly_rate).toBeCloseTo(3 + 0.01 + 0.001, 6);
    await t.req('PATCH', `/nodes/${node.nodeId}`, { token: t.tokens.admin, body: { price_per_gpu_hour: 2.4 } });
  });
});

describe('usage', () => {
  it('sums the ledger: own usage for users, any user and grouped by user or node for admins', async () => {
    const erin = user('usage-erin');
    const frank = user('usage-frank');
    const costs: Record<string, number> = { 'usage-erin': 0, 'usage-frank': 0 };
    for (const [token, name] of [
      [erin, 'usage-erin'],
      [erin, 'usage-erin'],
      [frank, 'usage-frank'],
    ] as const) {
      const r = await submit(token, { gpu_memory_required: 8192 });
      const { done } = await run(r.body.id, 'gpu-8g', 30, [0]);
      costs[name] = (costs[name] ?? 0) + done.cost;
    }
    const own = (await t.req('GET', '/usage/', { token: erin })).body;
    expect(own.groups).toEqual([
      { key: 'usage-erin', jobs: 2, gpu_hours: expect.any(Number), cost: expect.closeTo(costs['usage-erin'] ?? 0, 5) },
    ]);
    expect((await t.req('GET', '/usage/?user_id=usage-frank', { token: erin })).status).toBe(403);

    const byUser = (await t.req('GET', '/usage/?group_by=user', { token: t.tokens.admin })).body;
    const frankRow = byUser.groups.find((g: { key: string }) => g.key === 'usage-frank');
    expect(frankRow).toMatchObject({ jobs: 1, cost: expect.closeTo(costs['usage-frank'] ?? 0, 5) });
    const byNode = (await t.req('GET', '/usage/?group_by=node', { token: t.tokens.admin })).body;
    expect(byNode.groups.map((g: { key: string }) => g.key)).toEqual([node.nodeId]);
    expect(byNode.total.jobs).toBe(byUser.total.jobs);
    expect(byNode.total.cost).toBeCloseTo(byUser.total.cost, 5);

    const past = (await t.req('GET', '/usage/?from=2020-01-01T00:00:00Z&to=2020-12-31T00:00:00Z', { token: t.tokens.admin })).body;
    expect(past.total.jobs).toBe(0);
    expect((await t.req('GET', '/usage/?from=yesterday', { token: erin })).body.fields[0].field).toBe('from');
    expect((await t.req('GET', '/usage/?group_by=gpu', { token: erin })).status).toBe(400);
  });
});

describe('budgets', () => {
  it('refuses a submission whose worst case would exceed what is left, saying how much is left', async () => {
    const gina = user('budget-gina');
    expect((await t.req('PUT', '/users/budget-gina/limits', { token: gina, body: { money_budget: 10 } })).status).toBe(403);
    const set = await t.req('PUT', '/users/budget-gina/limits', {
      token: t.tokens.admin,
      body: { money_budget: 5, gpu_hours_budget: 3, budget_period: 'day' },
    });
    expect(set.status).toBe(200);
    expect(set.body).toMatchObject({ money_budget: 5, gpu_hours_budget: 3, budget_period: 'day', held_money: 0 });

    // 1 h at 2.4 + a bit: within 5; a second one would hold 4.8 + ... > 5.
    const first = await submit(gina, { gpu_memory_required: 81920, timeout_seconds: 3600, cpu_cores_required: 1, memory_required: 1024 });
    expect(first.status).toBe(201);
    const second = await submit(gina, { gpu_memory_required: 81920, timeout_seconds: 3600, cpu_cores_required: 1, memory_required: 1024 });
    expect(second.status).toBe(402);
    expect(second.body.error).toBe('budget_exceeded');
    expect(second.body.message).toMatch(
      /^over budget: this submission could cost up to [\d.]+, and [\d.]+ of the daily budget of 5 is left/,
    );
    // GPU-hours too: 4 h of one GPU > 3.
    const long = await submit(gina, { gpu_memory_required: 1024, timeout_seconds: 4 * 3600, max_price_per_hour: 0.1 });
    expect(long.status).toBe(402);
    expect(long.body.message).toContain('GPU-hours');

    // Cancelling the queued job gives its hold back.
    await t.req('POST', `/jobs/${first.body.id}/cancel`, { token: gina });
    expect((await t.req('GET', '/users/budget-gina/limits', { token: gina })).body.held_money).toBe(0);
    expect(
      (await submit(gina, { gpu_memory_required: 81920, timeout_seconds: 3600, cpu_cores_required: 1, memory_required: 1024 })).status,
    ).toBe(201);
    expect((await t.req('GET', '/users/budget-gina/limits', { token: t.tokens.bob })).status).toBe(403);
  });

  it('a batch is refused whole when it does not fit the budget', async () => {
    // One job's worst case is just over 3 (the fleet's dearest GPU, an hour): room for one, not two.
    await t.req('PUT', '/users/budget-hank/limits', { token: t.tokens.admin, body: { money_budget: 4, budget_period: 'total' } });
    const hank = user('budget-hank');
    const one = {
      docker_image: 'busybox',
      gpu_memory_required: 81920,
      timeout_seconds: 3600,
      cpu_cores_required: 1,
      memory_required: 1024,
    };
    const r = await t.req('POST', '/jobs/batch', { token: hank, body: { jobs: [one, one] } });
    expect(r.status).toBe(402);
    expect((await t.req('GET', '/jobs/', { token: hank })).body.items).toHaveLength(0);
    expect((await t.req('POST', '/jobs/batch', { token: hank, body: { jobs: [one] } })).status).toBe(201);
  });

  it('spend is checked against the ledger: what jobs cost is what is spent', async () => {
    await t.req('PUT', '/users/budget-ivy/limits', { token: t.tokens.admin, body: { money_budget: 100, budget_period: 'month' } });
    const ivy = user('budget-ivy');
    const r = await submit(ivy, { gpu_memory_required: 40960, timeout_seconds: 3600 });
    expect((await t.req('GET', '/users/budget-ivy/limits', { token: ivy })).body.held_money).toBeGreaterThan(0);
    const { done } = await run(r.body.id, 'gpu-48g', 40, [0]);
    const limits = (await t.req('GET', '/users/budget-ivy/limits', { token: ivy })).body;
    expect(limits).toMatchObject({ held_money: 0, spent_money: expect.closeTo(done.cost, 5) });
  });
});

describe('fair share', () => {
  it('a user at the cap of running jobs: the next claim is refused, agents are told, the job waits and says why', async () => {
    await t.req('PUT', '/users/fair-jack/limits', { token: t.tokens.admin, body: { max_running_jobs: 1 } });
    const jack = user('fair-jack');
    const a = (await submit(jack, {})).body.id;
    const b = (await submit(jack, {})).body.id;
    const first = await claimer.claim('cpu');
    const ok = await t.req('POST', `/jobs/${a}/status`, { token: node.apiKey, body: { status: 'assigned', lock_token: first.token } });
    expect(ok.status).toBe(200);
    const second = await claimer.claim('cpu');
    const refused = await t.req('POST', `/jobs/${b}/status`, {
      token: node.apiKey,
      body: { status: 'assigned', lock_token: second.token },
    });
    expect(refused.status).toBe(409);
    expect(refused.body.error).toBe('fair_share');
    const ack = await heartbeat(t, node.nodeId, node.apiKey, { gpu_memory_available: 81920, cpu_cores_available: 32, current_jobs: 1 });
    expect(ack.body.capped_users).toContain('fair-jack');
    await second.job.moveToWait(second.token);
    expect((await t.req('GET', `/jobs/${b}`, { token: jack })).body.wait_reason).toBe(
      'fair share: fair-jack has 1 jobs running, the cap is 1',
    );

    await t.req('POST', `/jobs/${a}/status`, { token: node.apiKey, body: { status: 'succeeded', lock_token: first.token } });
    const after = await heartbeat(t, node.nodeId, node.apiKey, { gpu_memory_available: 81920, cpu_cores_available: 32, current_jobs: 0 });
    expect(after.body.capped_users).not.toContain('fair-jack');
  });
});

describe('batch submission', () => {
  it('takes up to 1,000 jobs at once and names the bad field of each bad one', async () => {
    const kim = user('batch-kim');
    const jobs = Array.from({ length: 250 }, (_, i) => ({
      docker_image: 'busybox',
      gpu_memory_required: (i % 4) * 8192,
      job_name: `b-${i}`,
    }));
    const r = await t.req('POST', '/jobs/batch', { token: kim, body: { jobs } });
    expect(r.status).toBe(201);
    expect(r.body.items).toHaveLength(250);
    expect(new Set(r.body.items.map((j: { tier: string }) => j.tier))).toEqual(new Set(['cpu', 'gpu-8g', 'gpu-16g', 'gpu-24g']));
    expect((await t.req('GET', '/jobs/?limit=500', { token: kim })).body.items).toHaveLength(250);

    const bad = await t.req('POST', '/jobs/batch', {
      token: kim,
      body: { jobs: [{ docker_image: 'busybox' }, { docker_image: 'busybox', gpu_memory_required: 500000 }, { docker_image: 'Bad Name' }] },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.fields.map((f: { field: string }) => f.field)).toEqual(['jobs.1.gpu_memory_required', 'jobs.2.docker_image']);
    expect((await t.req('GET', '/jobs/?limit=500', { token: kim })).body.items).toHaveLength(250);
    const tooMany = await t.req('POST', '/jobs/batch', {
      token: kim,
      body: { jobs: Array.from({ length: 1001 }, () => ({ docker_image: 'busybox' })) },
    });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.fields[0].field).toBe('jobs');
  });
});
