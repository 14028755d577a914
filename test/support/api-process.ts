import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { mintToken } from '../../src/cli/mint-token.js';
import { REDIS_URL, uniquePrefix } from './redis.js';
import { freePort } from './redis-server.js';

const ROOT = join(import.meta.dirname, '../..');

/**
 * The API as its own process (`node --import tsx src/main.ts`, as `npm start` runs it), on a port
 * that stays the same across restarts, for tests that kill it. Its log lines are kept.
 */
export class ApiProcess {
  readonly prefix: string;
  readonly secret = randomBytes(32).toString('hex');
  readonly registrationToken = `reg-${randomBytes(16).toString('hex')}`;
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();
  /** Every line every run of it wrote. */
  readonly lines: string[] = [];

  private constructor(
    name: string,
    readonly port: number,
    private readonly env: Record<string, string>,
  ) {
    this.prefix = uniquePrefix(name);
  }

  static async create(name: string, env: Record<string, string> = {}): Promise<ApiProcess> {
    return new ApiProcess(name, await freePort(), env);
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  token(userId: string, role: 'user' | 'admin' = 'user'): string {
    return mintToken(this.secret, userId, role, '1h');
  }

  /** Starts it and resolves once `/readyz` answers 200. */
  async start(): Promise<void> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        IMAGEPOD_REDIS_URL: REDIS_URL,
        IMAGEPOD_KEY_PREFIX: this.prefix,
        IMAGEPOD_JWT_SECRET: this.secret,
        IMAGEPOD_REGISTRATION_TOKEN: this.registrationToken,
        IMAGEPOD_HOST: '127.0.0.1',
        IMAGEPOD_PORT: String(this.port),
        IMAGEPOD_LOG_LEVEL: 'info',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let partial = '';
    const collect = (d: Buffer) => {
      partial += d.toString();
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      this.lines.push(...parts);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      if (child.exitCode !== null) throw new Error(`the API exited at start:\n${this.lines.slice(-20).join('\n')}`);
      try {
        if ((await fetch(`${this.url}/readyz`)).status === 200) return;
      } catch {
        /* not listening yet */
      }
      await sleep(100);
    }
    throw new Error('the API did not become ready in 30 s');
  }

  /** Sends `signal` and resolves once the process is gone. */
  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.child !== null && this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    await this.exited;
    this.child = null;
  }
}
