import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type Logger, pino } from 'pino';
import { mintToken } from '../../src/cli/mint-token.js';
import { loadApiConfig } from '../../src/config/api-config.js';
import { API_BASE } from '../../src/http/app.js';
import { type ApiServer, startApiServer } from '../../src/server.js';
import { type CallOptions, call, type Reply } from './http.js';
import { deletePrefix, REDIS_URL, testRedis, uniquePrefix } from './redis.js';

export interface TestApi {
  readonly api: ApiServer;
  readonly url: string;
  readonly prefix: string;
  readonly secret: string;
  readonly registrationToken: string;
  readonly tokens: { readonly alice: string; readonly bob: string; readonly admin: string };
  /** A Redis connection for assertions and cleanup. */
  readonly redis: Redis;
  /** `call` against the API's base path. */
  req<T = any>(method: string, path: string, opts?: CallOptions): Promise<Reply<T>>;
  close(): Promise<void>;
}

function testApiConfig(
  shared: { prefix: string; secret: string; registrationToken: string },
  env: Record<string, string>,
): ReturnType<typeof loadApiConfig> {
  return loadApiConfig({
    IMAGEPOD_REDIS_URL: REDIS_URL,
    IMAGEPOD_KEY_PREFIX: shared.prefix,
    IMAGEPOD_JWT_SECRET: shared.secret,
    IMAGEPOD_REGISTRATION_TOKEN: shared.registrationToken,
    IMAGEPOD_HOST: '127.0.0.1',
    IMAGEPOD_PORT: '0',
    // Rate limits off unless a test turns them on: files register hundreds of nodes and submit
    // thousands of jobs from one address (test/api/rate-limit.test.ts tests the limits).
    IMAGEPOD_RATE_LIMIT_SUBMIT_PER_MIN: '0',
    IMAGEPOD_RATE_LIMIT_REGISTER_PER_MIN: '0',
    IMAGEPOD_RATE_LIMIT_SESSION_PER_MIN: '0',
    IMAGEPOD_RATE_LIMIT_AUTH_FAILURES_PER_MIN: '0',
    ...env,
  });
}

/** A second API server on the same Redis prefix and secrets as `t`: another replica. */
export function startReplica(t: TestApi, env: Record<string, string> = {}): Promise<ApiServer> {
  return startApiServer(testApiConfig(t, env), pino({ level: 'silent' }));
}

/** Starts a real API server on a random port over the real Redis, under a fresh key prefix. */
export async function startTestApi(name: string, env: Record<string, string> = {}, logger?: Logger): Promise<TestApi> {
  const prefix = uniquePrefix(name);
  const secret = randomBytes(32).toString('hex');
  const registrationToken = `reg-${randomBytes(16).toString('hex')}`;
  const api = await startApiServer(
    testApiConfig({ prefix, secret, registrationToken }, env),
    logger ?? pino({ level: process.env.IMAGEPOD_TEST_LOG_LEVEL ?? 'silent' }),
  );
  const redis = testRedis();
  const tokens = {
    alice: mintToken(secret, 'alice', 'user', '1h'),
    bob: mintToken(secret, 'bob', 'user', '1h'),
    admin: mintToken(secret, 'root', 'admin', '1h'),
  };
  return {
    api,
    url: api.url,
    prefix,
    secret,
    registrationToken,
    tokens,
    redis,
    req: (method, path, opts) => call(api.url, method, `${API_BASE}${path}`, opts),
    async close() {
      await api.close();
      await deletePrefix(redis, prefix);
      redis.disconnect();
    },
  };
}

export const RTX_4090_NODE = {
  node_name: 'gpu-server-1',
  hostname: 'gpu-server-1.local',
  gpu_count: 2,
  gpu_type: 'RTX 4090',
  gpu_memory_total: 24576,
  cpu_cores: 16,
  memory_total: 32768,
  max_concurrent_jobs: 2,
};

/** Registers a node and returns its id and agent key. */
export async function registerNode(
  t: TestApi,
  body: Record<string, unknown> = RTX_4090_NODE,
): Promise<{ nodeId: string; apiKey: string; agentId: string; body: any }> {
  const r = await t.req('POST', '/nodes/register', { token: t.registrationToken, body });
  if (r.status !== 201) throw new Error(`register failed: ${r.status} ${r.text}`);
  return { nodeId: r.body.node_id, apiKey: r.body.api_key, agentId: r.body.agent_id, body: r.body };
}

export async function heartbeat(t: TestApi, nodeId: string, apiKey: string, body: Record<string, unknown>): Promise<Reply> {
  return t.req('POST', `/nodes/${nodeId}/heartbeat`, { token: apiKey, body });
}
