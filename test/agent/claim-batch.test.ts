import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { Keys } from '../../src/redis/keys.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';

/**
 * Batch claims: an agent that finds several jobs waiting takes as many as fit in one step (the
 * claim script takes each job's share off what is free and picks again), and never more than its
 * devices, cores, RAM and slots hold.
 */
let t: TestApi;
const agents: Agent[] = [];

beforeAll(async () => {
  t = await startTestApi('claim-batch', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' });
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop(0)));
  await t.close();
});

async function submit(body: Record<string, unknown>): Promise<string> {
  const r = await t.req('POST', '/jobs/', {
    token: t.tokens.alice,
    body: { docker_image: 'busybox', command: ['sh', '-c', 'sleep 1.5'], memory_required: 16, ...body },
  });
  if (r.status !== 201) throw new Error(r.text);
  return r.body.id as string;
}

interface Ran {
  id: string;
  gpus: number[];
  start: number;
  end: number;
  claimedAt: number;
}

/** Waits for every job to succeed; returns where and when each ran, and when BullMQ saw it claimed. */
async function ranAll(ids: readonly string[]): Promise<Ran[]> {
  const views = await waitFor(
    'every job to succeed',
    async () => {
      const vs = await Promise.all(ids.map(async (id) => (await t.req('GET', `/jobs/${id}`, { token: t.tokens.admin })).body));
      return vs.every((v) => v.status === 'succeeded') ? vs : undefined;
    },
    30_000,
  );
  const keys = new Keys(t.prefix);
  return Promise.all(
    views.map(async (v) => ({
      id: v.id as string,
      gpus: v.gpu_indices as number[],
      start: Date.parse(v.started_at as string),
      end: Date.parse(v.finished_at as string),
      // The claim script stamps every job it takes in one step with the same time.
      claimedAt: Number(await t.redis.hget(keys.bullJob(v.queue as string, v.id as string), 'processedOn')),
    })),
  );
}

/** The most that ever ran at once, by the jobs' own start and end times, per group. */
function peak(runs: readonly Ran[], weight: (r: Ran) => number): number {
  let most = 0;
  for (const r of runs) {
    const at = r.start + 1;
    most = Math.max(
      most,
      runs.filter((o) => o.start < at && o.end > at).reduce((s, o) => s + weight(o), 0),
    );
  }
  return most;
}

describe('batch claims', () => {
  it('takes the jobs that fit two 80 GiB GPUs in one step, two per device, and no more', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await submit({ gpu_memory_required: 30000, cpu_cores_required: 0.1 }));
    // The agent starts with all six waiting: its first claim sees them all.
    agents.push(
      await startAgent(t, {
        IMAGEPOD_SIMULATED_GPUS: '2x81920:A100 80GB',
        IMAGEPOD_MAX_CONCURRENT_JOBS: '8',
        IMAGEPOD_CLAIM_BATCH: '16',
      }),
    );
    const runs = await ranAll(ids);
    // Four fit at once (2 x 30 GiB on each 80 GiB device): they were taken in one claim.
    const byClaim = new Map<number, number>();
    for (const r of runs) byClaim.set(r.claimedAt, (byClaim.get(r.claimedAt) ?? 0) + 1);
    expect(Math.max(...byClaim.values())).toBe(4);
    // Never more than 80 GiB asked of one device at any moment.
    for (const gpu of [0, 1]) {
      expect(peak(runs, (r) => (r.gpus.includes(gpu) ? 30000 : 0))).toBeLessThanOrEqual(81920);
    }
    expect(runs.every((r) => r.gpus.length === 1)).toBe(true);
    await agents.pop()?.stop(0);
  });

  it('stops a batch at the free job slots', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await submit({ cpu_cores_required: 0.5 }));
    agents.push(await startAgent(t, { IMAGEPOD_MAX_CONCURRENT_JOBS: '3', IMAGEPOD_CLAIM_BATCH: '16' }));
    const runs = await ranAll(ids);
    const byClaim = new Map<number, number>();
    for (const r of runs) byClaim.set(r.claimedAt, (byClaim.get(r.claimedAt) ?? 0) + 1);
    // Three slots: the first claim took three, and no more ever ran at once.
    expect(Math.max(...byClaim.values())).toBe(3);
    expect(peak(runs, () => 1)).toBeLessThanOrEqual(3);
    await agents.pop()?.stop(0);
  });

  it('IMAGEPOD_CLAIM_BATCH=1 takes one job per step', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await submit({ cpu_cores_required: 0.1, command: ['sh', '-c', 'sleep 0.3'] }));
    agents.push(await startAgent(t, { IMAGEPOD_MAX_CONCURRENT_JOBS: '4', IMAGEPOD_CLAIM_BATCH: '1' }));
    const runs = await ranAll(ids);
    expect(new Set(runs.map((r) => r.claimedAt)).size).toBe(3);
    await agents.pop()?.stop(0);
  });
});
