import { join } from 'node:path';
import { ms, percentile, seededRandom, syntheticNode } from '../fleet.js';
import { startUrlChild } from '../lib/api-child.js';
import { type BenchStack, REGISTRATION } from '../lib/context.js';
import { LoadClient } from '../lib/http.js';

interface Fleet {
  nodes: { id: string; key: string; beat: object }[];
}

/** Registers `n` synthetic nodes over HTTP, as their agents would. */
export async function registerFleet(stack: BenchStack, n: number): Promise<Fleet> {
  const client = new LoadClient(stack.api.url);
  const rand = seededRandom(11);
  const specs = Array.from({ length: n }, (_, i) => syntheticNode(i, rand, 'hb'));
  const nodes: Fleet['nodes'] = [];
  for (let i = 0; i < n; i += 64) {
    await Promise.all(
      specs.slice(i, i + 64).map(async (s) => {
        const r = await client.send('POST', '/gpu-workers/nodes/register', REGISTRATION, s.register);
        if (r.status !== 201) throw new Error(`register: ${r.status} ${r.text.slice(0, 200)}`);
        const b = JSON.parse(r.text) as { node_id: string; api_key: string };
        nodes.push({ id: b.node_id, key: b.api_key, beat: s.beat });
      }),
    );
  }
  client.close();
  return { nodes };
}

interface Load {
  offered: number;
  sustained: number;
  p50: number;
  p99: number;
  errors: number;
}

/** Sends `rate` beats a second for `seconds`, round-robin over `nodes`, and measures the answers. */
async function drive(url: string, nodes: Fleet['nodes'], seconds: number, path: (id: string) => string): Promise<Load> {
  const client = new LoadClient(url, 256);
  const rate = nodes.length;
  const total = rate * seconds;
  const lat: number[] = [];
  let errors = 0;
  const t0 = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 2) await new Promise((r) => setTimeout(r, wait));
    const n = nodes[i % nodes.length];
    if (n === undefined) continue;
    inflight.push(
      (async () => {
        const s = performance.now();
        const r = await client.send('POST', path(n.id), n.key, n.beat);
        lat.push(performance.now() - s);
        if (r.status !== 200) errors++;
      })(),
    );
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - t0) / 1000;
  client.close();
  lat.sort((a, b) => a - b);
  return { offered: rate, sustained: total / elapsed, p50: percentile(lat, 50), p99: percentile(lat, 99), errors };
}

/**
 * Every node beats once a second for `seconds`: the offered load is the fleet size per second.
 * Prints the rate the API sustained, its latency, and Redis CPU per beat.
 */
export async function heartbeatLoad(stack: BenchStack, fleet: Fleet, seconds: number): Promise<Load & { redisMicrosPerBeat: number }> {
  const cpu0 = await stack.redisCpuMs();
  const load = await drive(stack.api.url, fleet.nodes, seconds, (id) => `/gpu-workers/nodes/${id}/heartbeat`);
  const cpu = (await stack.redisCpuMs()) - cpu0;
  return { ...load, redisMicrosPerBeat: (cpu * 1000) / (load.offered * seconds) };
}

/**
 * The same load against a bare node:http server in its own process (bench/lib/bare-server.ts):
 * the most this machine answers at all with this generator, whatever the API does per beat.
 */
export async function bareHttpCeiling(fleet: Fleet, seconds: number): Promise<Load> {
  const server = await startUrlChild(join(import.meta.dirname, '../lib/bare-server.ts'));
  try {
    return await drive(server.url, fleet.nodes, seconds, (id) => `/nodes/${id}/heartbeat`);
  } finally {
    await server.stop();
  }
}

/** GET /available-nodes/ over the fleet, sequentially, for a few query shapes. */
export async function availableNodesLatency(stack: BenchStack, requests: number): Promise<{ label: string; p50: number; p99: number }[]> {
  const client = new LoadClient(stack.api.url, 1);
  const queries: [string, string][] = [
    ['4 GiB, first page of 50', 'gpu_memory_required=4096'],
    [
      '20 GiB on an RTX 4090, 8 cores, 32 GiB RAM',
      'gpu_memory_required=20000&gpu_type=RTX%204090&cpu_cores_required=8&memory_required=32768',
    ],
    ['H100|H200, 40 GiB x 2', 'gpu_memory_required=40000&gpu_count=2&gpu_type=H100%7CH200'],
  ];
  const out: { label: string; p50: number; p99: number }[] = [];
  for (const [label, qs] of queries) {
    const lat: number[] = [];
    for (let i = 0; i < requests; i++) {
      const s = performance.now();
      await client.send('GET', `/gpu-workers/available-nodes/?${qs}`, stack.token);
      lat.push(performance.now() - s);
    }
    lat.sort((a, b) => a - b);
    out.push({ label, p50: percentile(lat, 50), p99: percentile(lat, 99) });
  }
  client.close();
  return out;
}

export { ms };
