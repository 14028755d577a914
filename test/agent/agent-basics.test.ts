import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

let t: TestApi;
const agents: Agent[] = [];

beforeAll(async () => {
  t = await startTestApi('agent-basics', {
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200',
    IMAGEPOD_HEARTBEAT_TTL_MS: '1000',
    IMAGEPOD_JOB_LOG_MAX_LINES: '50',
  });
});
// Each test brings its own agents: one left running would take the next test's jobs.
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop(0)));
});
afterAll(async () => t.close());

const submit = (body: Record<string, unknown>) => jobsOf(t).submit(body);
const finished = (id: string) => jobsOf(t).finished(id);

describe('an agent', () => {
  it('registers its node with operator labels, prices and limits, shows simulated GPUs, and keeps its identity across restarts', async () => {
    const env = {
      IMAGEPOD_SIMULATED_GPUS: '2x24564:RTX 4090',
      IMAGEPOD_NODE_LABELS: 'zone=eu-1,team=ml',
      IMAGEPOD_PRICE_PER_GPU_HOUR: '0.79',
      IMAGEPOD_MAX_CONCURRENT_JOBS: '3',
    };
    const a = await startAgent(t, env);
    const nodeId = a.identity.node_id;
    const node = await waitFor('node online', async () => {
      const n = (await t.req('GET', `/nodes/${nodeId}`, { token: t.tokens.alice })).body;
      return n.status === 'online' ? n : undefined;
    });
    expect(node).toMatchObject({
      gpu_count: 2,
      gpu_type: 'RTX 4090',
      gpu_memory_total: 24564,
      simulated_gpus: true,
      labels: { zone: 'eu-1', team: 'ml' },
      price_per_gpu_hour: 0.79,
      max_concurrent_jobs: 3,
      health_status: 'healthy',
    });
    expect(node.gpus.map((g: { memory_free: number }) => g.memory_free)).toEqual([24564, 24564]);

    await a.stop(0);
    const again = await startAgent(t, { ...env, IMAGEPOD_AGENT_STATE_DIR: a.config.stateDir, IMAGEPOD_NODE_NAME: a.config.node.name });
    agents.push(again);
    expect(again.identity.node_id).toBe(nodeId);
    const listed = (await t.req('GET', '/nodes/?limit=500', { token: t.tokens.admin })).body.items.filter(
      (n: { node_name: string }) => n.node_name === a.config.node.name,
    );
    expect(listed).toHaveLength(1);
  });

  it('runs a job from submission to result, with logs; a failing one fails with its exit code', async () => {
    const a = await startAgent(t);
    agents.push(a);
    const ok = await submit({
      docker_image: 'busybox',
      command: ['sh', '-c'],
      args: ['echo working on "$(cat "$IMAGEPOD_INPUT_FILE")"; echo \'{"score": 0.9}\' > "$IMAGEPOD_OUTPUT_DIR/result.json"'],
      input_data: { n: 7 },
      memory_required: 64,
    });
    const done = await finished(ok);
    expect(done).toMatchObject({ status: 'succeeded', exit_code: 0, node_id: a.identity.node_id, attempts: 1 });
    expect(done.result.data).toEqual({ score: 0.9 });
    const logs = (await t.req('GET', `/jobs/${ok}/logs`, { token: t.tokens.alice })).body.items.map((l: { text: string }) => l.text);
    expect(logs).toEqual(['working on {"n":7}', 'job ended: succeeded']);

    const bad = await submit({ docker_image: 'busybox', command: ['sh', '-c', 'echo nope >&2; exit 4'], memory_required: 64 });
    expect(await finished(bad)).toMatchObject({ status: 'failed', exit_code: 4, status_reason: 'non_zero_exit' });
    // Node counters follow the job's end by a moment (the same report updates them after the job).
    const stats = await waitFor('node stats', async () => {
      const s = (await t.req('GET', `/nodes/${a.identity.node_id}/stats`, { token: t.tokens.alice })).body;
      return s.jobs_run === 2 ? s : undefined;
    });
    expect(stats).toMatchObject({ jobs_run: 2, jobs_succeeded: 1, jobs_failed: 1 });
  });

  it('caps a chatty job’s log at the API’s line limit, and says so', async () => {
    const a = await startAgent(t);
    agents.push(a);
    const id = await submit({
      docker_image: 'busybox',
      command: ['sh', '-c', 'i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done'],
      memory_required: 64,
    });
    expect((await finished(id)).status).toBe('succeeded');
    const lines = (await t.req('GET', `/jobs/${id}/logs?limit=1000`, { token: t.tokens.alice })).body.items.map(
      (l: { text: string }) => l.text,
    );
    expect(lines.slice(0, 3)).toEqual(['line 0', 'line 1', 'line 2']);
    expect(lines).toContain('log truncated: this job wrote more than 50 lines');
    expect(lines.filter((l: string) => l.startsWith('line '))).toHaveLength(50);
  });

  it('retries a failed job when it has retries left, then fails it', async () => {
    const a = await startAgent(t);
    agents.push(a);
    const id = await submit({ docker_image: 'busybox', command: ['sh', '-c', 'exit 9'], max_retries: 2, memory_required: 64 });
    expect(await finished(id)).toMatchObject({ status: 'failed', attempts: 3, exit_code: 9 });
  });

  it('goes offline after the heartbeat TTL once stopped', async () => {
    const a = await startAgent(t);
    const nodeId = a.identity.node_id;
    await a.stop(0);
    await waitFor(
      'offline',
      async () => (await t.req('GET', `/nodes/${nodeId}`, { token: t.tokens.alice })).body.status === 'offline',
      5000,
    );
  });
});
