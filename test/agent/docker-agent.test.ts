import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { LABEL } from '../../agent/executor/docker.js';
import { saveIdentity } from '../../agent/identity.js';
import { startAgent, waitFor } from '../support/agent.js';
import { registerNode, startTestApi, type TestApi } from '../support/api.js';
import { TEST_IMAGE, testDocker, testDockerHost } from '../support/docker.js';
import { jobsOf } from '../support/jobs.js';

/** Agents running real containers on the test's Docker engine, with GPUs from the nvidia-smi stand-in. */
const FIXTURES = join(import.meta.dirname, '../fixtures');
const NVIDIA_SMI = join(FIXTURES, 'bin/nvidia-smi');
let t: TestApi;
const agents: Agent[] = [];
let dockerEnv: Record<string, string>;

beforeAll(async () => {
  t = await startTestApi('docker-agent', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1000' });
  dockerEnv = {
    IMAGEPOD_EXECUTOR: 'docker',
    IMAGEPOD_DOCKER_HOST: testDockerHost(),
    IMAGEPOD_DOCKER_NETWORK: 'none',
    IMAGEPOD_PULL_POLICY: 'if-not-present',
  };
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop(0)));
  delete process.env.FAKE_NVIDIA_SMI_GPUS;
  delete process.env.FAKE_NVIDIA_SMI_FAIL;
});
afterAll(async () => t.close());

async function agent(env: Record<string, string> = {}) {
  const a = await startAgent(t, { ...dockerEnv, ...env });
  agents.push(a);
  return a;
}
const jobs = () => jobsOf(t);
const submit = (body: Record<string, unknown>) => jobs().submit({ docker_image: TEST_IMAGE, memory_required: 32, ...body });
const view = (id: string) => jobs().view(id);
const status = (id: string, s: string, ms?: number) => jobs().status(id, s, ms);
const node = async (id: string) => (await t.req('GET', `/nodes/${id}`, { token: t.tokens.admin })).body;
const containersOf = (jobId: string) => testDocker().listContainers({ all: true, filters: { label: [`${LABEL.jobId}=${jobId}`] } });

describe('discovery through nvidia-smi', () => {
  it('registers the GPUs nvidia-smi reports, and a 2-GPU job gets two distinct devices its container sees', async () => {
    process.env.FAKE_NVIDIA_SMI_GPUS = join(FIXTURES, 'nvidia-smi/8x-h100.csv');
    const a = await agent({ IMAGEPOD_NVIDIA_SMI: NVIDIA_SMI });
    const n = await node(a.identity.node_id);
    expect(n).toMatchObject({ gpu_count: 8, gpu_type: 'NVIDIA H100 80GB HBM3', gpu_memory_total: 81559, simulated_gpus: false });
    expect(n.gpus[3]).toMatchObject({ uuid: 'GPU-88fa9fb5-80ce-c54c-87e8-ce53d75cb59c', family: 'h100' });

    const id = await submit({
      gpu_count: 2,
      gpu_memory_required: 40000,
      gpu_type: 'H100',
      command: ['sh', '-c', 'echo "$NVIDIA_VISIBLE_DEVICES" > "$IMAGEPOD_OUTPUT_DIR/devices"'],
    });
    const done = await status(id, 'succeeded');
    const devices = Buffer.from(done.result.files[0].content_base64, 'base64').toString().trim().split(',');
    expect(devices).toHaveLength(2);
    expect(new Set(devices).size).toBe(2);
    for (const d of devices) expect(Number(d)).toBeGreaterThanOrEqual(0);
  });

  it('a GPU that reports errors is shown failed and kept from new jobs; the rest of the node works', async () => {
    process.env.FAKE_NVIDIA_SMI_GPUS = join(FIXTURES, 'nvidia-smi/8x-h100.csv');
    const a = await agent({ IMAGEPOD_NVIDIA_SMI: NVIDIA_SMI, IMAGEPOD_NODE_NAME: 'faulty-h100' });
    process.env.FAKE_NVIDIA_SMI_GPUS = join(FIXTURES, 'nvidia-smi/gpu-fault.csv');
    const degraded = await waitFor('degraded', async () => {
      const n = await node(a.identity.node_id);
      return n.health_status === 'degraded' ? n : undefined;
    });
    expect(degraded.status).toBe('online');
    expect(degraded.gpus[1]).toMatchObject({ healthy: false, error: expect.stringContaining('GPU requires reset') });
    expect(degraded.health_reasons.join()).toContain('GPU 1 failed');
    // GPUs 2-7 vanished from nvidia-smi's answer: also failed.
    expect(degraded.gpus.filter((g: { healthy: boolean }) => g.healthy)).toHaveLength(1);
    const one = await submit({ gpu_memory_required: 1000, gpu_type: 'H100', command: ['sh', '-c', 'echo "$NVIDIA_VISIBLE_DEVICES"'] });
    expect((await status(one, 'succeeded')).node_id).toBe(a.identity.node_id);
    const lines = (await t.req('GET', `/jobs/${one}/logs`, { token: t.tokens.alice })).body.items.map((l: { text: string }) => l.text);
    expect(lines[0]).toBe('0');
  });

  it('nvidia-smi failing makes the node unhealthy, with the reason; it recovers when nvidia-smi does', async () => {
    process.env.FAKE_NVIDIA_SMI_GPUS = join(FIXTURES, 'nvidia-smi/rtx4090.csv');
    const a = await agent({ IMAGEPOD_NVIDIA_SMI: NVIDIA_SMI, IMAGEPOD_NODE_NAME: 'driverless' });
    process.env.FAKE_NVIDIA_SMI_FAIL = join(FIXTURES, 'nvidia-smi/driver-error.txt');
    const sick = await waitFor('unhealthy', async () => {
      const n = await node(a.identity.node_id);
      return n.status === 'unhealthy' ? n : undefined;
    });
    expect(sick.health_reasons[0]).toContain("couldn't communicate with the NVIDIA driver");
    delete process.env.FAKE_NVIDIA_SMI_FAIL;
    await waitFor('healthy again', async () => (await node(a.identity.node_id)).status === 'online');
  });
});

describe('running containers', () => {
  it('cancel from the API reaches the owning agent and the container stops within seconds', async () => {
    await agent();
    const id = await submit({ command: ['sh', '-c', 'echo up; sleep 120'] });
    await status(id, 'running');
    expect(await containersOf(id)).toHaveLength(1);
    const t0 = Date.now();
    await t.req('POST', `/jobs/${id}/cancel`, { token: t.tokens.alice });
    await waitFor('container gone', async () => (await containersOf(id)).length === 0, 10_000);
    expect(Date.now() - t0).toBeLessThan(5000);
    const v = await view(id);
    expect(v).toMatchObject({ status: 'cancelled' });
    await waitFor('completed_at', async () => (await view(id)).completed_at !== null);
  });

  it('a missing image fails the job with a clear reason', async () => {
    await agent();
    const id = await submit({ docker_image: 'registry.invalid/team/model', docker_tag: 'v1' });
    const v = await status(id, 'failed');
    expect(v.status_reason).toBe('image_pull_failed');
    expect(v.error_message).toContain('could not pull registry.invalid/team/model:v1');
  });

  it('on start, removes containers of this node whose jobs it no longer holds', async () => {
    const reg = await registerNode(t, { node_name: 'restarting', hostname: 'restarting', gpu_count: 0, cpu_cores: 4, memory_total: 4096 });
    const stateDir = join(FIXTURES, '..', '..', '.imagepod', `test-state-${Date.now()}`);
    await saveIdentity(stateDir, {
      node_id: reg.nodeId,
      agent_id: reg.agentId,
      api_key: reg.apiKey,
      api_url: t.url,
      registered_at: new Date().toISOString(),
    });
    const leftover = await testDocker().createContainer({
      Image: TEST_IMAGE,
      Cmd: ['sleep', '300'],
      Labels: { [LABEL.managed]: 'true', [LABEL.jobId]: 'from-before-the-crash', [LABEL.nodeId]: reg.nodeId },
      HostConfig: { NetworkMode: 'none' },
    });
    await leftover.start();
    const a = await agent({ IMAGEPOD_AGENT_STATE_DIR: stateDir, IMAGEPOD_NODE_NAME: 'restarting' });
    expect(a.identity.node_id).toBe(reg.nodeId);
    await expect(leftover.inspect()).rejects.toThrow(/no such container/i);
  });

  it('a node whose containers keep failing to start says it is in a crash loop and stops claiming', async () => {
    const a = await agent({
      IMAGEPOD_DOCKER_NETWORK: 'no-such-network',
      IMAGEPOD_CRASH_LOOP_THRESHOLD: '2',
      IMAGEPOD_MAX_CONCURRENT_JOBS: '1',
      IMAGEPOD_CRASH_LOOP_BACKOFF_MS: '60000',
      IMAGEPOD_NODE_NAME: 'crashy',
    });
    const ids = [await submit({ command: ['true'] }), await submit({ command: ['true'] }), await submit({ command: ['true'] })];
    const first = await status(ids[0] as string, 'failed');
    expect(first).toMatchObject({ status_reason: 'start_failed' });
    expect(first.error_message).toContain('no-such-network');
    const n = await waitFor('crash loop reported', async () => {
      const v = await node(a.identity.node_id);
      return v.health_reasons.some((r: string) => r.startsWith('crash loop')) ? v : undefined;
    });
    expect(n.health_status).toBe('degraded');
    await new Promise((r) => setTimeout(r, 1000));
    const states = await Promise.all(ids.map(async (id) => (await view(id)).status));
    expect(states.filter((s) => s === 'failed')).toHaveLength(2);
    expect(states.filter((s) => s === 'queued')).toHaveLength(1);
    await t.req('POST', `/jobs/${ids[2]}/cancel`, { token: t.tokens.alice });
  });

  it('a Docker engine that does not answer makes the node unhealthy', async () => {
    const a = await agent({ IMAGEPOD_DOCKER_HOST: 'unix:///tmp/imagepod-no-docker.sock', IMAGEPOD_NODE_NAME: 'no-engine' });
    const n = await waitFor('unhealthy', async () => {
      const v = await node(a.identity.node_id);
      return v.status === 'unhealthy' ? v : undefined;
    });
    expect(n.health_reasons[0]).toContain('Docker engine unreachable');
  });
});
