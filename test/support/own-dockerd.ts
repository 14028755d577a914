import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { dockerdArgs, TEST_IMAGE } from '../setup/dockerd.js';
import { testDockerHost } from './docker.js';
import { stopProcess } from './redis-server.js';

const run = promisify(execFile);

/**
 * A Docker engine of one test's own (its socket, data and exec dirs under a fresh /tmp dir), to
 * stop and start under running agents without disturbing the suite's shared engine. It runs
 * like the shared one (vfs, no iptables, no bridge) and gets the test image from it.
 */
export class OwnDockerd {
  private pid: number | null = null;

  private constructor(readonly root: string) {}

  get host(): string {
    return `unix://${join(this.root, 'docker.sock')}`;
  }

  static async start(): Promise<OwnDockerd> {
    const d = new OwnDockerd(mkdtempSync('/tmp/imagepod-own-dockerd-'));
    await d.up();
    // The image from the shared engine (no registry can be reached).
    await run('bash', ['-c', `docker -H ${testDockerHost()} save ${TEST_IMAGE} | docker -H ${d.host} load`]);
    return d;
  }

  async answers(): Promise<boolean> {
    try {
      await run('docker', ['-H', this.host, 'version', '--format', '{{.Server.Version}}'], { timeout: 5000 });
      return true;
    } catch {
      return false;
    }
  }

  /** Starts the engine and waits until it answers. */
  async up(): Promise<void> {
    const dockerd = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find((p) => existsSync(p));
    if (!dockerd) throw new Error('dockerd is not installed');
    const pidfile = join(this.root, 'dockerd.pid');
    rmSync(pidfile, { force: true });
    const child = spawn(dockerd, dockerdArgs(this.root, this.host, pidfile), {
      detached: true,
      stdio: ['ignore', 'ignore', openSync(join(this.root, 'dockerd.log'), 'a')],
    });
    child.unref();
    for (let i = 0; i < 150 && !(await this.answers()); i++) await sleep(200);
    if (!(await this.answers())) throw new Error(`own dockerd started but does not answer (see ${join(this.root, 'dockerd.log')})`);
    this.pid = Number(readFileSync(pidfile, 'utf8'));
  }

  /** Stops the engine as `systemctl stop docker` would (SIGTERM: it stops its containers first) and waits until it is gone. */
  async down(): Promise<void> {
    const pid = this.pid;
    if (pid === null) return;
    this.pid = null;
    await stopProcess(pid, { graceMs: 30_000, kill: false });
  }

  /**
   * Kills the engine outright (SIGKILL), with its containerd, as a crash of the service would: it
   * stops nothing first, and the containers' shims live on.
   */
  async crash(): Promise<void> {
    const pid = this.pid;
    if (pid === null) return;
    this.pid = null;
    const containerdPidFile = join(this.root, 'exec/containerd/containerd.pid');
    const containerd = existsSync(containerdPidFile) ? Number(readFileSync(containerdPidFile, 'utf8')) : 0;
    process.kill(pid, 'SIGKILL');
    if (containerd > 0) process.kill(containerd, 'SIGKILL');
    // Where nothing reaps orphans (a container's init), a dead containerd lingers as a zombie the
    // next engine would take for a live one.
    rmSync(containerdPidFile, { force: true });
    for (let i = 0; i < 100 && (await this.answers()); i++) await sleep(100);
  }

  async stop(): Promise<void> {
    await this.down();
    // The engine leaves its data root bind-mounted (and maybe a network namespace): unmount what
    // is under the root, deepest first, then remove it (vfs layers are large).
    const mounts = readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[1] ?? '')
      .filter((m) => m.startsWith(`${this.root}/`))
      .sort()
      .reverse();
    for (const m of mounts) await run('umount', ['-l', m]).catch(() => {});
    rmSync(this.root, { recursive: true, force: true });
  }
}
