import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { loadApiConfig } from '../../src/config/api-config.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { call } from '../support/http.js';
import { jobsOf } from '../support/jobs.js';
import { type Exposition, parseExposition } from '../support/prometheus.js';

const MIB = 1024 * 1024;
const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

let t: TestApi;
let agent: Agent;

beforeAll(async () => {
  t = await startTestApi('metrics', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1000' });
  agent = await startAgent(t, { IMAGEPOD_SIMULATED_GPUS: '2x24564:RTX 4090' });
});
afterAll(async () => {
  await agent?.stop(0);
  await t?.close();
});

async function scrape(base: string, token?: string): Promise<Exposition> {
  const r = await call(base, 'GET', '/metrics', { token });
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.text}`);
  expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return parseExposition(r.text);
}

describe('the API /metrics', () => {
  it('counts a job from submission to its end, shows the queues and the nodes, and times routes by pattern', async () => {
    const jobs = jobsOf(t);
    const nodeName = agent.config.node.name;
    await waitFor('the node online', async () => (await scrape(t.url)).value('imagepod_nodes', { status: 'online' }) === 1);

    // One job runs to the end on the agent's CPU; one asks for more GPU memory than any node has and waits.
    const ran = await jobs.submit({ docker_image: 'busybox', command: ['sh', '-c', 'echo hi'], memory_required: 64 });
    const waiting = await jobs.submit({ docker_image: 'busybox', gpu_memory_required: 40_000, gpu_count: 2 });
    expect(await jobs.finished(ran)).toMatchObject({ status: 'succeeded' });
    const cancelled = await jobs.submit({ docker_image: 'busybox', gpu_memory_required: 40_000 });
    expect((await t.req('POST', `/jobs/${cancelled}/cancel`, { token: t.tokens.alice })).status).toBe(200);

    // BullMQ completes the job just after the API records its end.
    const m = await waitFor('the finished job completed in its queue', async () => {
      const s = await scrape(t.url);
      return s.value('imagepod_queue_jobs', { queue: 'cpu', state: 'completed' }) === 1 ? s : undefined;
    });

    expect(m.value('imagepod_jobs_submitted_total', { tier: 'cpu' })).toBe(1);
    expect(m.value('imagepod_jobs_submitted_total', { tier: 'gpu-48g' })).toBe(2);
    expect(m.value('imagepod_jobs_started_total', { tier: 'cpu' })).toBe(1);
    expect(m.value('imagepod_jobs_finished_total', { tier: 'cpu', status: 'succeeded' })).toBe(1);
    expect(m.value('imagepod_jobs_finished_total', { tier: 'gpu-48g', status: 'cancelled' })).toBe(1);
    expect(m.value('imagepod_job_submit_to_start_seconds_count', { tier: 'cpu' })).toBe(1);
    expect(m.value('imagepod_job_run_seconds_count', { tier: 'cpu', status: 'succeeded' })).toBe(1);
    expect(m.value('imagepod_job_run_seconds_bucket', { tier: 'cpu', status: 'succeeded', le: '+Inf' })).toBe(1);

    // Waiting jobs carry a priority, so BullMQ keeps them as `prioritized`.
    expect(m.value('imagepod_queue_jobs', { tier: 'gpu-48g', queue: 'gpu-48g', state: 'prioritized' })).toBe(1);
    expect(m.value('imagepod_queue_jobs', { tier: 'cpu', queue: 'cpu', state: 'active' })).toBe(0);
    expect(m.value('imagepod_queue_pending_jobs', { tier: 'gpu-48g' })).toBe(1);
    expect(m.value('imagepod_queue_pending_gpu_memory_bytes', { tier: 'gpu-48g' })).toBe(2 * 40_000 * MIB);
    expect(m.value('imagepod_queue_pending_jobs', { tier: 'cpu' })).toBe(0);

    expect(m.value('imagepod_nodes', { status: 'online' })).toBe(1);
    expect(m.value('imagepod_nodes', { status: 'offline' })).toBe(0);
    expect(m.value('imagepod_node_gpu_memory_total_bytes', { node: nodeName, gpu: '1' })).toBe(24564 * MIB);
    expect(m.value('imagepod_node_gpu_memory_free_bytes', { node: nodeName, gpu: '0' })).toBe(24564 * MIB);
    expect(m.value('imagepod_node_heartbeat_age_seconds', { node: nodeName })).toBeGreaterThanOrEqual(0);

    // Requests are timed by route pattern: the job ids in the URLs never become labels.
    const http = m.find('imagepod_http_request_duration_seconds_count');
    const routes = new Set(http.map((s) => s.labels.route));
    expect(routes).toContain('/gpu-workers/jobs/:jobId');
    expect(routes).toContain('/gpu-workers/jobs/:jobId/cancel');
    expect(
      m.value('imagepod_http_request_duration_seconds_count', { method: 'POST', route: '/gpu-workers/jobs', status_code: '201' }),
    ).toBe(3);
    for (const r of routes) expect(r).not.toMatch(UUID);
    expect(m.samples.some((s) => Object.values(s.labels).some((v) => v.includes(waiting) || v.includes(ran)))).toBe(false);

    // And the process' own metrics.
    expect(m.types.get('process_cpu_user_seconds_total')).toBe('counter');
    expect(m.types.get('nodejs_heap_size_used_bytes')).toBe('gauge');
  });

  it('labels requests that no route answered as unmatched, whatever their path', async () => {
    await call(t.url, 'GET', '/gpu-workers/no-such-thing/123e4567-e89b-12d3-a456-426614174000', { token: t.tokens.alice });
    await call(t.url, 'GET', `/gpu-workers/jobs/${'0'.repeat(8)}`);
    const m = await scrape(t.url);
    const unmatched = m.find('imagepod_http_request_duration_seconds_count', { route: 'unmatched' });
    expect(unmatched.map((s) => s.labels.status_code)).toEqual(expect.arrayContaining(['404', '401']));
    for (const s of m.find('imagepod_http_request_duration_seconds_count')) expect(s.labels.route).not.toMatch(UUID);
  });
});

describe('IMAGEPOD_METRICS_TOKEN', () => {
  it('when set, /metrics needs it as a Bearer token', async () => {
    const token = 'metrics-token-0123456789';
    const locked = await startTestApi('metrics-token', { IMAGEPOD_METRICS_TOKEN: token });
    try {
      const none = await call(locked.url, 'GET', '/metrics');
      expect(none.status).toBe(401);
      expect(none.body).toMatchObject({ error: 'unauthorized' });
      expect(none.text).not.toContain('imagepod_');
      expect((await call(locked.url, 'GET', '/metrics', { token: `${token}x` })).status).toBe(401);
      expect((await call(locked.url, 'GET', '/metrics', { token: t.tokens.admin })).status).toBe(401);
      const m = await scrape(locked.url, token);
      expect(m.types.get('imagepod_jobs_submitted_total')).toBe('counter');
    } finally {
      await locked.close();
    }
  });

  it('is refused when too short to be a secret', () => {
    const env = { IMAGEPOD_JWT_SECRET: 'x'.repeat(32), IMAGEPOD_REGISTRATION_TOKEN: 'r'.repeat(16) };
    expect(() => loadApiConfig({ ...env, IMAGEPOD_METRICS_TOKEN: 'short' })).toThrow(/IMAGEPOD_METRICS_TOKEN: must be at least 16/);
    expect(loadApiConfig(env).metricsToken).toBeUndefined();
  });
});

describe('the Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(join(import.meta.dirname, '../../helm/imagepod/dashboards/imagepod.json'), 'utf8'));
  const exprs: string[] = dashboard.panels.flatMap((p: { targets: { expr: string }[] }) => p.targets.map((x) => x.expr));

  it('takes its Prometheus as an input and uses it in every panel', () => {
    expect(dashboard.__inputs).toEqual([expect.objectContaining({ name: 'DS_PROMETHEUS', type: 'datasource', pluginId: 'prometheus' })]);
    for (const p of dashboard.panels) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's placeholder for the input, filled in at import
      expect(p.datasource).toEqual({ type: 'prometheus', uid: '${DS_PROMETHEUS}' });
      expect(p.targets.length).toBeGreaterThan(0);
    }
    expect(exprs.length).toBeGreaterThanOrEqual(8);
  });

  it('queries only metrics that the API or an agent exposes', async () => {
    const api = await scrape(t.url);
    if (agent.metricsUrl === null) throw new Error('the test agent serves no metrics');
    const agentText = await (await fetch(agent.metricsUrl)).text();
    const exposed = new Set([...api.seriesNames, ...parseExposition(agentText).seriesNames]);
    const used = new Set(exprs.flatMap((e) => e.match(/\b(imagepod|process|nodejs)_[a-z0-9_]+/g) ?? []));
    expect(used.size).toBeGreaterThanOrEqual(10);
    const unknown = [...used].filter((name) => !exposed.has(name));
    expect(unknown).toEqual([]);
  });
});
