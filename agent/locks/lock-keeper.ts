import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';

export interface LockKeeperOptions {
  readonly redisUrl: string;
  readonly lockDurationMs: number;
  /** Stop renewing when the main thread has not answered for this long. */
  readonly watchdogMs: number;
}

/**
 * Keeps the BullMQ locks of running jobs alive from a worker thread (renewer-thread.mjs), at a
 * third of the lock duration, and says when a lock was lost so the job can be stopped.
 *
 * A claim sets the lock for its full duration, so the thread is told about a job only after a
 * third of it: a job that ends sooner costs the thread nothing (two messages between threads
 * cost more than a short job's whole claim), and the lock is still renewed well before it lapses.
 */
export class LockKeeper {
  private readonly thread: Worker;
  private readonly pulse: NodeJS.Timeout;
  private readonly deferMs: number;
  private readonly deferred = new Map<string, NodeJS.Timeout>();
  private lostHandler: (jobId: string) => void = () => {};

  constructor(opts: LockKeeperOptions, logger: Logger) {
    this.deferMs = Math.max(100, Math.floor(opts.lockDurationMs / 3));
    this.thread = new Worker(new URL('./renewer-thread.mjs', import.meta.url), {
      workerData: {
        redisUrl: opts.redisUrl,
        lockDurationMs: opts.lockDurationMs,
        renewEveryMs: Math.max(100, Math.floor(opts.lockDurationMs / 3)),
        watchdogMs: opts.watchdogMs,
      },
    });
    this.thread.on('message', (m: { type: string; jobId?: string }) => {
      if (m.type === 'lost' && m.jobId) this.lostHandler(m.jobId);
      if (m.type === 'watchdog') logger.error('the agent main thread stopped answering; no longer renewing job locks');
    });
    this.thread.on('error', (err) => logger.error({ err: err.message }, 'lock renewal thread failed'));
    this.thread.unref();
    this.pulse = setInterval(() => this.thread.postMessage({ type: 'alive' }), 1000);
    this.pulse.unref();
  }

  onLost(handler: (jobId: string) => void): void {
    this.lostHandler = handler;
  }

  track(jobId: string, lockKey: string, stalledKey: string, token: string): void {
    const timer = setTimeout(() => {
      this.deferred.delete(jobId);
      this.thread.postMessage({ type: 'track', jobId, lockKey, stalledKey, token });
    }, this.deferMs);
    timer.unref();
    this.deferred.set(jobId, timer);
  }

  untrack(jobId: string): void {
    const timer = this.deferred.get(jobId);
    if (timer !== undefined) {
      clearTimeout(timer);
      this.deferred.delete(jobId);
      return;
    }
    this.thread.postMessage({ type: 'untrack', jobId });
  }

  async stop(): Promise<void> {
    clearInterval(this.pulse);
    for (const timer of this.deferred.values()) clearTimeout(timer);
    this.deferred.clear();
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
