import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { describeAgentConfig, loadAgentConfig } from '../../agent/config.js';
import { mintToken } from '../../src/cli/mint-token.js';
import { describeApiConfig, loadApiConfig } from '../../src/config/api-config.js';
import { createLogger } from '../../src/logger.js';
import { AGENT_REDIS_USERNAME, agentAclRules } from '../../src/redis/agent-acl.js';
import { agentEnv, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { type CallOptions, call } from '../support/http.js';
import { jobsOf } from '../support/jobs.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * Secrets never leak: one full run (registration, jobs with env and input, a signed webhook, a
 * dashboard session, Bull Board, metrics of the API and the agent, the API reference, refused
 * credentials), everything it produced kept (every log line of the API and the agent at debug,
 * every response's headers and body, every webhook delivery, /metrics, and every value in Redis),
 * then searched for every secret in it. A secret may appear only where it is handed to its owner
 * (an API key in the one answer that creates it, a session token in its Set-Cookie); the JWT and
 * session secrets, the registration and metrics tokens and the Redis passwords nowhere at all.
 */

/** Who a produced thing is shown to. */
type Audience =
  | 'log'
  | 'metrics'
  | 'anonymous'
  | 'alice'
  | 'bob'
  | 'admin'
  | 'agent'
  | 'registrar'
  | 'webhook-receiver'
  /** Redis itself: what an operator with the Redis password can read. */
  | 'redis';

interface Artifact {
  readonly kind: 'log' | 'response' | 'metrics' | 'webhook' | 'redis';
  readonly where: string;
  readonly audience: Audience;
  readonly text: string;
}

const artifacts: Artifact[] = [];
const logLines: string[] = [];
const sink = () =>
  new Writable({
    write(chunk, _enc, done) {
      logLines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });

const REDIS_PASSWORD = `redis-pw-${randomBytes(16).toString('hex')}`;
const REDIS_AGENT_PASSWORD = `redis-agent-pw-${randomBytes(16).toString('hex')}`;
const SESSION_SECRET = `session-secret-${randomBytes(24).toString('hex')}`;
const METRICS_TOKEN = `metrics-token-${randomBytes(16).toString('hex')}`;
const JOB_ENV_SECRET = `job-env-secret-${randomBytes(12).toString('hex')}`;
const JOB_INPUT_SECRET = `job-input-secret-${randomBytes(12).toString('hex')}`;

let redis: OwnRedis;
let admin: Redis;
let t: TestApi;
let agent: Agent;
let hooks: Server;
let hooksUrl = '';
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  redis = await OwnRedis.start('none');
  admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  hooks = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      body += c;
    });
    req.on('end', () => {
      artifacts.push({
        kind: 'webhook',
        where: `webhook ${req.url}`,
        audience: 'webhook-receiver',
        text: `${headerText(req.headers)}\n${body}`,
      });
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => hooks.listen(0, '127.0.0.1', resolve));
  hooksUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`;

  const apiEnv = {
    IMAGEPOD_REDIS_URL: redis.url,
    IMAGEPOD_REDIS_PASSWORD: REDIS_PASSWORD,
    IMAGEPOD_SESSION_SECRET: SESSION_SECRET,
    IMAGEPOD_METRICS_TOKEN: METRICS_TOKEN,
    IMAGEPOD_WEBHOOK_ALLOW: '127.0.0.1',
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200',
  };
  const apiLogger = createLogger('debug', 'imagepod-api', sink());
  t = await startTestApi('secrets-sweep', apiEnv, apiLogger);
  // What src/main.ts prints at start-up, for this configuration.
  const apiConfig = loadApiConfig({
    ...apiEnv,
    IMAGEPOD_KEY_PREFIX: t.prefix,
    IMAGEPOD_JWT_SECRET: t.secret,
    IMAGEPOD_REGISTRATION_TOKEN: t.registrationToken,
  });
  apiLogger.info({ config: describeApiConfig(apiConfig) }, 'starting');
  await admin.acl('SETUSER', AGENT_REDIS_USERNAME, ...agentAclRules(t.prefix, { password: REDIS_AGENT_PASSWORD }));
  await admin.config('SET', 'requirepass', REDIS_PASSWORD);
  const config = loadAgentConfig(
    agentEnv(t, {
      IMAGEPOD_REDIS_URL: redis.url,
      IMAGEPOD_REDIS_USERNAME: AGENT_REDIS_USERNAME,
      IMAGEPOD_REDIS_PASSWORD: REDIS_AGENT_PASSWORD,
      IMAGEPOD_LOG_LEVEL: 'debug',
      IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090',
    }),
  );
  const agentLogger = createLogger('debug', 'imagepod-agent', sink());
  agentLogger.info({ config: describeAgentConfig(config) }, 'starting');
  agent = await Agent.start(config, agentLogger);
});

afterAll(async () => {
  await agent?.stop(0);
  await t?.api.close();
  t?.redis.disconnect();
  admin?.disconnect();
  await redis?.stop();
  await new Promise((resolve) => hooks?.close(resolve));
  mkdirSync(join(import.meta.dirname, '../artifacts'), { recursive: true });
  writeFileSync(join(import.meta.dirname, '../artifacts/secrets-sweep.json'), `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`secrets-sweep: ${JSON.stringify(figures)}`);
});

function headerText(headers: Headers | IncomingHttpHeaders): string {
  const entries = headers instanceof Headers ? [...headers.entries()] : Object.entries(headers).map(([k, v]) => [k, String(v)]);
  return entries.map(([k, v]) => `${k}: ${v}`).join('\n');
}

/** A request as `audience`, its answer (status, headers, body) kept for the sweep. */
async function req(audience: Audience, method: string, path: string, opts: CallOptions = {}, base = '/gpu-workers') {
  const r = await call(t.url, method, `${base}${path}`, opts);
  artifacts.push({
    kind: 'response',
    where: `${method} ${base}${path} as ${audience}`,
    audience,
    text: `${r.status}\n${headerText(r.headers)}\n${r.text}`,
  });
  return r;
}

/** A secret, where it may appear, and the forms it is searched for in. */
interface Secret {
  readonly name: string;
  readonly value: string;
  readonly allowed: (a: Artifact) => boolean;
  /** It must be found there at least once: proof the sweep looks where the secret is. */
  readonly mustAppear?: boolean;
}
const nowhere = () => false;

function forms(value: string): string[] {
  const out = [value, Buffer.from(value).toString('base64'), encodeURIComponent(value)];
  // A JWT: its signature alone would do as much harm.
  const parts = value.split('.');
  if (parts.length === 3 && (parts[2] ?? '').length > 20) out.push(parts[2] as string);
  return [...new Set(out)];
}

describe('a full run, swept for secrets', () => {
  it('leaves no secret anywhere but in the one answer that hands it to its owner', async () => {
    // ── registration, by the token and then by the keys it gave ────────────────────────────
    const node = await req('registrar', 'POST', '/nodes/register', {
      token: t.registrationToken,
      body: { node_name: 'sweep-node', hostname: 'sweep', gpu_count: 0, cpu_cores: 4, memory_total: 4096 },
    });
    expect(node.status).toBe(201);
    const nodeKey = node.body.api_key as string;
    const registered = await req('registrar', 'POST', '/agents/register', {
      token: t.registrationToken,
      body: {
        agent_version: '1.0.0',
        node: { node_name: 'sweep-agent-node', hostname: 'sweep2', gpu_count: 0, cpu_cores: 2, memory_total: 2048 },
      },
    });
    const agentRegKey = registered.body.api_key as string;
    const beat = { cpu_cores_available: 4, current_jobs: 0, health_status: 'healthy' };
    expect((await req('agent', 'POST', `/nodes/${node.body.node_id}/heartbeat`, { token: nodeKey, body: beat })).status).toBe(200);
    await req('agent', 'GET', `/nodes/${node.body.node_id}`, { token: nodeKey });
    await req('agent', 'GET', '/me', { token: nodeKey });

    // ── Alice's webhook secret, jobs with env and input, a signed delivery ───────────────────
    const hookSecret = (await req('alice', 'GET', '/users/alice/webhook-secret', { token: t.tokens.alice })).body.secret as string;
    expect(hookSecret).toMatch(/^whsec_/);
    const jobs = jobsOf(t);
    const submitted = await req('alice', 'POST', '/jobs/', {
      token: t.tokens.alice,
      body: {
        docker_image: 'busybox',
        // Its whole environment goes to its log: none of the agent's own secrets may be in it.
        command: ['sh', '-c', 'env; test -s "$IMAGEPOD_INPUT_FILE" && echo \'{"ok":true}\' > "$IMAGEPOD_OUTPUT_DIR/result.json"'],
        env: { API_TOKEN: JOB_ENV_SECRET },
        input_data: { password: JOB_INPUT_SECRET },
        memory_required: 32,
        webhook_url: hooksUrl,
      },
    });
    expect(submitted.status).toBe(201);
    const jobId = submitted.body.id as string;
    const failing = (
      await req('alice', 'POST', '/jobs/', {
        token: t.tokens.alice,
        body: { docker_image: 'busybox', command: ['sh', '-c', 'exit 3'], memory_required: 32 },
      })
    ).body.id as string;
    const gpuJob = (
      await req('alice', 'POST', '/jobs/', {
        token: t.tokens.alice,
        body: { docker_image: 'busybox', command: ['true'], gpu_memory_required: 4000, memory_required: 32 },
      })
    ).body.id as string;
    await jobs.status(jobId, 'succeeded');
    await jobs.status(failing, 'failed');
    await jobs.status(gpuJob, 'succeeded');
    await waitFor('the webhook delivery', async () => artifacts.some((a) => a.kind === 'webhook'));
    const rotated = (await req('alice', 'POST', '/users/alice/webhook-secret/rotate', { token: t.tokens.alice })).body.secret as string;
    expect(rotated).toMatch(/^whsec_/);

    // ── what people read ─────────────────────────────────────────────────────────────────────
    for (const id of [jobId, failing, gpuJob]) {
      await req('alice', 'GET', `/jobs/${id}`, { token: t.tokens.alice });
      await req('alice', 'GET', `/jobs/${id}/logs`, { token: t.tokens.alice });
      await req('admin', 'GET', `/jobs/${id}`, { token: t.tokens.admin });
      await req('bob', 'GET', `/jobs/${id}`, { token: t.tokens.bob });
      await req('bob', 'GET', `/jobs/${id}/logs`, { token: t.tokens.bob });
    }
    for (const [who, token] of [
      ['alice', t.tokens.alice],
      ['bob', t.tokens.bob],
      ['admin', t.tokens.admin],
    ] as const) {
      for (const path of [
        '/jobs/',
        '/nodes/',
        '/available-nodes/',
        '/queues/',
        '/stats/timeline',
        '/usage/',
        '/me',
        `/users/${who === 'admin' ? 'alice' : who}/limits`,
      ]) {
        await req(who, 'GET', path, { token });
      }
    }
    await req('admin', 'GET', `/nodes/${agent.identity.node_id}/stats`, { token: t.tokens.admin });
    await req('admin', 'GET', `/agents/${agent.identity.agent_id}`, { token: t.tokens.admin });
    await req('admin', 'GET', `/agents/${agent.identity.agent_id}/config`, { token: t.tokens.admin });
    const minted = await req('admin', 'POST', '/tokens', { token: t.tokens.admin, body: { user_id: 'carol', role: 'user', ttl: '1h' } });
    const mintedToken = minted.body.token as string;
    expect(mintedToken.split('.')).toHaveLength(3);
    await req('admin', 'GET', '/queues', { token: t.tokens.admin }, '/admin');
    await req('admin', 'GET', '/queues/api/queues', { token: t.tokens.admin }, '/admin');

    // ── a dashboard session: signed in, used, signed out ─────────────────────────────────────
    const session = await req('alice', 'POST', '/session', { body: { token: t.tokens.alice } });
    const cookie = (session.headers.get('set-cookie') ?? '').split(';')[0] as string;
    const sessionToken = decodeURIComponent(cookie.slice(cookie.indexOf('=') + 1));
    expect(sessionToken.split('.')).toHaveLength(3);
    await req('alice', 'GET', '/jobs/', { headers: { cookie } });
    await req('alice', 'GET', '/me', { headers: { cookie } });
    await req('alice', 'GET', '/', { headers: { cookie } }, '');
    await req('alice', 'DELETE', '/session', { headers: { cookie, origin: t.url } });
    await req('anonymous', 'GET', '/me', { headers: { cookie } });

    // ── the live feed, read as a browser would, until a tick and a job event came ────────────
    const feed = new AbortController();
    const res = await fetch(`${t.url}/gpu-workers/events`, { headers: { authorization: `Bearer ${t.tokens.alice}` }, signal: feed.signal });
    let events = '';
    const reading = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of res.body ?? []) events += decoder.decode(chunk as Uint8Array, { stream: true });
    })().catch(() => {});
    const late = await req('alice', 'POST', '/jobs/', {
      token: t.tokens.alice,
      body: { docker_image: 'busybox', command: ['true'], env: { API_TOKEN: JOB_ENV_SECRET }, memory_required: 16 },
    });
    await jobs.status(late.body.id, 'succeeded');
    await waitFor('a tick and a job event', async () => events.includes('event: tick') && events.includes(late.body.id));
    feed.abort();
    await reading;
    artifacts.push({
      kind: 'response',
      where: 'GET /gpu-workers/events as alice',
      audience: 'alice',
      text: `${headerText(res.headers)}\n${events}`,
    });

    // ── refused credentials, each answered without echoing what was sent ─────────────────────
    const forged = mintToken(`not-${t.secret}`, 'alice', 'admin', '1h');
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from('{"sub":"alice","role":"admin"}').toString('base64url')}.`;
    const bad: [string, CallOptions][] = [
      [`/jobs/`, { token: `${t.tokens.alice}x` }],
      [`/jobs/`, { token: forged }],
      [`/jobs/`, { token: none }],
      [`/jobs/`, { token: t.registrationToken }],
      [`/jobs/`, { token: nodeKey }],
      [`/jobs/`, { token: `${nodeKey.slice(0, -2)}zz` }],
      [`/jobs/`, { token: METRICS_TOKEN }],
      [`/nodes/`, { token: SESSION_SECRET }],
      [`/jobs/`, { headers: { cookie: `imagepod_session=${sessionToken}` } }],
      [`/jobs/${jobId}`, { token: t.tokens.bob }],
    ];
    for (const [path, opts] of bad) await req('anonymous', 'GET', path, opts);
    await req('anonymous', 'POST', '/nodes/register', { token: `${t.registrationToken}x`, body: { node_name: 'x' } });
    await req('anonymous', 'POST', `/nodes/${node.body.node_id}/heartbeat`, { token: agentRegKey, body: beat });
    await req('anonymous', 'POST', '/session', { body: { token: forged } });
    await req('anonymous', 'POST', '/jobs/', { token: t.tokens.alice, raw: `{"env": {"A": "${JOB_ENV_SECRET}"` });

    // ── the rest a visitor or a scraper sees ─────────────────────────────────────────────────
    for (const path of ['/healthz', '/readyz', '/openapi.json', '/docs', '/', '/metrics']) await req('anonymous', 'GET', path, {}, '');
    const apiMetrics = await call(t.url, 'GET', '/metrics', { token: METRICS_TOKEN });
    expect(apiMetrics.status).toBe(200);
    artifacts.push({
      kind: 'metrics',
      where: 'API /metrics',
      audience: 'metrics',
      text: `${headerText(apiMetrics.headers)}\n${apiMetrics.text}`,
    });
    const agentMetrics = await fetch(agent.metricsUrl ?? '');
    artifacts.push({
      kind: 'metrics',
      where: 'agent /metrics',
      audience: 'metrics',
      text: `${headerText(agentMetrics.headers)}\n${await agentMetrics.text()}`,
    });

    // ── everything in Redis, as its operator could read it ───────────────────────────────────
    let cursor = '0';
    do {
      const [next, keys] = await admin.scan(cursor, 'MATCH', '*', 'COUNT', 1000);
      cursor = next;
      for (const key of keys)
        artifacts.push({ kind: 'redis', where: `redis ${key}`, audience: 'redis', text: `${key}\n${await dump(admin, key)}` });
    } while (cursor !== '0');
    await waitFor('the last log lines', async () => logLines.some((l) => l.includes('/metrics')));
    expect(logLines.filter((l) => l.includes('"msg":"starting"'))).toHaveLength(2);
    for (const [i, line] of logLines.entries()) artifacts.push({ kind: 'log', where: `log line ${i + 1}`, audience: 'log', text: line });

    // ── the sweep ────────────────────────────────────────────────────────────────────────────
    const isResponseTo = (a: Artifact, method: string, path: string) =>
      a.kind === 'response' && a.where.startsWith(`${method} /gpu-workers${path} `);
    const ownerData = (a: Artifact) => ['alice', 'admin', 'webhook-receiver', 'redis'].includes(a.audience) && a.kind !== 'log';
    const secrets: Secret[] = [
      { name: 'JWT secret', value: t.secret, allowed: nowhere },
      { name: 'session secret', value: SESSION_SECRET, allowed: nowhere },
      { name: 'registration token', value: t.registrationToken, allowed: nowhere },
      { name: 'metrics token', value: METRICS_TOKEN, allowed: nowhere },
      { name: "the API's Redis password", value: REDIS_PASSWORD, allowed: nowhere },
      { name: "the agent's Redis password", value: REDIS_AGENT_PASSWORD, allowed: nowhere },
      { name: "alice's token", value: t.tokens.alice, allowed: nowhere },
      { name: "bob's token", value: t.tokens.bob, allowed: nowhere },
      { name: "admin's token", value: t.tokens.admin, allowed: nowhere },
      { name: 'a forged token', value: forged, allowed: nowhere },
      { name: "the running agent's API key", value: agent.identity.api_key, allowed: nowhere },
      {
        name: 'a node API key',
        value: nodeKey,
        allowed: (a) => a === artifacts.find((x) => isResponseTo(x, 'POST', '/nodes/register')),
        mustAppear: true,
      },
      {
        name: 'an agent API key',
        value: agentRegKey,
        allowed: (a) => a === artifacts.find((x) => isResponseTo(x, 'POST', '/agents/register')),
        mustAppear: true,
      },
      { name: 'a minted token', value: mintedToken, allowed: (a) => isResponseTo(a, 'POST', '/tokens'), mustAppear: true },
      {
        name: 'a session token',
        value: sessionToken,
        allowed: (a) => a === artifacts.find((x) => isResponseTo(x, 'POST', '/session')),
        mustAppear: true,
      },
      {
        name: 'the webhook secret',
        value: hookSecret,
        allowed: (a) => (a.audience === 'alice' && isResponseTo(a, 'GET', '/users/alice/webhook-secret')) || a.audience === 'redis',
        mustAppear: true,
      },
      {
        name: 'the rotated webhook secret',
        value: rotated,
        allowed: (a) => (a.audience === 'alice' && isResponseTo(a, 'POST', '/users/alice/webhook-secret/rotate')) || a.audience === 'redis',
        mustAppear: true,
      },
      // Not the platform's secrets but the user's: shown to the job's owner (and admins, its
      // webhook, its store), never logged, never to anyone else.
      { name: "a job's env value", value: JOB_ENV_SECRET, allowed: ownerData, mustAppear: true },
      { name: "a job's input", value: JOB_INPUT_SECRET, allowed: ownerData, mustAppear: true },
    ];

    for (const s of secrets) expect(typeof s.value === 'string' && s.value.length > 15, `${s.name} is known`).toBe(true);
    const { leaks, seen } = sweep(artifacts, secrets);
    for (const s of secrets.filter((x) => x.mustAppear)) expect(seen.get(s.name), `${s.name} where its owner gets it`).toBeGreaterThan(0);
    // The sweep itself finds a leak: the JWT secret planted in a log line, base64-encoded.
    const planted: Artifact = {
      kind: 'log',
      where: 'a planted line',
      audience: 'log',
      text: `{"x":"${Buffer.from(t.secret).toString('base64')}"}`,
    };
    expect(sweep([planted], secrets).leaks).toEqual(['JWT secret in a planted line']);
    let bytes = 0;
    for (const a of artifacts) bytes += Buffer.byteLength(a.text);
    const byKind = (k: Artifact['kind']) => artifacts.filter((a) => a.kind === k).length;
    Object.assign(figures, {
      bytes_scanned: bytes,
      places_checked: artifacts.length,
      log_lines: byKind('log'),
      responses: byKind('response'),
      webhook_deliveries: byKind('webhook'),
      metrics_pages: byKind('metrics'),
      redis_keys: byKind('redis'),
      secrets_checked: secrets.length,
      leaks_found: leaks.length,
    });
    expect(leaks).toEqual([]);
  }, 90_000);
});

/** Every place a secret shows up where it may not; and how often it showed up where it may. */
function sweep(found: readonly Artifact[], secrets: readonly Secret[]): { leaks: string[]; seen: Map<string, number> } {
  const leaks: string[] = [];
  const seen = new Map<string, number>();
  for (const s of secrets) {
    const variants = forms(s.value);
    for (const a of found) {
      if (!variants.some((f) => a.text.includes(f))) continue;
      if (s.allowed(a)) seen.set(s.name, (seen.get(s.name) ?? 0) + 1);
      else leaks.push(`${s.name} in ${a.where}`);
    }
  }
  return { leaks, seen };
}

/** A key's value, whatever its type, as text. */
async function dump(r: Redis, key: string): Promise<string> {
  const type = await r.type(key);
  switch (type) {
    case 'string':
      return (await r.get(key)) ?? '';
    case 'hash':
      return JSON.stringify(await r.hgetall(key));
    case 'list':
      return JSON.stringify(await r.lrange(key, 0, -1));
    case 'set':
      return JSON.stringify(await r.smembers(key));
    case 'zset':
      return JSON.stringify(await r.zrange(key, '0', '-1', 'WITHSCORES'));
    case 'stream':
      return JSON.stringify(await r.xrange(key, '-', '+'));
    default:
      return `(${type})`;
  }
}
