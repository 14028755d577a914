import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

/**
 * Three agents that differ in every way a job can ask for; each constraint alone and together
 * sends a job to the right one, and a job that fits none waits and says why.
 */
let t: TestApi;
const agents: Agent[] = [];
const nameOf = new Map<string, string>();

beforeAll(async () => {
  t = await startTestApi('constraints', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' });
  const specs: Record<string, string>[] = [
    {
      IMAGEPOD_NODE_NAME: 'node-a',
      IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090',
      IMAGEPOD_NODE_LABELS: 'zone=eu,team=ml',
      IMAGEPOD_PRICE_PER_GPU_HOUR: '1',
    },
    {
      IMAGEPOD_NODE_NAME: 'node-b',
      IMAGEPOD_SIMULATED_GPUS: '2x81920:A100 80GB',
      IMAGEPOD_NODE_LABELS: 'zone=us',
      IMAGEPOD_PRICE_PER_GPU_HOUR: '3',
    },
    { IMAGEPOD_NODE_NAME: 'node-c', IMAGEPOD_NODE_LABELS: 'zone=eu' },
  ];
  for (const env of specs) {
    const a = await startAgent(t, { ...env, IMAGEPOD_MAX_CONCURRENT_JOBS: '8' });
    agents.push(a);
    nameOf.set(a.identity.node_id, env.IMAGEPOD_NODE_NAME ?? '');
  }
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop(0)));
  await t.close();
});

const base = { docker_image: 'busybox', command: ['true'], cpu_cores_required: 0.1, memory_required: 16 };
async function ranOn(body: Record<string, unknown>): Promise<string | undefined> {
  const jobs = jobsOf(t);
  const done = await jobs.finished(await jobs.submit({ ...base, ...body }));
  expect(done.status, JSON.stringify(done)).toBe('succeeded');
  return nameOf.get(done.node_id);
}

describe('each constraint alone', () => {
  it.each([
    ['a GPU model', { gpu_type: 'RTX 4090', gpu_memory_required: 1000 }, 'node-a'],
    ['another GPU model', { gpu_type: 'NVIDIA A100-SXM4-80GB', gpu_memory_required: 1000 }, 'node-b'],
    ['a class of models', { gpu_type: 'H100|A100', gpu_memory_required: 1000 }, 'node-b'],
    ['a GPU count', { gpu_count: 2, gpu_memory_required: 1000 }, 'node-b'],
    ['memory per GPU', { gpu_memory_required: 30000 }, 'node-b'],
    ['node labels', { node_selector: { zone: 'us' } }, 'node-b'],
    ['a node by name', { node_name: 'node-c' }, 'node-c'],
    ['a price limit', { gpu_memory_required: 20000, max_price_per_hour: 0.8 }, 'node-b'],
  ])('%s', async (_, body, where) => {
    expect(await ranOn(body)).toBe(where);
  });
});

describe('together', () => {
  it('every constraint at once picks the one node that meets them all', async () => {
    expect(
      await ranOn({
        gpu_type: 'RTX 4090',
        gpu_count: 1,
        gpu_memory_required: 20000,
        node_selector: { zone: 'eu', team: 'ml' },
        node_name: 'node-a',
        max_price_per_hour: 1,
        cpu_cores_required: 0.5,
        memory_required: 256,
      }),
    ).toBe('node-a');
  });
});

describe('a job no node can run waits, and says why', () => {
  it.each([
    ['no node has the type', { gpu_type: 'H200', gpu_memory_required: 1000 }, 'no live node has a H200 GPU'],
    ['too many GPUs', { gpu_count: 4, gpu_memory_required: 1000 }, 'no live node has 4 GPUs with 1000 MiB each'],
    ['too much per GPU', { gpu_type: 'RTX 4090', gpu_memory_required: 30000 }, 'no live node has 1 RTX 4090 GPU with 30000 MiB each'],
    ['too many cores', { cpu_cores_required: 512 }, 'no live node that has the GPUs also has 512 CPU cores and 16 MiB RAM'],
    ['a node that is not there', { node_name: 'node-z' }, 'node node-z is not live, or cannot hold this job'],
    ['labels no node has', { node_selector: { zone: 'asia' } }, 'no live node that could hold it has the labels zone=asia'],
    [
      'a price too low',
      { gpu_memory_required: 20000, max_price_per_hour: 0.5 },
      'price too low: it pays at most 0.5/h, the cheapest node that could run it costs 0.732422/h',
    ],
  ])('%s', async (_, body, reason) => {
    const jobs = jobsOf(t);
    const id = await jobs.submit({ ...base, ...body });
    await new Promise((r) => setTimeout(r, 300));
    const v = (await t.req('GET', `/jobs/${id}`, { token: t.tokens.alice })).body;
    expect(v.status).toBe('queued');
    expect(v.wait_reason).toBe(reason);
    await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
  });

  it('a job that fits but finds every fitting node busy says so', async () => {
    const jobs = jobsOf(t);
    const long = await jobs.submit({ ...base, command: ['sleep', '30'], node_name: 'node-a', gpu_memory_required: 24000 });
    await jobs.status(long, 'running');
    const waiting = await jobs.submit({ ...base, node_name: 'node-a', gpu_memory_required: 24000 });
    await new Promise((r) => setTimeout(r, 300));
    expect((await t.req('GET', `/jobs/${waiting}`, { token: t.tokens.alice })).body.wait_reason).toBe(
      'the one node that could run it is busy',
    );
    await t.req('POST', `/jobs/${long}/cancel`, { token: t.tokens.alice });
    expect((await jobs.finished(waiting)).status).toBe('succeeded');
  });
});
