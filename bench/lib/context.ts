import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import type { Executor } from '../../agent/executor/types.js';
import { mintToken } from '../../src/cli/mint-token.js';
import { API_BASE } from '../../src/http/app.js';
import { Keys } from '../../src/redis/keys.js';
import { OwnRedis } from '../../test/support/redis-server.js';
import { type ApiChild, startApiChild } from './api-child.js';
import { SimExecutor } from './sim-executor.js';

export const SECRET = 's'.repeat(40);
export const REGISTRATION = 'r'.repeat(32);

/** A Redis of the benchmark's own (so INFO figures are its alone) and the API on it, in a child process. */
export interface BenchStack {
  readonly redis: OwnRedis;
  readonly client: Redis;
  readonly api: ApiChild;
  readonly prefix: string;
  readonly token: string;
  readonly agents: Agent[];
  /** CPU time Redis has used so far, ms (its INFO). */
  redisCpuMs(): Promise<number>;
  /** A BullMQ queue of the stack's, to read counts. */
  queue(name: string): Queue;
  post(path: string, body: unknown, token?: string): Promise<{ status: number; body: unknown }>;
  get(path: string, token?: string): Promise<{ status: number; body: unknown }>;
  addAgents(n: number, env?: Record<string, string>, executor?: () => Executor): Promise<Agent[]>;
  close(): Promise<void>;
}

export async function startStack(prefix: string, apiEnv: Record<string, string> = {}): Promise<BenchStack> {
  const redis = await OwnRedis.start('none');
  const api = await startApiChild({
    IMAGEPOD_REDIS_URL: redis.url,
    IMAGEPOD_KEY_PREFIX: prefix,
    IMAGEPOD_JWT_SECRET: SECRET,
    IMAGEPOD_REGISTRATION_TOKEN: REGISTRATION,
    IMAGEPOD_HEARTBEAT_TTL_MS: '3600000',
    // Rate limits off: the benches submit 1,000-job batches back to back and start fleets of
    // agents from one address.
    IMAGEPOD_RATE_LIMIT_SUBMIT_PER_MIN: '0',
    IMAGEPOD_RATE_LIMIT_REGISTER_PER_MIN: '0',
    IMAGEPOD_RATE_LIMIT_SESSION_PER_MIN: '0',
    IMAGEPOD_RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
    ...apiEnv,
  });
  const client = new Redis(redis.url);
  const token = mintToken(SECRET, 'bench', 'user', '2h');
  const keys = new Keys(prefix);
  const queues = new Map<string, Queue>();
  const agents: Agent[] = [];
  const call = async (method: string, path: string, body?: unknown, t = token) => {
    const res = await fetch(`${api.url}${API_BASE}${path}`, {
      method,
      headers: { authorization: `Bearer ${t}`, ...(body !== undefined && { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as unknown };
  };
  return {
    redis,
    client,
    api,
    prefix,
    token,
    agents,
    async redisCpuMs() {
      const info = await client.info('cpu');
      const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0);
      return (field('used_cpu_user') + field('used_cpu_sys')) * 1000;
    },
    queue(name) {
      let q = queues.get(name);
      if (!q) {
        q = new Queue(name, { connection: client, prefix: keys.queuePrefix(name.split('.')[0] ?? name) });
        queues.set(name, q);
      }
      return q;
    },
    post: (path, body, t) => call('POST', path, body, t),
    get: (path, t) => call('GET', path, undefined, t),
    async addAgents(n, env = {}, executor = () => new SimExecutor()) {
      const started: Agent[] = [];
      for (let i = 0; i < n; i++) {
        const config = loadAgentConfig({
          IMAGEPOD_API_URL: api.url,
          IMAGEPOD_REGISTRATION_TOKEN: REGISTRATION,
          IMAGEPOD_REDIS_URL: redis.url,
          IMAGEPOD_AGENT_STATE_DIR: mkdtempSync(join(tmpdir(), 'imagepod-bench-agent-')),
          IMAGEPOD_NODE_NAME: `bench-${agents.length + i}`,
          IMAGEPOD_NVIDIA_SMI: '/nonexistent',
          IMAGEPOD_DISK_MIN_FREE_MIB: '0',
          // Many agents share this process: none serves /metrics (they would race for one port).
          IMAGEPOD_AGENT_METRICS_PORT: 'off',
          ...env,
        });
        started.push(await Agent.start(config, pino({ level: process.env.BENCH_AGENT_LOG ?? 'silent' }, pino.destination(2)), executor()));
      }
      agents.push(...started);
      return started;
    },
    async close() {
      await Promise.all(agents.map((a) => a.stop(0)));
      await Promise.all([...queues.values()].map((q) => q.close()));
      await api.stop();
      client.disconnect();
      await redis.stop();
    },
  };
}

/** Polls until `done()` or `ms` pass; resolves with the time it took. */
export async function until(done: () => Promise<boolean>, ms = 600_000, every = 20): Promise<number> {
  const t0 = performance.now();
  while (!(await done())) {
    if (performance.now() - t0 > ms) throw new Error('the benchmark step did not finish in time');
    await new Promise((r) => setTimeout(r, every));
  }
  return performance.now() - t0;
}
