import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { heartbeat, RTX_4090_NODE, registerNode, startTestApi, type TestApi } from '../support/api.js';

let t: TestApi;
const TTL_MS = 700;

beforeAll(async () => {
  t = await startTestApi('nodes', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: String(TTL_MS) });
});
afterAll(async () => t.close());

const beat = { gpu_memory_available: 20000, cpu_cores_available: 14, current_jobs: 1, health_status: 'healthy' };

describe('POST /nodes/register', () => {
  it('registers a node and returns its id and a one-time agent key', async () => {
    const r = await t.req('POST', '/nodes/register', { token: t.registrationToken, body: { ...RTX_4090_NODE, node_name: 'reg-1' } });
    expect(r.status).toBe(201);
    expect(r.body.node_id).toMatch(/^gpu-[a-f0-9]{12}$/);
    expect(r.body.api_key).toMatch(/^ipk_/);
    expect(r.body).toMatchObject({ node_name: 'reg-1', gpu_count: 2, gpu_type: 'RTX 4090', gpu_memory_total: 24576, status: 'offline' });
    expect(r.headers.get('location')).toBe(`/gpu-workers/nodes/${r.body.node_id}`);
    // The key is shown once: reading the node back never shows it, and Redis holds only its hash.
    const back = await t.req('GET', `/nodes/${r.body.node_id}`, { token: t.tokens.alice });
    expect(back.status).toBe(200);
    expect(back.text).not.toContain('ipk_');
    // ipk_<key id>_<secret>; the secret is base64url, so it may hold '_' itself.
    const [, keyId, secret] = /^ipk_([a-f0-9]{16})_(.{43})$/.exec(r.body.api_key as string) ?? [];
    expect(secret).toHaveLength(43);
    const stored = await t.redis.hgetall(`${t.prefix}:{reg}:apikey:${keyId}`);
    expect(Object.keys(stored).length).toBeGreaterThan(0);
    expect(JSON.stringify(stored)).not.toContain(secret as string);
  });

  it('refuses a taken node name with 409', async () => {
    await registerNode(t, { ...RTX_4090_NODE, node_name: 'dup-name' });
    const r = await t.req('POST', '/nodes/register', { token: t.registrationToken, body: { ...RTX_4090_NODE, node_name: 'dup-name' } });
    expect(r.status).toBe(409);
    expect(r.body.error).toBe('node_name_taken');
  });

  it.each([
    ['node_name', { node_name: '-bad name-' }],
    ['hostname', { hostname: 'has space' }],
    ['gpu_count', { gpu_count: -1 }],
    ['gpu_count', { gpu_count: 'two' }],
    ['gpu_type', { gpu_type: undefined }],
    ['gpu_memory_total', { gpu_memory_total: 0 }],
    ['cpu_cores', { cpu_cores: 0 }],
    ['memory_total', { memory_total: -5 }],
    ['max_concurrent_jobs', { max_concurrent_jobs: 0 }],
    ['labels.bad key!', { labels: { 'bad key!': 'x' } }],
    ['price_per_gpu_hour', { price_per_gpu_hour: -1 }],
    ['surprise', { surprise: true }],
  ])('names the bad field %s', async (field, patch) => {
    const r = await t.req('POST', '/nodes/register', {
      token: t.registrationToken,
      body: { ...RTX_4090_NODE, node_name: 'bad-input', ...patch },
    });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('validation_failed');
    expect(r.body.fields.map((f: { field: string }) => f.field)).toContain(field);
  });

  it('needs the registration token (or an admin)', async () => {
    const body = { ...RTX_4090_NODE, node_name: 'auth-check' };
    expect((await t.req('POST', '/nodes/register', { body })).status).toBe(401);
    expect((await t.req('POST', '/nodes/register', { token: 'wrong-token-wrong-token', body })).status).toBe(401);
    expect((await t.req('POST', '/nodes/register', { token: t.tokens.alice, body })).status).toBe(403);
    expect((await t.req('POST', '/nodes/register', { token: t.tokens.admin, body })).status).toBe(201);
  });
});

describe('heartbeats and liveness', () => {
  it('a heartbeat makes a node online; without them it goes offline after the TTL, with no sweeper', async () => {
    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'ttl-node' });
    const r = await heartbeat(t, nodeId, apiKey, { node_id: nodeId, ...beat });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ node_id: nodeId, status: 'online', cancel_job_ids: [] });

    const q = '/available-nodes/?gpu_memory_required=4096&gpu_type=RTX%204090';
    const ids = async () => (await t.req('GET', q, { token: t.tokens.alice })).body.items.map((n: { node_id: string }) => n.node_id);
    expect(await ids()).toContain(nodeId);
    const node = await t.req('GET', `/nodes/${nodeId}`, { token: t.tokens.alice });
    expect(node.body).toMatchObject({ status: 'online', gpu_memory_available: 20000, cpu_cores_available: 14, current_jobs: 1 });
    expect(node.body.gpus.map((g: { memory_free: number }) => g.memory_free)).toEqual([20000, 20000]);

    await sleep(TTL_MS + 300);
    expect(await ids()).not.toContain(nodeId);
    expect((await t.req('GET', `/nodes/${nodeId}`, { token: t.tokens.alice })).body.status).toBe('offline');

    // Beating again brings it back into the index.
    await heartbeat(t, nodeId, apiKey, beat);
    expect(await ids()).toContain(nodeId);
  });

  it('an agent key may only heartbeat its own node (another node is a 404, as when reading it)', async () => {
    const a = await registerNode(t, { ...RTX_4090_NODE, node_name: 'own-a' });
    const b = await registerNode(t, { ...RTX_4090_NODE, node_name: 'own-b' });
    expect((await heartbeat(t, b.nodeId, a.apiKey, beat)).status).toBe(404);
    expect((await heartbeat(t, a.nodeId, 'ipk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', beat)).status).toBe(401);
    expect((await heartbeat(t, a.nodeId, t.tokens.alice, beat)).status).toBe(403);
    expect((await heartbeat(t, a.nodeId, a.apiKey, { ...beat, node_id: b.nodeId })).status).toBe(400);
  });

  it('a heartbeat for a node that is not registered is a 409', async () => {
    const r = await heartbeat(t, 'gpu-000000000000', '', beat);
    expect(r.status).toBe(401);
    const admin = await t.req('POST', '/nodes/gpu-000000000000/heartbeat', { token: t.tokens.admin, body: beat });
    expect(admin.status).toBe(409);
    expect(admin.body.error).toBe('node_not_registered');
  });

  it.each([
    ['cpu_cores_available', { cpu_cores_available: 999 }],
    ['cpu_cores_available', { cpu_cores_available: -1 }],
    ['gpu_memory_available', { gpu_memory_available: undefined }],
    ['current_jobs', { current_jobs: 1.5 }],
    ['health_status', { health_status: 'great' }],
    ['gpus.0.index', { gpus: [{ index: 7, memory_free: 1 }] }],
    ['gpus.0.memory_free', { gpus: [{ index: 0, memory_free: 999999 }] }],
  ])('rejects a heartbeat with a bad %s', async (field, patch) => {
    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: `hb-bad-${Math.random().toString(36).slice(2, 8)}` });
    const r = await heartbeat(t, nodeId, apiKey, { ...beat, ...patch });
    expect(r.status).toBe(400);
    expect(r.body.fields.map((f: { field: string }) => f.field)).toContain(field);
  });

  it('a failed GPU is shown failed and taken out of placement; the rest keeps working', async () => {
    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'half-broken' });
    const r = await heartbeat(t, nodeId, apiKey, {
      cpu_cores_available: 16,
      current_jobs: 0,
      health_status: 'degraded',
      health_reasons: ['GPU 1: Xid 79, fallen off the bus'],
      gpus: [
        { index: 0, memory_free: 24000, utilization: 3 },
        { index: 1, memory_free: 24000, healthy: false, error: 'Xid 79' },
      ],
    });
    expect(r.status).toBe(200);
    const ids = async (count: number) =>
      (
        await t.req('GET', `/available-nodes/?gpu_memory_required=1000&gpu_count=${count}&gpu_type=RTX%204090`, { token: t.tokens.alice })
      ).body.items.map((n: { node_id: string }) => n.node_id);
    expect(await ids(1)).toContain(nodeId);
    expect(await ids(2)).not.toContain(nodeId);
    const node = (await t.req('GET', `/nodes/${nodeId}`, { token: t.tokens.alice })).body;
    expect(node.status).toBe('online');
    expect(node.health_status).toBe('degraded');
    expect(node.gpus[1]).toMatchObject({ healthy: false, error: 'Xid 79' });
  });

  it('an unhealthy node is not offered', async () => {
    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'sick' });
    await heartbeat(t, nodeId, apiKey, { ...beat, health_status: 'unhealthy', health_reasons: ['docker unreachable'] });
    const avail = await t.req('GET', '/available-nodes/?gpu_memory_required=1', { token: t.tokens.alice });
    expect(avail.body.items.map((n: { node_id: string }) => n.node_id)).not.toContain(nodeId);
    const node = (await t.req('GET', `/nodes/${nodeId}`, { token: t.tokens.alice })).body;
    expect(node).toMatchObject({ status: 'unhealthy', health_reasons: ['docker unreachable'] });
  });
});

describe('cordon, drain, delete', () => {
  it('cordon takes a node out of placement, uncordon brings it back at once', async () => {
    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'cordon-me' });
    await heartbeat(t, nodeId, apiKey, beat);
    const offered = async () =>
      (await t.req('GET', '/available-nodes/?gpu_memory_required=1&limit=500', { token: t.tokens.alice })).body.items.some(
        (n: { node_id: string }) => n.node_id === nodeId,
      );
    expect(await offered()).toBe(true);

    expect((await t.req('POST', `/nodes/${nodeId}/cordon`, { token: t.tokens.alice })).status).toBe(403);
    const c = await t.req('POST', `/nodes/${nodeId}/cordon`, { token: t.tokens.admin });
    expect(c.status).toBe(200);
    expect(c.body).toMatchObject({ status: 'cordoned', admin_state: 'cordoned' });
    expect(await offered()).toBe(false);
    // Its heartbeats go on but do not put it back.
    const hb = await heartbeat(t, nodeId, apiKey, beat);
    expect(hb.body.admin_state).toBe('cordoned');
    expect(await offered()).toBe(false);

    const u = await t.req('POST', `/nodes/${nodeId}/uncordon`, { token: t.tokens.admin });
    expect(u.body.status).toBe('online');
    expect(await offered()).toBe(true);
  });

  it('drain shows draining while jobs run, drained when none are left', async () => {
    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'drain-me' });
    await heartbeat(t, nodeId, apiKey, beat);
    const d = await t.req('POST', `/nodes/${nodeId}/drain`, { token: t.tokens.admin });
    expect(d.body).toMatchObject({ status: 'draining', admin_state: 'draining' });
    await heartbeat(t, nodeId, apiKey, { ...beat, current_jobs: 0 });
    expect((await t.req('GET', `/nodes/${nodeId}`, { token: t.tokens.alice })).body.status).toBe('drained');
  });

  it('delete removes the node and revokes its key', async () => {
    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'delete-me' });
    await heartbeat(t, nodeId, apiKey, beat);
    expect((await t.req('DELETE', `/nodes/${nodeId}`, { token: t.tokens.alice })).status).toBe(403);
    expect((await t.req('DELETE', `/nodes/${nodeId}`, { token: t.tokens.admin })).status).toBe(204);
    expect((await t.req('GET', `/nodes/${nodeId}`, { token: t.tokens.admin })).status).toBe(404);
    expect((await heartbeat(t, nodeId, apiKey, beat)).status).toBe(401);
    expect((await t.req('DELETE', `/nodes/${nodeId}`, { token: t.tokens.admin })).status).toBe(404);
    const fit = await t.redis.zscore(`${t.prefix}:{reg}:fit:any:1`, nodeId);
    expect(fit).toBeNull();
    // The name is free again.
    expect(
      (await t.req('POST', '/nodes/register', { token: t.registrationToken, body: { ...RTX_4090_NODE, node_name: 'delete-me' } })).status,
    ).toBe(201);
  });

  it('unknown and malformed node ids', async () => {
    expect((await t.req('GET', '/nodes/gpu-000000000000', { token: t.tokens.alice })).status).toBe(404);
    const bad = await t.req('GET', '/nodes/not-an-id', { token: t.tokens.alice });
    expect(bad.status).toBe(400);
    expect(bad.body.fields[0].field).toBe('node_id');
    expect((await t.req('POST', '/nodes/gpu-000000000000/cordon', { token: t.tokens.admin })).status).toBe(404);
  });
});

describe('GET /nodes/ and stats', () => {
  it('lists nodes in pages and filters by status', async () => {
    const mine: string[] = [];
    for (let i = 0; i < 5; i++) mine.push((await registerNode(t, { ...RTX_4090_NODE, node_name: `page-${i}` })).nodeId);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const r: { status: number; body: any } = await t.req('GET', `/nodes/?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
        token: t.tokens.alice,
      });
      expect(r.status).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(2);
      seen.push(...r.body.items.map((n: { node_id: string }) => n.node_id));
      cursor = r.body.next_cursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of mine) expect(seen).toContain(id);

    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'status-filter' });
    await heartbeat(t, nodeId, apiKey, beat);
    const online = await t.req('GET', '/nodes/?status=online&limit=500', { token: t.tokens.alice });
    expect(online.body.items.every((n: { status: string }) => n.status === 'online')).toBe(true);
    expect(online.body.items.map((n: { node_id: string }) => n.node_id)).toContain(nodeId);
    expect((await t.req('GET', '/nodes/?status=sleepy', { token: t.tokens.alice })).status).toBe(400);
    expect((await t.req('GET', '/nodes/?limit=0', { token: t.tokens.alice })).status).toBe(400);
    expect((await t.req('GET', '/nodes/?cursor=garbage', { token: t.tokens.alice })).status).toBe(400);
    expect((await t.req('GET', '/nodes/')).status).toBe(401);
  });

  it('stats: uptime and utilisation of a live node', async () => {
    const { nodeId, apiKey } = await registerNode(t, { ...RTX_4090_NODE, node_name: 'stats-node' });
    await heartbeat(t, nodeId, apiKey, {
      cpu_cores_available: 8,
      memory_available: 16384,
      current_jobs: 1,
      gpus: [
        { index: 0, memory_free: 12288, utilization: 80 },
        { index: 1, memory_free: 24576, utilization: 0 },
      ],
    });
    const r = await t.req('GET', `/nodes/${nodeId}/stats`, { token: t.tokens.alice });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({
      node_id: nodeId,
      status: 'online',
      jobs_run: 0,
      current_jobs: 1,
      utilization: { gpu_percent: 40, gpu_memory_percent: 25, cpu_percent: 50, memory_percent: 50, job_slots_percent: 50 },
    });
    expect(r.body.uptime_seconds).toBeGreaterThanOrEqual(0);
    expect((await t.req('GET', '/nodes/gpu-000000000000/stats', { token: t.tokens.alice })).status).toBe(404);
    // An agent reads its own node's stats, not another's.
    const other = await registerNode(t, { ...RTX_4090_NODE, node_name: 'stats-other' });
    expect((await t.req('GET', `/nodes/${nodeId}/stats`, { token: apiKey })).status).toBe(200);
    expect((await t.req('GET', `/nodes/${nodeId}/stats`, { token: other.apiKey })).status).toBe(404);
  });
});

describe('agents', () => {
  it('POST /agents/register registers node and agent; GET /agents/{id} shows it to itself and admins', async () => {
    const r = await t.req('POST', '/agents/register', {
      token: t.registrationToken,
      body: { agent_version: '0.1.0', executor: 'docker', node: { ...RTX_4090_NODE, node_name: 'agent-node' } },
    });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      agent_id: expect.stringMatching(/^agent-/),
      node_id: expect.stringMatching(/^gpu-/),
      heartbeat_interval_ms: 200,
    });
    const { agent_id, node_id, api_key } = r.body;
    await heartbeat(t, node_id, api_key, { ...beat, running_job_ids: [] });
    const self = await t.req('GET', `/agents/${agent_id}`, { token: api_key });
    expect(self.status).toBe(200);
    expect(self.body).toMatchObject({ agent_id, node_id, agent_version: '0.1.0', executor: 'docker', status: 'online' });
    expect((await t.req('GET', `/agents/${agent_id}`, { token: t.tokens.admin })).status).toBe(200);
    expect((await t.req('GET', `/agents/${agent_id}`, { token: t.tokens.alice })).status).toBe(403);
    const other = await registerNode(t, { ...RTX_4090_NODE, node_name: 'agent-other' });
    expect((await t.req('GET', `/agents/${agent_id}`, { token: other.apiKey })).status).toBe(404);
    expect((await t.req('GET', '/agents/agent-000000000000', { token: t.tokens.admin })).status).toBe(404);
    expect((await t.req('POST', '/agents/register', { token: t.registrationToken, body: { node: {} } })).status).toBe(400);
  });
});
