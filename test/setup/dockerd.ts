import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { stopProcess } from '../support/redis-server.js';

/**
 * A real Docker engine for the tests: the one at IMAGEPOD_TEST_DOCKER_HOST if given, else a
 * dockerd started here (vfs storage, no iptables, no bridge: it leaves the host network alone),
 * with the stand-in NVIDIA hook on its PATH so GPU DeviceRequests are accepted. A busybox image
 * is imported from the local busybox binary, since no registry can be reached.
 */
const run = promisify(execFile);
const ROOT = '/tmp/imagepod-test-dockerd';
export const TEST_IMAGE = 'imagepod-test/busybox:1';

declare module 'vitest' {
  export interface ProvidedContext {
    dockerHost: string;
    dockerProblem: string;
  }
}

async function answers(host: string): Promise<boolean> {
  try {
    await run('docker', ['-H', host, 'version', '--format', '{{.Server.Version}}'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

async function importBusybox(host: string): Promise<void> {
  try {
    await run('docker', ['-H', host, 'image', 'inspect', TEST_IMAGE]);
    return;
  } catch {
    /* import it */
  }
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) throw new Error('busybox is not installed (apt-get install -y busybox-static)');
  const rootfs = join(ROOT, 'rootfs');
  rmSync(rootfs, { recursive: true, force: true });
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  mkdirSync(join(rootfs, 'tmp'), { recursive: true });
  await run('cp', [busybox, join(rootfs, 'bin/busybox')]);
  const { stdout } = await run(join(rootfs, 'bin/busybox'), ['--list']);
  for (const applet of stdout.split('\n').filter(Boolean)) {
    if (applet !== 'busybox') await run('ln', ['-sf', 'busybox', join(rootfs, 'bin', applet)]);
  }
  await run('bash', ['-c', `tar -C ${rootfs} -c . | docker -H ${host} import -c 'CMD ["/bin/sh"]' - ${TEST_IMAGE}`]);
}

/**
 * Finds or starts the test Docker engine and makes sure the test image is in it. `stop` stops
 * the engine only if this call started it.
 */
/**
 * A test engine's flags: vfs storage, and no iptables, bridge or forwarding, so the host's network
 * is left alone; its data, state and socket under `root`.
 */
export function dockerdArgs(root: string, host: string, pidfile: string): string[] {
  return [
    '--storage-driver=vfs',
    '--iptables=false',
    '--ip6tables=false',
    '--bridge=none',
    '--ip-forward=false',
    '--data-root',
    join(root, 'data'),
    '--exec-root',
    join(root, 'exec'),
    '-H',
    host,
    '--pidfile',
    pidfile,
  ];
}

export async function ensureTestDocker(): Promise<{ host: string; stop: () => Promise<void> }> {
  const given = process.env.IMAGEPOD_TEST_DOCKER_HOST;
  const host = given ?? `unix://${ROOT}/docker.sock`;
  let started: number | null = null;
  if (!(await answers(host))) {
    if (given) throw new Error(`IMAGEPOD_TEST_DOCKER_HOST=${given} does not answer`);
    const dockerd = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
    if (!dockerd) throw new Error('dockerd is not installed: apt-get install -y docker.io busybox-static (.ci/run does)');
    mkdirSync(join(ROOT, 'bin'), { recursive: true });
    await run('cp', [join(import.meta.dirname, '../fixtures/docker/nvidia-container-runtime-hook'), join(ROOT, 'bin/')]);
    const child = spawn(dockerd, dockerdArgs(ROOT, host, join(ROOT, 'dockerd.pid')), {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore'],
      env: { ...process.env, PATH: `${join(ROOT, 'bin')}:${process.env.PATH}` },
    });
    child.unref();
    for (let i = 0; i < 100 && !(await answers(host)); i++) await sleep(200);
    if (!(await answers(host))) throw new Error('dockerd started but does not answer');
    started = Number(readFileSync(join(ROOT, 'dockerd.pid'), 'utf8'));
  }
  await importBusybox(host);
  const pid = started;
  return {
    host,
    async stop() {
      if (pid === null) return;
      // Wait for it to go, so a run that follows at once does not find it half-stopped.
      await stopProcess(pid, { graceMs: 15_000, kill: false });
    },
  };
}

export default async function setup(project: TestProject) {
  try {
    const docker = await ensureTestDocker();
    project.provide('dockerHost', docker.host);
    project.provide('dockerProblem', '');
    return docker.stop;
  } catch (err) {
    project.provide('dockerHost', '');
    project.provide('dockerProblem', (err as Error).message);
    return async () => {};
  }
}
