import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { RedisSpec } from '../../src/redis/connection.js';

export interface LockKeeperOptions {
  /** The connection the thread opens (plain data: it crosses into the thread). */
  readonly redis: RedisSpec;
  readonly lockDurationMs: number;
  /** Stop renewing when the main thread has not answered for this long. */
  readonly watchdogMs: number;
}

/**
 * Keeps the BullMQ locks of running jobs alive from a worker thread (renewer-thread.mjs), at a
 * third of the lock duration, and says when a lock was lost so the job can be stopped.
 */
export class LockKeeper {
  private readonly thread: Worker;
  private readonly pulse: NodeJS.Timeout;
  /**
   * Jobs that ended, told to the thread with the next message rather than one each: a message
   * between threads costs more than a short job's claim. A lock left tracked a moment longer is
   * harmless: renewing a lock that is gone changes nothing.
   */
  private ended: string[] = [];
  private lostHandler: (jobId: string, token: string) => void = () => {};

  constructor(opts: LockKeeperOptions, logger: Logger) {
    this.thread = new Worker(new URL('./renewer-thread.mjs', import.meta.url), {
      workerData: {
        redis: opts.redis,
        lockDurationMs: opts.lockDurationMs,
        renewEveryMs: Math.max(100, Math.floor(opts.lockDurationMs / 3)),
        watchdogMs: opts.watchdogMs,
      },
    });
    this.thread.on('message', (m: { type: string; jobId?: string; token?: string }) => {
      if (m.type === 'lost' && m.jobId) this.lostHandler(m.jobId, m.token ?? '');
      if (m.type === 'watchdog') logger.error('the agent main thread stopped answering; no longer renewing job locks');
    });
    this.thread.on('error', (err) => logger.error({ err: err.message }, 'lock renewal thread failed'));
    this.thread.unref();
    this.pulse = setInterval(() => this.thread.postMessage({ type: 'alive', untrack: this.takeEnded() }), 1000);
    this.pulse.unref();
  }

  /** `token` names the claim whose lock was lost: a job that ended and was claimed again keeps its new one. */
  onLost(handler: (jobId: string, token: string) => void): void {
    this.lostHandler = handler;
  }

  track(jobId: string, lockKey: string, stalledKey: string, token: string): void {
    // The same job claimed again here: its earlier end must not untrack the new claim.
    this.ended = this.ended.filter((id) => id !== jobId);
    this.thread.postMessage({ type: 'track', jobId, lockKey, stalledKey, token, untrack: this.takeEnded() });
  }

  untrack(jobId: string): void {
    this.ended.push(jobId);
  }

  private takeEnded(): string[] {
    const ended = this.ended;
    this.ended = [];
    return ended;
  }

  async stop(): Promise<void> {
    clearInterval(this.pulse);
    this.thread.postMessage({ type: 'stop' });
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.thread.terminate().then(() => resolve());
      }, 2000);
      this.thread.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
