import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { hashTagOf } from '../../src/redis/slots.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';
import { deletePrefix } from '../support/redis.js';
import { TestRedisCluster } from '../support/redis-topologies.js';

/**
 * The whole platform on a Redis Cluster of three primaries (started here, on loopback): the API
 * and a real agent, jobs of three tiers from submission to their end, a cancel, costs, usage, the
 * live event feed and webhooks; then each primary is asked what it holds, to show the tiers'
 * queues on different shards. A script or a command that reached across slots fails here
 * (CROSSSLOT, or "Script attempted to access a non local key").
 */

let cluster: TestRedisCluster;
let admin: Cluster;
let t: TestApi;
let agent: Agent;
let hooks: { url: string; bodies: { path: string; body: any }[]; server: Server };

// With the default tier bounds these land on three different shards of an evenly split cluster:
// {cpu} in slot 9296, {gpu-80g} in 10763... see the last test, which checks rather than trusts.
// A few hundred ms, so that each run costs at least a millionth (what money is rounded to).
const CPU_JOB = {
  docker_image: 'busybox',
  command: ['sh', '-c', 'sleep 0.3; echo cpu; echo \'{"ok": 1}\' > "$IMAGEPOD_OUTPUT_DIR/result.json"'],
};
const GPU_80G = { gpu_memory_required: 60_000 };
const GPU_141G = { gpu_memory_required: 100_000 };

async function startHookReceiver(): Promise<typeof hooks> {
  const bodies: { path: string; body: any }[] = [];
  const server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      text += c;
    });
    req.on('end', () => {
      bodies.push({ path: req.url ?? '/', body: JSON.parse(text) });
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies, server };
}

/** A streamed response's text so far. */
function readText(res: Response) {
  let text = '';
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of res.body ?? []) text += decoder.decode(chunk as Uint8Array, { stream: true });
  })().catch(() => {});
  return { text: () => text };
}

/** `GET /events` read as a browser would, collecting the job events. */
async function openEvents() {
  const ctrl = new AbortController();
  const res = await fetch(`${t.url}/gpu-workers/events`, { headers: { authorization: `Bearer ${t.tokens.admin}` }, signal: ctrl.signal });
  const jobs: any[] = [];
  const done = (async () => {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body ?? []) {
        buf += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (/^event: job$/m.test(block) && data !== undefined) jobs.push(JSON.parse(data));
        }
      }
    } catch {
      /* aborted */
    }
  })();
  return {
    status: res.status,
    of: (id: string) => jobs.filter((e) => e.job_id === id),
    async close() {
      ctrl.abort();
      await done;
    },
  };
}

beforeAll(async () => {
  cluster = await TestRedisCluster.start(3);
  admin = cluster.client();
  hooks = await startHookReceiver();
  const redis = { IMAGEPOD_REDIS_URL: '', IMAGEPOD_REDIS_CLUSTER_NODES: cluster.addresses.join(',') };
  t = await startTestApi('cluster', {
    ...redis,
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200',
    IMAGEPOD_HEARTBEAT_TTL_MS: '1000',
    IMAGEPOD_WEBHOOK_ALLOW: '127.0.0.1',
    IMAGEPOD_WEBHOOK_BACKOFF_MS: '100',
  });
  // An H200-sized GPU, so one node serves every tier.
  agent = await startAgent(t, { ...redis, IMAGEPOD_SIMULATED_GPUS: '1x143771:H200', IMAGEPOD_PRICE_PER_GPU_HOUR: '3.6' });
}, 90_000);

afterAll(async () => {
  await agent?.stop(0);
  // t.redis is the shared server's (nothing of this file is there); the keys live in the cluster.
  await t?.close();
  if (admin) {
    await deletePrefix(admin, t.prefix).catch(() => {});
    admin.disconnect();
  }
  hooks?.server.close();
  await cluster?.stop();
}, 60_000);

describe('ImagePod on a Redis Cluster of three primaries', () => {
  it('is ready, and the agent registers and heartbeats through it', async () => {
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
    const node = await waitFor('node online', async () => {
      const n = (await t.req('GET', `/nodes/${agent.identity.node_id}`, { token: t.tokens.admin })).body;
      return n.status === 'online' && n.last_heartbeat ? n : undefined;
    });
    expect(node).toMatchObject({ gpu_count: 1, gpu_type: 'H200', health_status: 'healthy' });
    const available = await t.req('GET', '/available-nodes/?gpu_memory_required=100000', { token: t.tokens.alice });
    expect(available.status).toBe(200);
    expect(available.body.items.map((n: { node_id: string }) => n.node_id)).toContain(agent.identity.node_id);
  });

  it('runs jobs of three tiers to the end, cancels one, bills them, and tells the event feed and webhooks', async () => {
    const jobs = jobsOf(t);
    const events = await openEvents();
    expect(events.status).toBe(200);
    try {
      const cpu = await jobs.submit({ ...CPU_JOB, memory_required: 64, webhook_url: `${hooks.url}/cpu` });
      const big = await jobs.submit({ ...CPU_JOB, ...GPU_80G, webhook_url: `${hooks.url}/80g` });
      const huge = await jobs.submit({ ...CPU_JOB, ...GPU_141G });
      expect((await jobs.view(cpu)).tier).toBe('cpu');
      expect((await jobs.view(big)).tier).toBe('gpu-80g');
      expect((await jobs.view(huge)).tier).toBe('gpu-141g');

      for (const id of [cpu, big, huge]) {
        const done = await jobs.finished(id);
        expect(done).toMatchObject({ status: 'succeeded', node_id: agent.identity.node_id, exit_code: 0 });
        expect(done.result.data).toEqual({ ok: 1 });
        expect(await jobs.logLines(id)).toEqual(['cpu', 'job ended: succeeded']);
      }

      // One GPU: the job to cancel comes once the others are done, so it holds nothing they need.
      const long = await jobs.submit({ docker_image: 'busybox', command: ['sh', '-c', 'echo started; sleep 60'], ...GPU_80G });
      await jobs.status(long, 'running');
      // Followed live (a blocking read on a connection of its own), then cancelled.
      const follow = await fetch(`${t.url}/gpu-workers/jobs/${long}/logs?follow=true`, {
        headers: { authorization: `Bearer ${t.tokens.alice}` },
      });
      const followed = readText(follow);
      await waitFor('the first line followed', async () => followed.text().includes('started'));
      const cancel = await t.req('POST', `/jobs/${long}/cancel`, { token: t.tokens.alice });
      expect(cancel.status).toBe(200);
      expect((await jobs.finished(long)).status).toBe('cancelled');
      await waitFor('the followed log to end', async () => followed.text().includes('event: end'));
      expect(followed.text()).toContain('"status":"cancelled"');

      // GPU jobs cost their share of the GPU at 3.6 an hour; a CPU job on a node without CPU prices is free.
      await waitFor('costs written', async () => {
        const views = await Promise.all([big, huge, long].map((id) => jobs.view(id)));
        return views.every((v) => typeof v.cost === 'number' && v.cost > 0);
      });
      const usage = await t.req('GET', '/usage/', { token: t.tokens.alice });
      expect(usage.status).toBe(200);
      expect(usage.body.total.jobs).toBe(4);
      expect(usage.body.total.cost).toBeGreaterThan(0);

      // The feed tails each tier's stream on its own connection: every tier's jobs show up.
      for (const id of [cpu, big, huge, long]) {
        await waitFor(`final event of ${id}`, async () => events.of(id).some((e) => e.final));
      }
      const seen = events.of(cpu).map((e) => e.status);
      expect([seen[0], seen.at(-1)]).toEqual(['queued', 'succeeded']);

      // Webhooks: the dispatcher reads each tier's stream, the delivery queue sits in {hooks}.
      const delivered = await waitFor('webhooks delivered', async () => {
        const paths = hooks.bodies.map((b) => b.path).sort();
        return paths.length >= 2 ? paths : undefined;
      });
      expect(delivered).toEqual(['/80g', '/cpu']);
      expect(hooks.bodies.find((b) => b.path === '/cpu')?.body).toMatchObject({ id: cpu, status: 'succeeded' });
      expect((await jobs.view(cpu)).webhook_status).toBe('delivered');

      const listed = await t.req('GET', '/jobs/?limit=10', { token: t.tokens.alice });
      expect(listed.body.items.map((j: { id: string }) => j.id).sort()).toEqual([cpu, big, huge, long].sort());
      const stats = (await t.req('GET', `/nodes/${agent.identity.node_id}/stats`, { token: t.tokens.admin })).body;
      expect(stats).toMatchObject({ jobs_succeeded: 3 });
    } finally {
      await events.close();
    }
  }, 90_000);

  it('keeps each tier in one slot, and the tiers on more than one shard', async () => {
    // Ask every primary which of this test's keys it holds, and group them by hash tag.
    const shardOf = new Map<string, Set<string>>();
    for (const node of admin.nodes('master')) {
      const where = `${node.options.host}:${node.options.port}`;
      let cursor = '0';
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', `${t.prefix}:*`, 'COUNT', 1000);
        cursor = next;
        for (const key of keys) {
          const tag = hashTagOf(key);
          const set = shardOf.get(tag) ?? new Set<string>();
          set.add(where);
          shardOf.set(tag, set);
        }
      } while (cursor !== '0');
    }
    // Every group's keys live on exactly one shard (a hash tag is one slot)...
    for (const [tag, shards] of shardOf) expect({ tag, shards: shards.size }).toEqual({ tag, shards: 1 });
    // ...the three tiers that ran jobs all have their queues written...
    for (const tier of ['cpu', 'gpu-80g', 'gpu-141g']) expect(shardOf.has(tier)).toBe(true);
    // ...and they are not all on one shard.
    const tierShards = new Set(['cpu', 'gpu-80g', 'gpu-141g'].map((tier) => [...(shardOf.get(tier) ?? [])][0]));
    expect(tierShards.size).toBeGreaterThan(1);

    // The same from the cluster's side: the tier's slot has keys on its owner, and on no other primary.
    const slot = Number(await admin.cluster('KEYSLOT', `${t.prefix}:{gpu-80g}:gpu-80g:meta`));
    expect(Number(await admin.cluster('KEYSLOT', '{gpu-80g}'))).toBe(slot);
    const counts = new Map<string, number>();
    for (const node of admin.nodes('master')) {
      counts.set(`${node.options.host}:${node.options.port}`, Number(await node.cluster('COUNTKEYSINSLOT', slot)));
    }
    const holders = [...counts].filter(([, n]) => n > 0).map(([where]) => where);
    expect(holders).toEqual([...(shardOf.get('gpu-80g') ?? [])]);
  });

  it('moves a tier to another primary while one of its jobs runs (resharding), and its jobs carry on', async () => {
    const jobs = jobsOf(t);
    const slot = Number(await admin.cluster('KEYSLOT', '{gpu-80g}'));
    const from = await cluster.ownerOf(slot);
    const to = cluster.ports.find((p) => p !== from) ?? 0;
    const running = await jobs.submit({ docker_image: 'busybox', command: ['sh', '-c', 'echo moving; sleep 2'], ...GPU_80G });
    await jobs.status(running, 'running');
    expect(await cluster.moveSlot(slot, to)).toBe(from);
    expect(await cluster.ownerOf(slot)).toBe(to);
    // The running job's lock is renewed, its end reported and recorded, on the tier's new primary.
    expect(await jobs.finished(running)).toMatchObject({ status: 'succeeded' });
    const next = await jobs.submit({ ...CPU_JOB, ...GPU_80G });
    expect(await jobs.finished(next)).toMatchObject({ status: 'succeeded', node_id: agent.identity.node_id });
    const keysOn = async (port: number) => {
      const node = admin.nodes('master').find((n) => n.options.port === port);
      return node === undefined ? [] : await node.keys(`${t.prefix}:{gpu-80g}:*`);
    };
    expect(await keysOn(from)).toEqual([]);
    expect((await keysOn(to)).length).toBeGreaterThan(0);
  }, 60_000);

  it('answers 503 while the whole cluster is away, and carries on where it was once it is back', async () => {
    await cluster.down();
    try {
      expect((await fetch(`${t.url}/readyz`)).status).toBe(503);
      // Requests fail at once rather than wait in the client's queue for a cluster that is gone.
      const refused = await t.req('GET', '/jobs/', { token: t.tokens.alice });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).not.toBeNull();
    } finally {
      await cluster.up();
    }
    await waitFor('ready again', async () => (await fetch(`${t.url}/readyz`)).status === 200);
    // Nothing was lost (each node kept its AOF), and the agent, reconnected, runs the next job.
    const listed = (await t.req('GET', '/jobs/?limit=10', { token: t.tokens.alice })).body.items;
    expect(listed.map((j: { status: string }) => j.status).sort()).toEqual(['cancelled', ...Array(5).fill('succeeded')]);
    const jobs = jobsOf(t);
    const after = await jobs.submit({ ...CPU_JOB, ...GPU_141G });
    expect(await jobs.finished(after, 30_000)).toMatchObject({ status: 'succeeded', node_id: agent.identity.node_id });
  }, 90_000);
});
