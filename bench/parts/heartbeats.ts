import { ms, percentile, seededRandom, syntheticNode } from '../fleet.js';
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

async function redisCpuSeconds(stack: BenchStack): Promise<number> {
  const info = await stack.client.info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)?.[1] ?? 0) + Number(/used_cpu_sys:([\d.]+)/.exec(info)?.[1] ?? 0);
}

/**
 * Every node beats once a second for `seconds`: the offered load is the fleet size per second.
 * Prints the rate the API sustained, its latency, and Redis CPU per beat.
 */
export async function heartbeatLoad(
  stack: BenchStack,
  fleet: Fleet,
  seconds: number,
): Promise<{ offered: number; sustained: number; p50: number; p99: number; redisMicrosPerBeat: number; errors: number }> {
  const client = new LoadClient(stack.api.url, 256);
  const rate = fleet.nodes.length;
  const total = rate * seconds;
  const lat: number[] = [];
  let errors = 0;
  const cpu0 = await redisCpuSeconds(stack);
  const t0 = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 2) await new Promise((r) => setTimeout(r, wait));
    const n = fleet.nodes[i % fleet.nodes.length];
    if (n === undefined) continue;
    inflight.push(
      (async () => {
        const s = performance.now();
        const r = await client.send('POST', `/gpu-workers/nodes/${n.id}/heartbeat`, n.key, n.beat);
        lat.push(performance.now() - s);
        if (r.status !== 200) errors++;
      })(),
    );
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = (await redisCpuSeconds(stack)) - cpu0;
  client.close();
  lat.sort((a, b) => a - b);
  return {
    offered: rate,
    sustained: total / elapsed,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    redisMicrosPerBeat: (cpu * 1e6) / total,
    errors,
  };
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
