import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { Keys } from '../../src/redis/keys.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

/**
 * The reservation rule: a 70 GiB job waiting behind a stream of 4 GiB jobs on 80 GiB agents
 * starts within the bound. One agent holds the reservation and drains its GPU for it.
 */
const BOUND_MS = 2000;
const SMALL_JOB_S = 1.5;
let t: TestApi;
const agents: Agent[] = [];

beforeAll(async () => {
  t = await startTestApi('reservation', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' });
  for (const name of ['big-1', 'big-2']) {
    agents.push(
      await startAgent(t, {
        IMAGEPOD_NODE_NAME: name,
        IMAGEPOD_SIMULATED_GPUS: '1x81920:A100 80GB',
        IMAGEPOD_MAX_CONCURRENT_JOBS: '6',
        IMAGEPOD_STARVATION_MS: String(BOUND_MS),
      }),
    );
  }
});
afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop(0)));
  await t.close();
});

describe('reservation', () => {
  it('a 70 GiB job behind a stream of 4 GiB jobs starts within the bound (plus the drain)', async () => {
    const jobs = jobsOf(t);
    const small: string[] = [];
    let streaming = true;
    const stream = (async () => {
      while (streaming) {
        small.push(
          await jobs.submit({
            docker_image: 'busybox',
            command: ['sleep', String(SMALL_JOB_S)],
            gpu_memory_required: 4096,
            memory_required: 16,
            cpu_cores_required: 0.01,
          }),
        );
        await new Promise((r) => setTimeout(r, 60));
      }
    })();
    // Let the stream fill both GPUs and the queue.
    await new Promise((r) => setTimeout(r, 2000));
    const big = await jobs.submit({
      docker_image: 'busybox',
      command: ['sleep', '0.5'],
      gpu_memory_required: 71680,
      memory_required: 16,
      cpu_cores_required: 0.01,
    });
    // Once past the bound, one node holds the reservation (a key only one can set).
    const reservationKey = `${new Keys(t.prefix).bullJob('gpu-80g', big)}:ip-reserved`;
    // The value names the holder and by when the job could start there at the latest.
    const held = await waitFor('a reservation', async () => (await t.redis.get(reservationKey)) ?? undefined, 10_000);
    const [holderName, shadow] = held.split('|');
    expect(['big-1', 'big-2']).toContain(holderName);
    // The small jobs hold the default one-day limit (and the 90 s allowance for a pull and a
    // stop), so the latest start is about a day out.
    expect(Number(shadow) - Date.now()).toBeGreaterThan(86_400_000 - 60_000);
    expect(Number(shadow) - Date.now()).toBeLessThanOrEqual(86_400_000 + 90_000);
    const started = await jobs.status(big, 'running', 20_000);
    streaming = false;
    await stream;

    const waited = Date.parse(started.started_at) - Date.parse(started.created_at);
    // It waits the bound, then the small jobs on the held GPU finish; never longer.
    expect(waited).toBeLessThan(BOUND_MS + SMALL_JOB_S * 1000 + 2000);
    expect(waited).toBeGreaterThan(BOUND_MS * 0.5);
    // It ran where the room was held, and the reservation is gone.
    const holder = agents.find((a) => a.config.node.name === holderName);
    expect(started.node_id).toBe(holder?.identity.node_id);
    expect(await t.redis.exists(reservationKey)).toBe(0);
    for (const id of small) await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
  }, 60_000);
});
