/**
 * The agent's figures on this machine:
 *  - submit-to-container-start latency on an idle agent (Docker executor, busybox), median and
 *    p99 over --jobs jobs: `started_at - created_at` as the API recorded them;
 *  - an idle agent's Redis commands per second, with the default intervals, counted with
 *    MONITOR on a Redis of its own.
 *   npm run bench:agent [-- --jobs 100 --idle-seconds 30]
 * Needs dockerd (the tests' one is started if none answers at IMAGEPOD_TEST_DOCKER_HOST).
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Agent } from '../agent/agent.js';
import { loadAgentConfig } from '../agent/config.js';
import { dockerFromHost } from '../agent/executor/docker.js';
import { mintToken } from '../src/cli/mint-token.js';
import { loadApiConfig } from '../src/config/api-config.js';
import { API_BASE } from '../src/http/app.js';
import { startApiServer } from '../src/server.js';
import { ensureTestDocker, TEST_IMAGE } from '../test/setup/dockerd.js';
import { agentCommandRate } from '../test/support/monitor.js';
import { OwnRedis } from '../test/support/redis-server.js';
import { ms, percentile } from './fleet.js';

const { values } = parseArgs({ options: { jobs: { type: 'string', default: '100' }, 'idle-seconds': { type: 'string', default: '30' } } });
const JOBS = Number(values.jobs);
const IDLE_SECONDS = Number(values['idle-seconds']);

const docker = await ensureTestDocker();
const redis = await OwnRedis.start();
const secret = 'b'.repeat(40);
const registrationToken = 'r'.repeat(24);
const api = await startApiServer(
  loadApiConfig({
    IMAGEPOD_REDIS_URL: redis.url,
    IMAGEPOD_JWT_SECRET: secret,
    IMAGEPOD_REGISTRATION_TOKEN: registrationToken,
    IMAGEPOD_HOST: '127.0.0.1',
    IMAGEPOD_PORT: '0',
  }),
  pino({ level: 'silent' }),
);
const agent = await Agent.start(
  loadAgentConfig({
    IMAGEPOD_API_URL: api.url,
    IMAGEPOD_REGISTRATION_TOKEN: registrationToken,
    IMAGEPOD_REDIS_URL: redis.url,
    IMAGEPOD_AGENT_STATE_DIR: mkdtempSync(join(tmpdir(), 'imagepod-bench-agent-')),
    IMAGEPOD_EXECUTOR: 'docker',
    IMAGEPOD_DOCKER_HOST: docker.host,
    IMAGEPOD_DOCKER_NETWORK: 'none',
    IMAGEPOD_NVIDIA_SMI: '/nonexistent',
    IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090',
    IMAGEPOD_AGENT_METRICS_PORT: 'off',
  }),
  pino({ level: 'silent' }),
);
const token = mintToken(secret, 'bench', 'user', '1h');
const call = async (method: string, path: string, body?: unknown) => {
  const res = await fetch(`${api.url}${API_BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return (await res.json()) as Record<string, unknown>;
};

try {
  await sleep(2000);
  const idle = await agentCommandRate(redis.url, IDLE_SECONDS);
  const breakdown = [...idle.commands].map(([c, n]) => `${c} ${n}`).join(', ');
  console.log(`idle agent: ${idle.perSecond.toFixed(2)} Redis commands/s over ${IDLE_SECONDS} s (${breakdown})`);

  const startLatency: number[] = [];
  const endToEnd: number[] = [];
  for (let i = 0; i < JOBS; i++) {
    const job = await call('POST', '/jobs/', { docker_image: TEST_IMAGE, command: ['true'], memory_required: 32 });
    for (;;) {
      const v = await call('GET', `/jobs/${job.id}`);
      if (v.status === 'succeeded' || v.status === 'failed') {
        const created = Date.parse(String(v.created_at));
        startLatency.push(Date.parse(String(v.started_at)) - created);
        endToEnd.push(Date.parse(String(v.completed_at)) - created);
        break;
      }
      await sleep(5);
    }
  }
  // The engine's own cost for the same container, without ImagePod: create + start, timed here.
  const engine = dockerFromHost(docker.host);
  const raw: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const c = await engine.createContainer({ Image: TEST_IMAGE, Cmd: ['true'], HostConfig: { NetworkMode: 'none' } });
    await c.start();
    raw.push(performance.now() - t0);
    await c.wait();
    await c.remove({ force: true });
  }
  raw.sort((a, b) => a - b);
  startLatency.sort((a, b) => a - b);
  endToEnd.sort((a, b) => a - b);
  console.log(
    `submit -> container start, ${JOBS} busybox jobs one at a time on an idle agent: median ${ms(percentile(startLatency, 50))}, p99 ${ms(percentile(startLatency, 99))}`,
  );
  console.log(`submit -> job succeeded (API record): median ${ms(percentile(endToEnd, 50))}, p99 ${ms(percentile(endToEnd, 99))}`);
  console.log(
    `the Docker engine alone, create + start of the same container: median ${ms(percentile(raw, 50))}, p99 ${ms(percentile(raw, 99))}`,
  );
} finally {
  await agent.stop(0);
  await api.close();
  await redis.stop();
  await docker.stop();
}
