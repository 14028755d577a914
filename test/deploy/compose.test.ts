import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { AGENT_REDIS_USERNAME, agentAclRules } from '../../src/redis/agent-acl.js';

/**
 * docker-compose.yml as docker-compose 1.29 (apt's `docker-compose`) resolves it, with an .env made
 * by the README's own commands: a copy of .env.example with the two secrets filled in. `config` needs
 * no engine; it exits 1 on an unknown option or a missing mandatory variable.
 */
const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
let dir: string;

async function composeConfig(): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], { cwd: dir });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (e.code === 'ENOENT') throw new Error('docker-compose is not installed: apt-get install -y docker-compose (.ci/run does)');
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** The README's first steps on a GPU box, run as written: copy .env.example, fill in the secrets. */
async function readmeEnvSteps(): Promise<void> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### docker-compose on one GPU box'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const steps = block.split('\n').filter((l) => l.startsWith('cp .env.example') || l.startsWith('sed -i'));
  expect(steps).toHaveLength(2);
  await run('bash', ['-euo', 'pipefail', '-c', steps.join('\n')], { cwd: dir });
}

const REDIS_BASE_ARGS = ['--appendonly', 'yes', '--appendfsync', 'everysec', '--maxmemory-policy', 'noeviction'];

/**
 * What the Redis service's command would start redis-server with: its shell script run with the
 * service's environment and a stand-in for the image's entrypoint that prints its arguments, one
 * a line (the first must be redis-server, or the entrypoint would not drop root).
 */
async function redisServerArgs(service: { command: string[]; environment: Record<string, string> }): Promise<string[]> {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'docker-entrypoint.sh'), '#!/bin/sh\nprintf "%s\\n" "$@"\n', { mode: 0o755 });
  // `config` prints the file re-escaped ($$); the container gets a single $.
  const [shell, ...rest] = service.command.map((a) => a.replaceAll('$$', '$'));
  const { stdout } = await run(shell as string, rest, { env: { ...service.environment, PATH: `${bin}:${process.env.PATH}` } });
  const [server, ...args] = stdout.split('\n').slice(0, -1);
  expect(server).toBe('redis-server');
  return args;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'imagepod-compose-'));
  copyFileSync(join(ROOT, 'docker-compose.yml'), join(dir, 'docker-compose.yml'));
  copyFileSync(join(ROOT, '.env.example'), join(dir, '.env.example'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('docker-compose.yml', () => {
  it('with .env.example as shipped (secrets blank), config refuses and names the missing secret', async () => {
    copyFileSync(join(dir, '.env.example'), join(dir, '.env'));
    const r = await composeConfig();
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('set IMAGEPOD_REGISTRATION_TOKEN in .env');
  });

  describe("resolved after the README's steps (secrets filled in)", () => {
    let services: Record<string, any>; // the resolved document

    beforeAll(async () => {
      await readmeEnvSteps();
      const r = await composeConfig();
      expect(r.stderr).not.toMatch(/error|unsupported/i);
      expect(r.code).toBe(0);
      services = parse(r.stdout).services;
    });

    it('Redis keeps an append-only file (fsync every second) on a volume, never evicts, and has a healthcheck', async () => {
      const redis = services.redis;
      expect(redis.image).toBe('redis:7');
      expect((await redisServerArgs(redis)).slice(0, REDIS_BASE_ARGS.length)).toEqual(REDIS_BASE_ARGS);
      expect(redis.volumes).toContain('redis-data:/data:rw');
      expect(redis.healthcheck.test).toEqual(['CMD', 'redis-cli', 'ping']);
    });

    it("Redis asks for the API's password, and the agent signs in as its own ACL user with the project's rule", async () => {
      const api = services.api.environment;
      const agent = services.agent.environment;
      expect(api.IMAGEPOD_REDIS_PASSWORD).toMatch(/^[0-9a-f]{48}$/);
      expect(agent.IMAGEPOD_REDIS_PASSWORD).toMatch(/^[0-9a-f]{48}$/);
      expect(agent.IMAGEPOD_REDIS_PASSWORD).not.toBe(api.IMAGEPOD_REDIS_PASSWORD);
      expect(agent.IMAGEPOD_REDIS_USERNAME).toBe(AGENT_REDIS_USERNAME);
      expect(await redisServerArgs(services.redis)).toEqual([
        ...REDIS_BASE_ARGS,
        ...['--requirepass', api.IMAGEPOD_REDIS_PASSWORD],
        ...['--user', AGENT_REDIS_USERNAME, ...agentAclRules('imagepod', { password: agent.IMAGEPOD_REDIS_PASSWORD })],
      ]);
    });

    it('the API is built from the Dockerfile, reads .env, waits for a healthy Redis, publishes 8000, checks /readyz', () => {
      const api = services.api;
      expect(api.build).toEqual({ context: dir });
      expect(api.environment.IMAGEPOD_JWT_SECRET).toMatch(/^[0-9a-f]{64}$/);
      expect(api.environment.IMAGEPOD_REGISTRATION_TOKEN).toMatch(/^[0-9a-f]{48}$/);
      expect(api.environment.IMAGEPOD_REDIS_URL).toBe('redis://redis:6379');
      expect(api.depends_on).toEqual({ redis: { condition: 'service_healthy' } });
      expect(api.ports).toEqual([{ published: 8000, target: 8000 }]);
      expect(api.healthcheck.test).toEqual(['CMD', 'node', 'scripts/healthcheck.mjs', 'api']);
    });

    it('the agent has every GPU reserved, the Docker socket, its state on a volume, and only the secret it needs', () => {
      const agent = services.agent;
      expect(agent.build).toEqual({ context: dir, target: 'agent' });
      expect(agent.deploy.resources.reservations.devices).toEqual([{ driver: 'nvidia', count: 'all', capabilities: ['gpu'] }]);
      expect(agent.volumes).toContain('/var/run/docker.sock:/var/run/docker.sock:rw');
      expect(agent.volumes).toContain('agent-state:/var/lib/imagepod-agent:rw');
      expect(agent.pid).toBe('host');
      expect(agent.restart).toBe('unless-stopped');
      expect(agent.stop_grace_period).toBe('90s');
      expect(agent.depends_on).toEqual({ api: { condition: 'service_healthy' } });
      expect(agent.healthcheck.test).toEqual(['CMD', 'node', 'scripts/healthcheck.mjs', 'agent']);
      expect(agent.environment).toMatchObject({ IMAGEPOD_API_URL: 'http://api:8000', IMAGEPOD_NODE_NAME: 'gpu-box-1' });
      expect(agent.environment.IMAGEPOD_REGISTRATION_TOKEN).toBe(services.api.environment.IMAGEPOD_REGISTRATION_TOKEN);
      expect(agent.environment.IMAGEPOD_JWT_SECRET).toBeUndefined();
    });
  });

  it('with the Redis passwords left blank (an .env from before them), Redis asks for none and the agent sends none', async () => {
    const env = readFileSync(join(dir, '.env.example'), 'utf8')
      .replace(/^IMAGEPOD_JWT_SECRET=.*$/m, `IMAGEPOD_JWT_SECRET=${'a'.repeat(64)}`)
      .replace(/^IMAGEPOD_REGISTRATION_TOKEN=.*$/m, `IMAGEPOD_REGISTRATION_TOKEN=${'b'.repeat(48)}`);
    writeFileSync(join(dir, '.env'), env);
    const r = await composeConfig();
    expect(r.code).toBe(0);
    const services = parse(r.stdout).services;
    expect(await redisServerArgs(services.redis)).toEqual(REDIS_BASE_ARGS);
    // Blank is unset to the agent's configuration.
    expect(services.agent.environment.IMAGEPOD_REDIS_USERNAME).toBe('');
    expect(services.agent.environment.IMAGEPOD_REDIS_PASSWORD).toBe('');
  });

  it('.env stays out of git and out of the image build context', () => {
    expect(readFileSync(join(ROOT, '.gitignore'), 'utf8').split('\n')).toContain('.env');
    const dockerignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');
    // An allow-list: everything is out unless named, and .env is not named.
    expect(dockerignore).toContain('*');
    expect(dockerignore.filter((l) => l.startsWith('!') && l.includes('env'))).toEqual([]);
  });
});
