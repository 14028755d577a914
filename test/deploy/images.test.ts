import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mintToken } from '../../src/cli/mint-token.js';
import { waitFor } from '../support/agent.js';
import { TEST_IMAGE, testDockerHost } from '../support/docker.js';
import { call } from '../support/http.js';
import { ensureCiNodeImage } from '../support/node-image.js';
import { deletePrefix, REDIS_URL, testRedis, uniquePrefix } from '../support/redis.js';

/**
 * The real Dockerfile, built by the test Docker engine from a stand-in Node base image (the official
 * one cannot be pulled here; see test/support/node-image.ts), with `--network host` so `npm ci`
 * inside the build reaches the npm registry. Then the API image runs against this machine's Redis,
 * and the agent image, given the engine's socket, registers with it and runs a job in a container.
 */
const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const API_IMAGE = 'imagepod-ci/api:test';
const AGENT_IMAGE = 'imagepod-ci/agent:test';
const suffix = randomBytes(3).toString('hex');
const API_CONTAINER = `imagepod-images-api-${suffix}`;
const AGENT_CONTAINER = `imagepod-images-agent-${suffix}`;
const BUILD_MS = 15 * 60_000;

let host: string;
const prefix = uniquePrefix('images');
const secret = randomBytes(32).toString('hex');
const registrationToken = `reg-${randomBytes(16).toString('hex')}`;
const redis = testRedis();

async function docker(args: string[], timeout = 60_000): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run('docker', ['-H', host, ...args], {
      timeout,
      maxBuffer: 64 << 20,
      env: { ...process.env, DOCKER_BUILDKIT: '0' },
    });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number | string };
    return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: typeof e.code === 'number' ? e.code : -1 };
  }
}

async function build(tag: string, target: string | null, baseImage: string): Promise<void> {
  const args = ['build', '--network', 'host', '--build-arg', `NODE_IMAGE=${baseImage}`, '--label', 'imagepod-ci=images-test', '-t', tag];
  if (target !== null) args.push('--target', target);
  const r = await docker([...args, ROOT], BUILD_MS);
  if (r.code !== 0) throw new Error(`docker build ${tag} failed:\n${(r.stdout + r.stderr).slice(-4000)}`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

beforeAll(async () => {
  host = testDockerHost();
  const base = await ensureCiNodeImage(host);
  // The build and deps stages are tagged too, so that what they hold (npm ci's layers) stays cached
  // for the next run while the untagged leftovers of earlier runs are pruned below.
  await build('imagepod-ci/build-stage:test', 'build', base);
  await build('imagepod-ci/deps-stage:test', 'deps', base);
  await build(API_IMAGE, null, base);
  await build(AGENT_IMAGE, 'agent', base);
}, 2 * BUILD_MS);

afterAll(async () => {
  if (host) {
    await docker(['rm', '-f', API_CONTAINER, AGENT_CONTAINER]);
    // vfs keeps a full copy of every layer: earlier runs' images, untagged now, would fill the disk.
    await docker(['image', 'prune', '-f'], 5 * 60_000);
  }
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

describe('the images built from the Dockerfile', () => {
  let url: string;

  beforeAll(async () => {
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const env = {
      IMAGEPOD_REDIS_URL: REDIS_URL,
      IMAGEPOD_KEY_PREFIX: prefix,
      IMAGEPOD_PORT: String(port),
      IMAGEPOD_JWT_SECRET: secret,
      IMAGEPOD_REGISTRATION_TOKEN: registrationToken,
      IMAGEPOD_HEARTBEAT_INTERVAL_MS: '500',
    };
    const r = await docker([
      'run',
      '-d',
      '--name',
      API_CONTAINER,
      '--network',
      'host',
      ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
      API_IMAGE,
    ]);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(
      'the API in its container to be ready',
      async () => ((await fetch(`${url}/readyz`).catch(() => null))?.ok ? true : undefined),
      30_000,
    );
  });

  it('the API image is ready against the host Redis and serves the API and the built dashboard', async () => {
    expect((await call(url, 'GET', '/readyz')).body).toEqual({ status: 'ready', redis: 'ok' });
    const page = await call(url, 'GET', '/', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    expect(page.text).toContain('<!doctype html>');
    const nodes = await call(url, 'GET', '/gpu-workers/nodes/', { token: mintToken(secret, 'root', 'admin', '1h') });
    expect(nodes.status).toBe(200);
  });

  it('the API image runs as the unprivileged user 1000, with production dependencies only, and its healthcheck passes', async () => {
    const inspect = JSON.parse((await docker(['inspect', API_CONTAINER])).stdout)[0];
    expect(inspect.Config.User).toBe('1000:1000');
    expect(inspect.Config.Healthcheck.Test).toEqual(['CMD', 'node', 'scripts/healthcheck.mjs', 'api']);
    expect(Object.keys(inspect.Config.ExposedPorts)).toEqual(['8000/tcp']);
    expect((await docker(['exec', API_CONTAINER, 'id', '-u'])).stdout.trim()).toBe('1000');
    const health = await docker(['exec', API_CONTAINER, 'node', 'scripts/healthcheck.mjs', 'api']);
    expect(health).toMatchObject({ code: 0, stdout: '/readyz: 200\n' });
    // Development tools stay in the build stage; the sources too.
    const devTools = ['tsx', 'typescript', 'vitest', 'vite', '@biomejs/biome'];
    const present = await docker([
      'exec',
      API_CONTAINER,
      'sh',
      '-c',
      `cd /app; for p in bullmq ioredis express ${devTools.join(' ')}; do [ -f node_modules/$p/package.json ] && echo $p; done; ls`,
    ]);
    expect(present.stdout.trim().split('\n').sort()).toEqual([
      'bin',
      'bullmq',
      'dist',
      'express',
      'ioredis',
      'node_modules',
      'package.json',
      'scripts',
    ]);
    // The CLI in the image runs from dist/, without tsx.
    const cli = await docker(['exec', API_CONTAINER, 'node', 'bin/imagepod.mjs', '--help']);
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain('Usage: imagepod');
  });

  describe('the agent image', () => {
    it('refuses to start without its configuration, naming what is missing (exit 2)', async () => {
      const r = await docker(['run', '--rm', '--network', 'none', AGENT_IMAGE]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('IMAGEPOD_API_URL');
    });

    it("runs as root (for the Docker socket), registers through the engine's socket and runs a job in a container there", async () => {
      const inspect = JSON.parse((await docker(['image', 'inspect', AGENT_IMAGE])).stdout)[0];
      expect(inspect.Config.User).toBe('0:0');
      expect(inspect.Config.Env).toContain('IMAGEPOD_AGENT_STATE_DIR=/var/lib/imagepod-agent');
      expect(Object.keys(inspect.Config.Volumes)).toEqual(['/var/lib/imagepod-agent']);
      if (!host.startsWith('unix://')) throw new Error(`the agent container needs the engine's socket; ${host} is not one`);
      const env = {
        IMAGEPOD_API_URL: url,
        IMAGEPOD_REDIS_URL: REDIS_URL,
        IMAGEPOD_REGISTRATION_TOKEN: registrationToken,
        IMAGEPOD_NODE_NAME: `image-agent-${suffix}`,
        IMAGEPOD_EXECUTOR: 'docker',
        IMAGEPOD_DOCKER_NETWORK: 'none',
        IMAGEPOD_PULL_POLICY: 'if-not-present',
        IMAGEPOD_AGENT_METRICS_PORT: String(await freePort()),
      };
      const r = await docker([
        'run',
        '-d',
        '--name',
        AGENT_CONTAINER,
        '--network',
        'host',
        '-v',
        `${host.slice('unix://'.length)}:/var/run/docker.sock`,
        ...Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
        AGENT_IMAGE,
      ]);
      expect(r.code, r.stderr).toBe(0);
      const admin = mintToken(secret, 'root', 'admin', '1h');
      const node = await waitFor(
        'the agent in its container to come online',
        async () => {
          const list = await call(url, 'GET', '/gpu-workers/nodes/?status=online', { token: admin });
          return list.body.items?.find((n: { node_name: string }) => n.node_name === env.IMAGEPOD_NODE_NAME);
        },
        30_000,
      );
      expect(node).toMatchObject({ health_status: 'healthy', health_reasons: [] });
      expect((await docker(['exec', AGENT_CONTAINER, 'node', 'scripts/healthcheck.mjs', 'agent'])).code).toBe(0);

      const alice = mintToken(secret, 'alice', 'user', '1h');
      const submitted = await call(url, 'POST', '/gpu-workers/jobs/', {
        token: alice,
        body: { docker_image: TEST_IMAGE, memory_required: 32, command: ['sh', '-c', 'echo hello from the agent image'] },
      });
      expect(submitted.status, submitted.text).toBe(201);
      const done = await waitFor(
        'the job to end',
        async () => {
          const v = (await call(url, 'GET', `/gpu-workers/jobs/${submitted.body.id}`, { token: admin })).body;
          return ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(v.status) ? v : undefined;
        },
        60_000,
      );
      expect(done).toMatchObject({ status: 'succeeded', node_id: node.node_id });
      const logs = (await call(url, 'GET', `/gpu-workers/jobs/${submitted.body.id}/logs`, { token: admin })).body;
      expect(logs.items.map((l: { text: string }) => l.text)).toContain('hello from the agent image');
    });
  });

  it('both containers stop on SIGTERM with exit code 0', async () => {
    for (const name of [AGENT_CONTAINER, API_CONTAINER]) {
      await docker(['stop', '-t', '30', name], 60_000);
      const state = JSON.parse((await docker(['inspect', name])).stdout)[0].State;
      expect({ name, exit: state.ExitCode, oom: state.OOMKilled }).toEqual({ name, exit: 0, oom: false });
    }
  });
});
