import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A port nothing listens on right now. */
/**
 * SIGTERM, then waits until the process is gone; after `graceMs`, SIGKILL (or, with
 * `kill: false`, stop waiting and leave it).
 */
export async function stopProcess(pid: number, opts: { graceMs?: number; kill?: boolean } = {}): Promise<void> {
  const { graceMs = 5000, kill = true } = opts;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  for (const until = Date.now() + graceMs; Date.now() < until; ) {
    try {
      process.kill(pid, 0);
      await sleep(50);
    } catch {
      return;
    }
  }
  if (kill) process.kill(pid, 'SIGKILL');
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/**
 * A redis-server owned by one test, for tests that stop or restart Redis (the shared one on
 * 6379 is never touched). By default AOF with fsync always, so a restart keeps every
 * acknowledged write; benchmarks ask for no persistence, like the shared server.
 */
export class OwnRedis {
  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly persistence: 'always' | 'none',
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(persistence: 'always' | 'none' = 'always'): Promise<OwnRedis> {
    const dir = mkdtempSync(join(tmpdir(), 'imagepod-redis-'));
    const r = new OwnRedis(await freePort(), dir, persistence);
    await r.up();
    return r;
  }

  async up(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--daemonize',
        'yes',
        '--save',
        '',
        ...(this.persistence === 'always' ? ['--appendonly', 'yes', '--appendfsync', 'always'] : ['--appendonly', 'no']),
        '--dir',
        this.dir,
        '--pidfile',
        join(this.dir, 'redis.pid'),
        '--logfile',
        join(this.dir, 'redis.log'),
      ],
      { stdio: 'ignore' },
    );
    await new Promise((resolve, reject) => {
      child.once('exit', resolve);
      child.once('error', reject);
    });
    for (let i = 0; i < 100; i++) {
      try {
        await run('redis-cli', ['-p', String(this.port), 'ping']);
        return;
      } catch {
        await sleep(50);
      }
    }
    throw new Error(`redis-server on ${this.port} did not start`);
  }

  async down(): Promise<void> {
    await stopProcess(Number(readFileSync(join(this.dir, 'redis.pid'), 'utf8')));
  }

  /** SIGKILL: no shutdown, no last write; only what AOF had fsynced survives. Resolves once it is gone. */
  async kill(): Promise<void> {
    const pid = Number(readFileSync(join(this.dir, 'redis.pid'), 'utf8'));
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(pid, 0);
        await sleep(20);
      } catch {
        return;
      }
    }
  }

  async stop(): Promise<void> {
    await this.down().catch(() => {});
    rmSync(this.dir, { recursive: true, force: true });
  }
}
