import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';

/**
 * Three agents with 8, 24 and 80 GiB GPUs and a mixed queue: every job runs where it fits,
 * none is lost or run twice, and a 70 GiB job is not starved by a stream of small ones.
 */
let t: TestApi;
const agents: Agent[] = [];
const CAPACITY = new Map<string, number>();

beforeAll(async () => {
  t = await startTestApi('claiming', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' });
  for (const [gpu, mib] of [
    ['RTX A4000', 8192],
    ['RTX 4090', 24564],
    ['A100 80GB', 81920],
  ] as const) {
    const a = await startAgent(t, {
      IMAGEPOD_SIMULATED_GPUS: `1x${mib}:${gpu}`,
      IMAGEPOD_MAX_CONCURRENT_JOBS: '4',
      IMAGEPOD_STARVATION_MS: '1500',
    });
    agents.push(a);
    CAPACITY.set(a.identity.node_id, mib);
  }
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop(0)));
  await t.close();
});

async function submit(mib: number, seconds: number, extra: Record<string, unknown> = {}) {
  const r = await t.req('POST', '/jobs/', {
    token: t.tokens.alice,
    body: {
      docker_image: 'busybox',
      command: ['sh', '-c', `echo start; sleep ${seconds}; echo end`],
      gpu_memory_required: mib,
      memory_required: 16,
      cpu_cores_required: 0.1,
      ...extra,
    },
  });
  if (r.status !== 201) throw new Error(r.text);
  return r.body.id as string;
}
const view = async (id: string) => (await t.req('GET', `/jobs/${id}`, { token: t.tokens.admin })).body;

describe('fit-aware claiming', () => {
  it('runs every job of a mixed queue on an agent where it fits, once', async () => {
    const sizes = [2048, 4096, 8192, 10000, 16384, 20000, 24000, 30000, 48000, 70000, 80000, 1000, 6000, 12000, 40000, 0];
    const ids = new Map<string, number>();
    for (let i = 0; i < 3; i++) for (const mib of sizes) ids.set(await submit(mib, 0.2), mib);

    const results = await waitFor(
      'all jobs to end',
      async () => {
        const vs = await Promise.all([...ids.keys()].map(view));
        return vs.every((v) => v.status === 'succeeded' || v.status === 'failed') ? vs : undefined;
      },
      60_000,
    );
    for (const v of results) {
      expect(v.status, JSON.stringify(v)).toBe('succeeded');
      expect(v.attempts).toBe(1);
      expect(CAPACITY.get(v.node_id)).toBeGreaterThanOrEqual(v.gpu_memory_required);
    }
    // Each job's log shows one run: one start, one end.
    for (const id of ids.keys()) {
      const lines = (await t.req('GET', `/jobs/${id}/logs`, { token: t.tokens.admin })).body.items.map((l: { text: string }) => l.text);
      expect(lines.filter((l: string) => l === 'start')).toHaveLength(1);
    }
    // The 80 GiB node ran the big ones; the small nodes worked too.
    const byNode = new Map<string, number>();
    for (const v of results) byNode.set(v.node_id, (byNode.get(v.node_id) ?? 0) + 1);
    expect(byNode.size).toBe(3);
  }, 90_000);

  it('a 70 GiB job is not starved by a stream of small jobs', async () => {
    let streaming = true;
    const small: string[] = [];
    const stream = (async () => {
      while (streaming) {
        // 12 GiB jobs (they fit the 24 and 80 GiB nodes), arriving faster than they end, so the
        // 80 GiB node always has one running and never has 70 GiB free unless it holds room.
        small.push(await submit(12000, 1));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await new Promise((r) => setTimeout(r, 1500));
    const big = await submit(70000, 0.2);
    const bigDone = await waitFor(
      'the 70 GiB job to run',
      async () => {
        const v = await view(big);
        return v.status === 'succeeded' ? v : undefined;
      },
      30_000,
    );
    streaming = false;
    await stream;
    expect(CAPACITY.get(bigDone.node_id)).toBe(81920);
    expect(small.length).toBeGreaterThan(10);
  }, 60_000);
});
