import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpuFamilies, gpuFamily } from '../../src/domain/gpu.js';
import { heartbeat, registerNode, startTestApi, type TestApi } from '../support/api.js';

/**
 * GET /available-nodes/ over a few hundred registered nodes with mixed GPUs, failures, cordons
 * and dead agents, checked against a brute-force filter over what the test itself sent.
 */
let t: TestApi;

interface SimNode {
  id: string;
  gpus: { name: string; free: number; healthy: boolean }[];
  cpuFree: number;
  memFree: number;
  slotsFree: number;
  live: boolean;
  healthy: boolean;
  cordoned: boolean;
}
const fleet: SimNode[] = [];

// A seeded generator, so a failure can be replayed.
let seed = 20261129;
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;

const MODELS = [
  { name: 'NVIDIA H100 80GB HBM3', mib: 81559 },
  { name: 'NVIDIA A100-SXM4-80GB', mib: 81920 },
  { name: 'NVIDIA A100-PCIE-40GB', mib: 40960 },
  { name: 'NVIDIA GeForce RTX 4090', mib: 24564 },
  { name: 'NVIDIA L40S', mib: 46068 },
  { name: 'NVIDIA H200', mib: 143771 },
] as const;

beforeAll(async () => {
  t = await startTestApi('available', { IMAGEPOD_HEARTBEAT_TTL_MS: '600000' });
  for (let i = 0; i < 300; i++) {
    const count = pick([0, 1, 1, 2, 4, 8]);
    const mixed = rand() < 0.1;
    const models = Array.from({ length: count }, (_, k) => (mixed && k % 2 === 1 ? pick(MODELS) : MODELS[i % MODELS.length]) ?? MODELS[0]);
    const cpu = pick([8, 16, 32, 64]);
    const mem = pick([32768, 65536, 262144]);
    const max = pick([1, 2, 4, 8]);
    const reg = await registerNode(t, {
      node_name: `n-${i}`,
      hostname: `n-${i}.local`,
      gpu_count: count,
      gpus: models.map((m, index) => ({ index, name: m.name, memory_total: m.mib })),
      cpu_cores: cpu,
      memory_total: mem,
      max_concurrent_jobs: max,
    });
    const gpus = models.map((m) => ({ name: m.name, free: Math.floor(rand() * (m.mib + 1)), healthy: rand() > 0.08 }));
    const node: SimNode = {
      id: reg.nodeId,
      gpus,
      cpuFree: Math.floor(rand() * (cpu + 1)),
      memFree: Math.floor(rand() * (mem + 1)),
      slotsFree: 0,
      live: rand() > 0.1,
      healthy: rand() > 0.05,
      cordoned: rand() < 0.05,
    };
    const running = Math.floor(rand() * (max + 1));
    node.slotsFree = Math.max(0, max - running);
    fleet.push(node);
    if (!node.live) continue;
    const r = await heartbeat(t, reg.nodeId, reg.apiKey, {
      cpu_cores_available: node.cpuFree,
      memory_available: node.memFree,
      current_jobs: running,
      health_status: node.healthy ? 'healthy' : 'unhealthy',
      gpus: gpus.map((g, index) => ({ index, memory_free: g.free, healthy: g.healthy })),
    });
    expect(r.status).toBe(200);
    if (node.cordoned) await t.req('POST', `/nodes/${reg.nodeId}/cordon`, { token: t.tokens.admin });
  }
}, 120_000);
afterAll(async () => t.close());

interface Query {
  gpu_memory_required: number;
  gpu_count?: number;
  gpu_type?: string;
  cpu_cores_required: number;
  memory_required: number;
}

/** What the API should answer, computed the slow way, best fit first. */
function bruteForce(q: Query): string[] {
  const k = q.gpu_count ?? (q.gpu_memory_required > 0 ? 1 : 0);
  const families = q.gpu_type ? gpuFamilies(q.gpu_type) : null;
  const out: { id: string; score: number }[] = [];
  for (const n of fleet) {
    if (!n.live || !n.healthy || n.cordoned || n.slotsFree === 0) continue;
    if (n.cpuFree < q.cpu_cores_required || n.memFree < q.memory_required) continue;
    const healthy = n.gpus.filter((g) => g.healthy);
    if (k === 0) {
      out.push({ id: n.id, score: healthy.length });
      continue;
    }
    const groups = families ?? ['*'];
    let best: number | undefined;
    for (const f of groups) {
      const free = healthy
        .filter((g) => f === '*' || gpuFamily(g.name) === f)
        .map((g) => g.free)
        .sort((a, b) => b - a);
      const kth = free[k - 1];
      if (kth !== undefined && kth >= q.gpu_memory_required && (best === undefined || kth < best)) best = kth;
    }
    if (best !== undefined) out.push({ id: n.id, score: best });
  }
  return out.sort((a, b) => a.score - b.score || (a.id < b.id ? -1 : 1)).map((x) => x.id);
}

async function askAll(q: Query, limit: number): Promise<string[]> {
  const params = new URLSearchParams(Object.entries(q).map(([k, v]): [string, string] => [k, String(v)]));
  params.set('limit', String(limit));
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const url = `/available-nodes/?${params}${cursor ? `&cursor=${cursor}` : ''}`;
    const r: { status: number; body: any } = await t.req('GET', url, { token: t.tokens.alice });
    expect(r.status).toBe(200);
    ids.push(...r.body.items.map((n: { node_id: string }) => n.node_id));
    cursor = r.body.next_cursor;
  } while (cursor);
  return ids;
}

describe('available-nodes against a brute-force filter', () => {
  const queries: Query[] = [
    { gpu_memory_required: 0, cpu_cores_required: 0, memory_required: 0 },
    { gpu_memory_required: 4096, cpu_cores_required: 0, memory_required: 0 },
    { gpu_memory_required: 20000, gpu_type: 'RTX 4090', cpu_cores_required: 2, memory_required: 4096 },
    { gpu_memory_required: 70000, gpu_count: 2, gpu_type: 'H100', cpu_cores_required: 8, memory_required: 0 },
    { gpu_memory_required: 40000, gpu_count: 4, cpu_cores_required: 0, memory_required: 0 },
    { gpu_memory_required: 30000, gpu_type: 'H100|H200', cpu_cores_required: 0, memory_required: 0 },
    { gpu_memory_required: 10000, gpu_count: 2, gpu_type: 'A100|L40S', cpu_cores_required: 4, memory_required: 16384 },
    { gpu_memory_required: 1, gpu_count: 8, cpu_cores_required: 0, memory_required: 0 },
    { gpu_memory_required: 0, gpu_count: 0, cpu_cores_required: 32, memory_required: 131072 },
    { gpu_memory_required: 150000, cpu_cores_required: 0, memory_required: 0 },
  ];
  for (let i = 0; i < 20; i++) {
    queries.push({
      gpu_memory_required: Math.floor(rand() * 90000),
      gpu_count: pick([1, 1, 2, 4]),
      ...(rand() < 0.5 && { gpu_type: pick(['H100', 'A100', 'RTX 4090', 'L40S', 'H200', 'H100|A100']) }),
      cpu_cores_required: pick([0, 1, 4, 16]),
      memory_required: pick([0, 8192, 65536]),
    });
  }

  it.each(queries.map((q) => [JSON.stringify(q), q] as const))('%s', async (_, q) => {
    const expected = bruteForce(q);
    expect(await askAll(q, 500)).toEqual(expected);
    // Paging through in small pages gives the same answer.
    expect(await askAll(q, 7)).toEqual(expected);
  });

  it('the generated fleet exercises every branch', () => {
    expect(fleet.filter((n) => !n.live).length).toBeGreaterThan(0);
    expect(fleet.filter((n) => n.cordoned && n.live).length).toBeGreaterThan(0);
    expect(fleet.filter((n) => !n.healthy && n.live).length).toBeGreaterThan(0);
    expect(fleet.filter((n) => n.gpus.some((g) => !g.healthy)).length).toBeGreaterThan(0);
    expect(fleet.filter((n) => n.slotsFree === 0 && n.live).length).toBeGreaterThan(0);
  });
});
