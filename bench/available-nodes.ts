/**
 * GET /available-nodes/ latency with 10,000 registered, heartbeating nodes.
 *   npm run bench:available-nodes [-- --nodes 10000 --requests 300]
 * Uses the Redis at IMAGEPOD_REDIS_URL (default 127.0.0.1:6379) under a throwaway key prefix.
 */
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { mintToken } from '../src/cli/mint-token.js';
import { loadApiConfig } from '../src/config/api-config.js';
import { API_BASE } from '../src/http/app.js';
import { startApiServer } from '../src/server.js';
import { ms, percentile, seededRandom, syntheticNode } from './fleet.js';
import { deleteKeysUnder } from './redis-cleanup.js';

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '10000' }, requests: { type: 'string', default: '300' } } });
const NODES = Number(values.nodes);
const REQUESTS = Number(values.requests);

const prefix = `imagepod-bench-${randomBytes(4).toString('hex')}`;
const secret = randomBytes(32).toString('hex');
const redisUrl = process.env.IMAGEPOD_REDIS_URL ?? 'redis://127.0.0.1:6379';
const config = loadApiConfig({
  IMAGEPOD_REDIS_URL: redisUrl,
  IMAGEPOD_KEY_PREFIX: prefix,
  IMAGEPOD_JWT_SECRET: secret,
  IMAGEPOD_REGISTRATION_TOKEN: randomBytes(16).toString('hex'),
  IMAGEPOD_HOST: '127.0.0.1',
  IMAGEPOD_PORT: '0',
  IMAGEPOD_HEARTBEAT_TTL_MS: '3600000',
});
const api = await startApiServer(config, pino({ level: 'silent' }));
const token = mintToken(secret, 'bench', 'user', '1h');

try {
  const rand = seededRandom(7);
  const started = Date.now();
  const nodes = api.context.nodes;
  for (let i = 0; i < NODES; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, NODES - i) }, async (_, j) => {
        const n = syntheticNode(i + j, rand);
        const reg = await nodes.registerNode(n.register);
        await nodes.heartbeat({ kind: 'agent', nodeId: reg.node.node_id, agentId: reg.agentId, keyId: '' }, reg.node.node_id, n.beat);
      }),
    );
  }
  console.log(`registered and heartbeated ${NODES} nodes in ${((Date.now() - started) / 1000).toFixed(1)} s`);

  const queries: [string, string][] = [
    ['4 GiB on any GPU (most nodes match), first page', 'gpu_memory_required=4096'],
    ['40 GiB x 4 on H100', 'gpu_memory_required=40000&gpu_count=4&gpu_type=H100'],
    [
      '20 GiB on an RTX 4090 with 8 cores, 32 GiB RAM',
      'gpu_memory_required=20000&gpu_type=RTX%204090&cpu_cores_required=8&memory_required=32768',
    ],
    ['H100|H200 class, 40 GiB x 2', 'gpu_memory_required=40000&gpu_count=2&gpu_type=H100%7CH200'],
    ['sparse: 100 free cores (most nodes scanned and refused)', 'gpu_memory_required=1&cpu_cores_required=100'],
    ['page of 500', 'gpu_memory_required=1024&limit=500'],
  ];
  console.log(`\nGET ${API_BASE}/available-nodes/ over HTTP, ${REQUESTS} sequential requests each, ${NODES} nodes:`);
  for (const [label, qs] of queries) {
    const times: number[] = [];
    let count = 0;
    for (let i = 0; i < REQUESTS; i++) {
      const t0 = performance.now();
      const res = await fetch(`${api.url}${API_BASE}/available-nodes/?${qs}`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await res.json()) as { items: unknown[] };
      times.push(performance.now() - t0);
      count = body.items.length;
    }
    times.sort((a, b) => a - b);
    console.log(
      `  ${label.padEnd(58)} p50 ${ms(percentile(times, 50)).padStart(9)}  p99 ${ms(percentile(times, 99)).padStart(9)}  (${count} returned)`,
    );
  }
} finally {
  await api.close();
  await deleteKeysUnder(redisUrl, prefix);
}
