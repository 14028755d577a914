import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { spawnAgent, startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';
import { TestRedisCluster, TestTlsRedis } from '../support/redis-topologies.js';

/**
 * Redis over TLS: a redis-server that only speaks TLS (`--port 0 --tls-port`), with a certificate
 * from a CA made for this file. The API and an agent that are given the CA run a job end to end;
 * without it they refuse the server's certificate, and say so. A second server asks clients for
 * a certificate of their own (`tls-auth-clients yes`).
 */

let redis: TestTlsRedis;
let t: TestApi;
let agent: Agent;
const started: { close(): Promise<void> }[] = [];

/** A logger whose lines the test can read. */
function capturedLogger() {
  const lines: string[] = [];
  return { lines, logger: pino({ level: 'info' }, { write: (line: string) => void lines.push(line) }) };
}

beforeAll(async () => {
  redis = await TestTlsRedis.start();
  const env = { IMAGEPOD_REDIS_URL: redis.url, IMAGEPOD_REDIS_TLS_CA_FILE: redis.ca.certFile };
  t = await startTestApi('redis-tls', { ...env, IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1000' });
  agent = await startAgent(t, env);
}, 60_000);

afterAll(async () => {
  await agent?.stop(0);
  await t?.close();
  // Last started, first closed: a server goes after what uses it.
  for (const s of started.reverse()) await s.close();
  await redis?.stop();
}, 60_000);

describe('Redis over TLS (rediss://) with a CA', () => {
  it('runs a job end to end, the API and the agent both verifying the server against the CA', async () => {
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
    const jobs = jobsOf(t);
    const id = await jobs.submit({
      docker_image: 'busybox',
      command: ['sh', '-c', 'echo over tls; echo \'{"tls": true}\' > "$IMAGEPOD_OUTPUT_DIR/result.json"'],
      memory_required: 64,
    });
    const done = await jobs.finished(id);
    expect(done).toMatchObject({ status: 'succeeded', node_id: agent.identity.node_id, result: { data: { tls: true } } });
    expect(await jobs.logLines(id)).toEqual(['over tls', 'job ended: succeeded']);
  });

  it('without the CA, the API refuses the certificate, logs why, and /readyz says 503', async () => {
    const { lines, logger } = capturedLogger();
    const bare = await startTestApi('redis-tls-no-ca', { IMAGEPOD_REDIS_URL: redis.url }, logger);
    started.push(bare);
    expect((await fetch(`${bare.url}/readyz`)).status).toBe(503);
    const line = await waitFor('the connection error logged', async () => lines.find((l) => l.includes('redis connection error')));
    expect(JSON.parse(line).err).toMatch(/certificate/);
    // A request that needs Redis is a 503 too, not a hang.
    expect((await bare.req('GET', '/jobs/', { token: bare.tokens.alice })).status).toBe(503);
  });

  it('without the CA, an agent refuses the certificate and says so', async () => {
    const a = spawnAgent(t, { IMAGEPOD_REDIS_URL: redis.url });
    try {
      await waitFor('the agent to log the refused certificate', async () =>
        /redis connection error.*certificate|certificate.*redis connection error/.test(a.output()),
      );
    } finally {
      await a.kill('SIGKILL');
    }
  });

  it('with a server that asks for client certificates, connects with one and is refused without', async () => {
    const mtls = await TestTlsRedis.start({ clientCerts: true });
    started.push({ close: () => mtls.stop() });
    const client = mtls.client;
    if (client === null) throw new Error('unreachable: the server was started with client certificates');
    const base = { IMAGEPOD_REDIS_URL: mtls.url, IMAGEPOD_REDIS_TLS_CA_FILE: mtls.ca.certFile };
    const withCert = await startTestApi('redis-mtls', {
      ...base,
      IMAGEPOD_REDIS_TLS_CERT_FILE: client.certFile,
      IMAGEPOD_REDIS_TLS_KEY_FILE: client.keyFile,
    });
    started.push(withCert);
    await waitFor('ready with a client certificate', async () => (await fetch(`${withCert.url}/readyz`)).status === 200);
    expect((await withCert.req('GET', '/jobs/', { token: withCert.tokens.alice })).status).toBe(200);

    const without = await startTestApi('redis-mtls-none', base, pino({ level: 'silent' }));
    started.push(without);
    expect((await fetch(`${without.url}/readyz`)).status).toBe(503);
  });
});

describe('a Redis Cluster over TLS', () => {
  it('runs a job with IMAGEPOD_REDIS_TLS and the CA, the nodes verified by the addresses they announce', async () => {
    const cluster = await TestRedisCluster.start(3, { tls: true });
    started.push({ close: () => cluster.stop() });
    const ca = cluster.ca?.certFile ?? '';
    const env = {
      IMAGEPOD_REDIS_URL: '',
      IMAGEPOD_REDIS_CLUSTER_NODES: cluster.addresses.join(','),
      IMAGEPOD_REDIS_TLS: 'true',
      IMAGEPOD_REDIS_TLS_CA_FILE: ca,
    };
    const api = await startTestApi('redis-tls-cluster', { ...env, IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' });
    started.push(api);
    const a = await startAgent(api, env);
    started.push({ close: () => a.stop(0) });
    const jobs = jobsOf(api);
    const id = await jobs.submit({ docker_image: 'busybox', command: ['sh', '-c', 'echo tls cluster'], memory_required: 64 });
    expect(await jobs.finished(id)).toMatchObject({ status: 'succeeded', node_id: a.identity.node_id });
  }, 60_000);
});
