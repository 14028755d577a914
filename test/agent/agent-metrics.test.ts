import { createServer } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';
import { type Exposition, parseExposition } from '../support/prometheus.js';

const MIB = 1024 * 1024;

let t: TestApi;
const agents: Agent[] = [];

beforeAll(async () => {
  t = await startTestApi('agent-metrics', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1000' });
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop(0)));
});
afterAll(async () => t.close());

async function scrape(a: Agent): Promise<Exposition> {
  if (a.metricsUrl === null) throw new Error('the agent serves no metrics');
  const res = await fetch(a.metricsUrl);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(await res.text());
}

describe("an agent's /metrics", () => {
  it('shows the jobs it claimed and ran, what its GPUs hold while a job runs, and its heartbeats', async () => {
    const a = await startAgent(t, { IMAGEPOD_SIMULATED_GPUS: '2x24564:RTX 4090' });
    agents.push(a);
    const jobs = jobsOf(t);
    const node = a.config.node.name;

    const ok = await jobs.submit({
      docker_image: 'busybox',
      command: ['sh', '-c', 'echo done'],
      gpu_memory_required: 1000,
      memory_required: 64,
    });
    expect(await jobs.finished(ok)).toMatchObject({ status: 'succeeded' });
    const long = await jobs.submit({ docker_image: 'busybox', command: ['sleep', '30'], gpu_memory_required: 6000, memory_required: 64 });
    await jobs.status(long, 'running');

    const during = await waitFor('the running job on the books', async () => {
      const m = await scrape(a);
      return m.value('imagepod_agent_running_jobs') === 1 ? m : undefined;
    });
    const held = (g: string) => during.value('imagepod_agent_gpu_memory_reserved_bytes', { gpu: g, model: 'RTX 4090' });
    // The job holds 6000 MiB on one GPU, whichever the agent chose.
    expect([held('0'), held('1')].sort()).toEqual([0, 6000 * MIB]);
    const busy = held('0') === 0 ? '1' : '0';
    expect(during.value('imagepod_agent_gpu_memory_free_bytes', { gpu: busy })).toBe((24564 - 6000) * MIB);
    expect(during.value('imagepod_agent_gpu_memory_total_bytes', { gpu: busy, model: 'RTX 4090' })).toBe(24564 * MIB);

    expect((await t.req('POST', `/jobs/${long}/cancel`, { token: t.tokens.alice })).status).toBe(200);
    expect(await jobs.finished(long)).toMatchObject({ status: 'cancelled' });

    const m = await waitFor('both jobs counted as ended', async () => {
      const s = await scrape(a);
      return s.value('imagepod_agent_jobs_finished_total', { status: 'cancelled' }) === 1 ? s : undefined;
    });
    expect(m.value('imagepod_agent_jobs_claimed_total')).toBe(2);
    expect(m.value('imagepod_agent_jobs_finished_total', { status: 'succeeded' })).toBe(1);
    expect(m.value('imagepod_agent_running_jobs')).toBe(0);
    for (const g of ['0', '1']) {
      expect(m.value('imagepod_agent_gpu_memory_total_bytes', { gpu: g, model: 'RTX 4090' })).toBe(24564 * MIB);
      expect(m.value('imagepod_agent_gpu_memory_free_bytes', { gpu: g, model: 'RTX 4090' })).toBe(24564 * MIB);
      expect(m.value('imagepod_agent_gpu_memory_reserved_bytes', { gpu: g, model: 'RTX 4090' })).toBe(0);
    }
    // Simulated GPUs report no utilization, so there is none to show.
    expect(m.find('imagepod_agent_gpu_utilization_ratio')).toEqual([]);

    expect(m.value('imagepod_agent_heartbeat_last_success_timestamp_seconds')).toBeGreaterThan(Date.parse('2024-01-01') / 1000);
    expect(m.value('imagepod_agent_heartbeat_failures_total')).toBe(0);
    expect(m.value('imagepod_agent_claim_scan_seconds_count')).toBeGreaterThanOrEqual(2);
    // Every series names its node, so it joins the API's per-node series.
    expect(m.samples.every((s) => s.labels.node === node)).toBe(true);
    expect(m.types.get('process_resident_memory_bytes')).toBe('gauge');

    const other = await fetch(a.metricsUrl?.replace('/metrics', '/') ?? '');
    expect(other.status).toBe(404);
  });

  it('counts heartbeats the API does not accept', async () => {
    const a = await startAgent(t);
    agents.push(a);
    // An admin deletes the node: its next beats are refused.
    expect((await t.req('DELETE', `/nodes/${a.identity.node_id}`, { token: t.tokens.admin })).status).toBe(204);
    const m = await waitFor('a refused beat', async () => {
      const s = await scrape(a);
      return (s.value('imagepod_agent_heartbeat_failures_total') ?? 0) >= 1 ? s : undefined;
    });
    expect(m.value('imagepod_agent_heartbeat_failures_total')).toBeGreaterThanOrEqual(1);
  });

  it('can be turned off, and a port already taken costs only the metrics', async () => {
    const off = await startAgent(t, { IMAGEPOD_AGENT_METRICS_PORT: 'off' });
    expect(off.metricsUrl).toBeNull();
    await off.stop(0);

    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const a = await startAgent(t, { IMAGEPOD_AGENT_METRICS_PORT: String(port) });
      agents.push(a);
      expect(a.metricsUrl).toBeNull();
      const ok = await jobsOf(t).submit({ docker_image: 'busybox', command: ['true'], memory_required: 64 });
      expect(await jobsOf(t).finished(ok)).toMatchObject({ status: 'succeeded' });
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
