import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type TestApi } from '../support/api.js';

/**
 * The curl examples of ImagePod's original README, run with the real curl against a running
 * server: the same URLs, fields and bodies, with only the auth headers added.
 */
const run = promisify(execFile);
let t: TestApi;
let env: Record<string, string>;

async function curl(command: string): Promise<{ status: number; body: any }> {
  const { stdout } = await run('bash', ['-c', `${command} -s -w '\\n%{http_code}'`], { env: { ...process.env, ...env } });
  const lines = stdout.trimEnd().split('\n');
  const status = Number(lines.pop());
  return { status, body: JSON.parse(lines.join('\n')) };
}

beforeAll(async () => {
  t = await startTestApi('seed');
  env = { BASE: t.url, REGISTRATION_TOKEN: t.registrationToken, TOKEN: t.tokens.alice, ADMIN_TOKEN: t.tokens.admin };
});
afterAll(async () => t.close());

describe('the original README, as written', () => {
  const ids: Record<string, string> = {};

  it('Register GPU Node', async () => {
    const r = await curl(`curl -X POST "$BASE/gpu-workers/nodes/register" \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer $REGISTRATION_TOKEN" \\
  -d '{
    "node_name": "gpu-server-1",
    "hostname": "gpu-server-1.local",
    "gpu_count": 2,
    "gpu_type": "RTX 4090",
    "gpu_memory_total": 24576,
    "cpu_cores": 16,
    "memory_total": 32768,
    "max_concurrent_jobs": 2
  }'`);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ node_name: 'gpu-server-1', gpu_count: 2, gpu_type: 'RTX 4090', gpu_memory_total: 24576, cpu_cores: 16 });
    ids.node = r.body.node_id;
    ids.agent = r.body.agent_id;
    env.API_KEY = r.body.api_key;
  });

  it('Update Node Heartbeat', async () => {
    const body = `{
    "node_id": "${ids.node}",
    "gpu_memory_available": 20000,
    "cpu_cores_available": 14,
    "current_jobs": 1,
    "health_status": "healthy"
  }`;
    const r = await curl(`curl -X POST "$BASE/gpu-workers/nodes/${ids.node}/heartbeat" \\
  -H "Content-Type: application/json" \\
  -H "Authorization: Bearer $API_KEY" \\
  -d '${body}'`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ node_id: ids.node, status: 'online' });
  });

  it('Create GPU Job', async () => {
    const r = await curl(`curl -X POST "$BASE/gpu-workers/jobs/" \\
  -H "Authorization: Bearer $TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "job_name": "AI Training Job",
    "docker_image": "pytorch/pytorch",
    "docker_tag": "latest",
    "gpu_memory_required": 8192,
    "cpu_cores_required": 4,
    "memory_required": 16384,
    "input_data": {"dataset": "imagenet", "epochs": 100}
  }'`);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      job_name: 'AI Training Job',
      docker_image: 'pytorch/pytorch',
      docker_tag: 'latest',
      gpu_memory_required: 8192,
      cpu_cores_required: 4,
      memory_required: 16384,
      input_data: { dataset: 'imagenet', epochs: 100 },
      status: 'queued',
    });
    ids.job = r.body.id;
  });

  it('Check Available Nodes', async () => {
    const r = await curl(`curl "$BASE/gpu-workers/available-nodes/?gpu_memory_required=4096" -H "Authorization: Bearer $TOKEN"`);
    expect(r.status).toBe(200);
    expect(r.body.items.map((n: { node_id: string }) => n.node_id)).toEqual([ids.node]);
    expect(r.body.items[0]).toMatchObject({ gpu_memory_available: 20000, cpu_cores_available: 14 });
  });

  it('Node Statistics', async () => {
    const r = await curl(`curl "$BASE/gpu-workers/nodes/${ids.node}/stats" -H "Authorization: Bearer $TOKEN"`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ node_id: ids.node, status: 'online', current_jobs: 1 });
  });

  it('Job Status', async () => {
    const r = await curl(`curl "$BASE/gpu-workers/jobs/${ids.job}" -H "Authorization: Bearer $TOKEN"`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id: ids.job, status: 'queued', job_name: 'AI Training Job' });
  });

  it('Worker Agent Status', async () => {
    const r = await curl(`curl "$BASE/gpu-workers/agents/${ids.agent}" -H "Authorization: Bearer $API_KEY"`);
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ agent_id: ids.agent, node_id: ids.node, status: 'online' });
    const admin = await curl(`curl "$BASE/gpu-workers/agents/${ids.agent}" -H "Authorization: Bearer $ADMIN_TOKEN"`);
    expect(admin.status).toBe(200);
  });

  it('the API reference lists: GET /nodes/ and GET /jobs/', async () => {
    expect((await curl(`curl "$BASE/gpu-workers/nodes/" -H "Authorization: Bearer $TOKEN"`)).body.items).toHaveLength(1);
    expect((await curl(`curl "$BASE/gpu-workers/jobs/" -H "Authorization: Bearer $TOKEN"`)).body.items).toHaveLength(1);
  });
});
