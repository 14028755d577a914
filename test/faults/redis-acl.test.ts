import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { AGENT_REDIS_USERNAME, agentAclRules } from '../../src/redis/agent-acl.js';
import { Keys } from '../../src/redis/keys.js';
import { type AgentProcess, spawnAgent, startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';
import { OwnRedis } from '../support/redis-server.js';
import { TestRedisCluster } from '../support/redis-topologies.js';

/**
 * Least privilege in Redis: a Redis of this test's own where the default user (the API's) needs
 * a password and agents connect as their own ACL user (src/redis/agent-acl.ts). Real agents
 * claim, run, fail, retry, cancel and recover jobs through it without one refusal in Redis' ACL
 * log; then, as that user, nothing outside the queues can be read or written.
 */
const API_PASSWORD = randomBytes(24).toString('hex');
const AGENT_PASSWORD = randomBytes(24).toString('hex');

let redis: OwnRedis;
/** The API's user, for setting up and for looking. */
let admin: Redis;
/** What a stolen agent credential gives. */
let asAgent: Redis;
let t: TestApi;
let keys: Keys;
const agents: Agent[] = [];
const spawned: AgentProcess[] = [];
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  redis = await OwnRedis.start('none');
  admin = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  t = await startTestApi('redis-acl', { IMAGEPOD_REDIS_URL: redis.url, IMAGEPOD_REDIS_PASSWORD: API_PASSWORD });
  keys = new Keys(t.prefix);
  await admin.acl('SETUSER', AGENT_REDIS_USERNAME, ...agentAclRules(t.prefix, { password: AGENT_PASSWORD }));
  // The default user needs a password from now on (this connection stays signed in).
  await admin.config('SET', 'requirepass', API_PASSWORD);
  await admin.acl('LOG', 'RESET');
  asAgent = new Redis(redis.url, { username: AGENT_REDIS_USERNAME, password: AGENT_PASSWORD, maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop(0)));
  await Promise.all(spawned.splice(0).map((p) => p.kill('SIGKILL')));
  await t?.api.close();
  t?.redis.disconnect();
  admin?.disconnect();
  asAgent?.disconnect();
  await redis?.stop();
  mkdirSync(join(import.meta.dirname, '../artifacts'), { recursive: true });
  writeFileSync(join(import.meta.dirname, '../artifacts/redis-acl.json'), `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`redis-acl: ${JSON.stringify(figures)}`);
});

const agentRedisEnv = () => ({
  IMAGEPOD_REDIS_URL: redis.url,
  IMAGEPOD_REDIS_USERNAME: AGENT_REDIS_USERNAME,
  IMAGEPOD_REDIS_PASSWORD: AGENT_PASSWORD,
});
const jobs = () => jobsOf(t);

/** Inline commands on a bare connection (no client library signing in first); one reply line each. */
async function rawRedis(port: number, lines: string[]): Promise<string[]> {
  const socket = createConnection({ host: '127.0.0.1', port });
  let got = '';
  socket.on('data', (d: Buffer) => {
    got += d.toString();
  });
  socket.write(lines.map((l) => `${l}\r\n`).join(''));
  await waitFor('Redis to answer', async () => got.split('\r\n').length > lines.length);
  socket.destroy();
  return got.split('\r\n').slice(0, lines.length);
}
/** Refusals Redis logged (ACL LOG): commands, keys or channels a user was denied. */
const aclLog = async () => (await admin.acl('LOG')) as unknown[];

describe('agents on their own ACL user', () => {
  it('claim, run, fail, retry, cancel and recover jobs of the CPU and a GPU tier with no refusal', async () => {
    const a = await startAgent(t, { ...agentRedisEnv(), IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090' });
    agents.push(a);
    const ok = await jobs().submit({
      docker_image: 'busybox',
      command: ['sh', '-c', 'echo hi; echo "{\\"n\\":1}" > "$IMAGEPOD_OUTPUT_DIR/result.json"'],
      memory_required: 16,
    });
    const gpu = await jobs().submit({ docker_image: 'busybox', command: ['true'], gpu_memory_required: 8000, memory_required: 16 });
    const bad = await jobs().submit({ docker_image: 'busybox', command: ['sh', '-c', 'exit 3'], memory_required: 16 });
    const retried = await jobs().submit({ docker_image: 'busybox', command: ['sh', '-c', 'exit 4'], memory_required: 16, max_retries: 1 });
    const long = await jobs().submit({ docker_image: 'busybox', command: ['sleep', '60'], memory_required: 16 });

    expect((await jobs().status(ok, 'succeeded')).result.data).toEqual({ n: 1 });
    expect((await jobs().status(gpu, 'succeeded')).gpu_indices).toEqual([0]);
    expect((await jobs().status(bad, 'failed')).exit_code).toBe(3);
    expect((await jobs().status(retried, 'failed')).attempts).toBe(2);
    await jobs().status(long, 'running');
    await t.req('POST', `/jobs/${long}/cancel`, { token: t.tokens.alice });
    await jobs().status(long, 'cancelled');
    expect(await aclLog()).toEqual([]);
    figures.jobs_run = 5;
  });

  it("a starving job's reservation is taken (the scripts read Redis' clock) and the job runs", async () => {
    await Promise.all(agents.splice(0).map((x) => x.stop(0)));
    const a = await startAgent(t, {
      ...agentRedisEnv(),
      IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090',
      IMAGEPOD_STARVATION_MS: '200',
      IMAGEPOD_NODE_NAME: 'acl-reserver',
    });
    agents.push(a);
    const small = await jobs().submit({ docker_image: 'busybox', command: ['sleep', '2'], gpu_memory_required: 4096, memory_required: 16 });
    await jobs().status(small, 'running');
    const big = await jobs().submit({ docker_image: 'busybox', command: ['true'], gpu_memory_required: 22000, memory_required: 16 });
    const reservation = `${keys.bullJob('gpu-24g', big)}:ip-reserved`;
    expect(await waitFor('a reservation', async () => (await admin.get(reservation)) ?? undefined)).toMatch(/^acl-reserver\|/);
    await jobs().status(big, 'succeeded');
    expect(await aclLog()).toEqual([]);
    figures.reservations = 1;
  });

  it("a killed agent's job comes back through BullMQ's stalled check and another agent finishes it", async () => {
    await Promise.all(agents.splice(0).map((x) => x.stop(0)));
    const marker = join(tmpdir(), `imagepod-acl-${randomBytes(4).toString('hex')}`);
    const doomed = spawnAgent(t, { ...agentRedisEnv(), IMAGEPOD_LOG_LEVEL: 'warn' });
    spawned.push(doomed);
    const id = await jobs().submit({
      docker_image: 'busybox',
      // The first run waits to be killed; the second finishes.
      command: ['sh', '-c', `if [ -e ${marker} ]; then echo second; else touch ${marker}; sleep 120; fi`],
      memory_required: 16,
    });
    await jobs().status(id, 'running', 40_000);
    await doomed.kill('SIGKILL');
    agents.push(await startAgent(t, agentRedisEnv()));
    const done = await jobs().status(id, 'succeeded', 40_000);
    expect(done.attempts).toBeGreaterThanOrEqual(2);
    rmSync(marker, { force: true });
    expect(await aclLog()).toEqual([]);
    figures.stalled_recoveries = 1;
    figures.acl_log_refusals_while_agents_worked = (await aclLog()).length;
  }, 90_000);
});

describe('what the agent user cannot do', () => {
  it('cannot read or write the registry, API keys, ledger, sessions, webhook secrets, job records or logs', async () => {
    // Real keys of this run, found as the API's user.
    const all: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await admin.scan(cursor, 'MATCH', `${t.prefix}:*`, 'COUNT', 1000);
      cursor = next;
      all.push(...found);
    } while (cursor !== '0');
    const someJob = all.find((k) => k.includes(':rec:')) ?? '';
    const tier = /\{([^}]+)\}:rec:/.exec(someJob)?.[1] ?? 'cpu';
    const jobId = someJob.split(':rec:')[1] ?? '';
    const apiKey = all.find((k) => k.includes('{reg}:apikey:'));
    const node = all.find((k) => k.includes('{reg}:node:'));
    expect(apiKey).toBeDefined();
    expect(node).toBeDefined();
    const forbidden = [
      node as string,
      apiKey as string,
      keys.nodes,
      keys.live('some-node'),
      keys.fitIndex('any', 0),
      keys.ledger,
      keys.userLimits('alice'),
      keys.userSpend('alice'),
      keys.session('a-session-id'),
      keys.webhookSecret('alice'),
      keys.jobQueueIndex,
      keys.jobsOfUser('alice'),
      keys.jobRecord(tier, jobId),
      keys.jobLog(tier, jobId),
      keys.jobEvents(tier),
      keys.pending(tier),
      'another-app:secret',
    ];
    let refused = 0;
    for (const key of forbidden) {
      for (const attempt of [
        () => asAgent.get(key),
        () => asAgent.hgetall(key),
        () => asAgent.type(key),
        () => asAgent.set(key, 'x'),
        () => asAgent.del(key),
        () => asAgent.eval("return redis.call('TYPE', KEYS[1])", 1, key),
      ]) {
        await expect(attempt()).rejects.toThrow(/NOPERM/);
        refused++;
      }
    }
    // The same user does reach the queues.
    expect(await asAgent.llen(`${keys.queuePrefix('cpu')}:cpu:wait`)).toBeGreaterThanOrEqual(0);
    expect(await asAgent.type(`${keys.queuePrefix('gpu-24g')}:gpu-24g:meta`)).toBeDefined();
    figures.keys_tried = forbidden.length;
    figures.key_attempts_refused = refused;
  });

  it('cannot flush, list keys, read the config, watch traffic, manage users or shut Redis down', async () => {
    const commands: [string, ...string[]][] = [
      ['FLUSHALL'],
      ['FLUSHDB'],
      ['KEYS', '*'],
      ['SCAN', '0'],
      ['RANDOMKEY'],
      ['CONFIG', 'GET', 'requirepass'],
      ['CONFIG', 'SET', 'appendonly', 'no'],
      ['ACL', 'LIST'],
      ['ACL', 'SETUSER', AGENT_REDIS_USERNAME, '~*'],
      ['ACL', 'WHOAMI'],
      ['CLIENT', 'LIST'],
      ['CLIENT', 'KILL', 'TYPE', 'normal'],
      ['MONITOR'],
      ['DEBUG', 'SLEEP', '0'],
      ['SHUTDOWN', 'NOSAVE'],
      ['SWAPDB', '0', '1'],
      ['SCRIPT', 'FLUSH'],
      ['FUNCTION', 'FLUSH'],
      ['SUBSCRIBE', 'anything'],
      ['PUBLISH', 'anything', 'x'],
      ['MIGRATE', '127.0.0.1', '1', '', '0', '1000', 'KEYS', keys.ledger],
      ['BGSAVE'],
      ['REPLICAOF', '127.0.0.1', '1'],
    ];
    for (const [cmd, ...args] of commands) {
      expect(await admin.acl('DRYRUN', AGENT_REDIS_USERNAME, cmd, ...args), cmd).toMatch(/no permissions/);
      // DEBUG is refused before the ACL is asked (enable-debug-command), the rest by the ACL.
      await expect(asAgent.call(cmd, ...args), cmd).rejects.toThrow(cmd === 'DEBUG' ? /NOPERM|not allowed/ : /NOPERM/);
    }
    // A script runs with its caller's rights: EVAL is allowed, what it calls is checked.
    await expect(asAgent.eval("return redis.call('FLUSHALL')", 0)).rejects.toThrow(
      /NOPERM|no permissions|user executing the script can't run this command/,
    );
    await expect(asAgent.eval("return redis.call('KEYS', '*')", 0)).rejects.toThrow(
      /NOPERM|no permissions|user executing the script can't run this command/,
    );
    expect(await admin.ping()).toBe('PONG');
    figures.commands_refused = commands.length + 2;
  });

  it('key patterns: braces are literal in ACL globs; a GPU family queue is in, a tier record is not', async () => {
    const dry = (key: string) => admin.acl('DRYRUN', AGENT_REDIS_USERNAME, 'GET', key) as Promise<string>;
    expect(await dry(`${t.prefix}:{gpu-80g}:gpu-80g.h100:wait`)).toBe('OK');
    expect(await dry(`${t.prefix}:{gpu-20000m}:gpu-20000m:meta`)).toBe('OK');
    expect(await dry(`${t.prefix}:{cpu}:cpu:1`)).toBe('OK');
    for (const key of [
      `${t.prefix}:{gpu-80g}:rec:1`,
      `${t.prefix}:{cpu}:log:1`,
      `${t.prefix}:{reg}:apikey:1`,
      `${t.prefix}-other:{cpu}:cpu:wait`,
    ]) {
      expect(await dry(key)).toMatch(/no permissions/);
    }
  });

  it('the agent password is not the API password, and without one nothing is answered', async () => {
    const replies = await rawRedis(redis.port, [
      `GET ${keys.ledger}`,
      `AUTH default ${AGENT_PASSWORD}`,
      `AUTH ${AGENT_REDIS_USERNAME} ${API_PASSWORD}`,
    ]);
    expect(replies[0]).toMatch(/^-NOAUTH/);
    expect(replies[1]).toMatch(/^-WRONGPASS/);
    expect(replies[2]).toMatch(/^-WRONGPASS/);
  });
});

describe('on a Redis Cluster', () => {
  it('the same user, set on every primary, runs jobs of tiers on different shards with no refusal', async () => {
    const cluster = await TestRedisCluster.start(3);
    const nodes = cluster.ports.map((port) => new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 }));
    let ct: TestApi | undefined;
    let agent: Agent | undefined;
    try {
      const env = { IMAGEPOD_REDIS_URL: '', IMAGEPOD_REDIS_CLUSTER_NODES: cluster.addresses.join(',') };
      ct = await startTestApi('redis-acl-cluster', env);
      for (const n of nodes) await n.acl('SETUSER', AGENT_REDIS_USERNAME, ...agentAclRules(ct.prefix, { password: AGENT_PASSWORD }));
      agent = await startAgent(ct, {
        ...env,
        IMAGEPOD_REDIS_USERNAME: AGENT_REDIS_USERNAME,
        IMAGEPOD_REDIS_PASSWORD: AGENT_PASSWORD,
        IMAGEPOD_SIMULATED_GPUS: '1x81920:A100 80GB',
      });
      const cj = jobsOf(ct);
      const ids = [
        await cj.submit({ docker_image: 'busybox', command: ['true'], memory_required: 16 }),
        await cj.submit({ docker_image: 'busybox', command: ['true'], memory_required: 16, gpu_memory_required: 4000 }),
        await cj.submit({ docker_image: 'busybox', command: ['true'], memory_required: 16, gpu_memory_required: 60000 }),
      ];
      for (const id of ids) await cj.status(id, 'succeeded');
      for (const n of nodes) expect(await n.acl('LOG')).toEqual([]);
      figures.cluster_jobs_run = ids.length;
    } finally {
      await agent?.stop(0);
      await ct?.api.close();
      ct?.redis.disconnect();
      for (const n of nodes) n.disconnect();
      await cluster.stop();
    }
  }, 90_000);
});
