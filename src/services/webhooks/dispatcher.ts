import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { isFinal, parseJobStatus } from '../../domain/job-status.js';
import type { RedisClient } from '../../redis/connection.js';
import type { FinishedJobHook } from './delivery-queue.js';

export const WEBHOOK_GROUP = 'webhooks';

export interface EventStream {
  readonly tier: string;
  readonly key: string;
}

export interface DispatcherOptions {
  /** How long one blocking read waits before the loop looks around (claims, closing). */
  readonly blockMs: number;
  /** An entry another consumer read but did not acknowledge for this long is taken over. */
  readonly claimIdleMs: number;
  /** Consumers that have been idle this long with nothing pending are removed from the group. */
  readonly forgetConsumerMs: number;
}

export const DEFAULT_DISPATCHER_OPTIONS: DispatcherOptions = {
  blockMs: 5000,
  claimIdleMs: 30_000,
  forgetConsumerMs: 86_400_000,
};

type StreamEntry = [id: string, fields: string[]];

function fieldsOf(flat: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i] as string] = flat[i + 1] as string;
  return out;
}

/** The delivery an event calls for: a job with a webhook that ended for good. */
export function hookOf(tier: string, fields: Record<string, string>): FinishedJobHook | null {
  if (fields.hook !== '1' || !fields.job || !fields.user) return null;
  const status = parseJobStatus(fields.status);
  // `final` says a failure is not retried; older entries without it are judged by the status.
  const ended = fields.final === undefined ? status !== undefined && isFinal(status) : fields.final === '1';
  return ended ? { job_id: fields.job, user_id: fields.user, tier } : null;
}

/**
 * Turns the tiers' ended-with-webhook streams (written by the status scripts, see
 * includes/job-event.lua) into webhook deliveries, at least once: each API process is a consumer
 * in the group `webhooks` of every tier's stream, queues a delivery for every entry, and
 * acknowledges (and deletes) the entries only once the deliveries are queued. Entries a process read but never acknowledged (it died) are claimed by another after
 * `claimIdleMs`. A delivery's BullMQ id is the job's, so an event handled twice delivers once.
 * One blocking reader per tier, on its own connection: the tiers may sit on different shards.
 */
export class WebhookDispatcher {
  private closed = false;
  private loops: Promise<void>[] = [];
  private readonly connections: RedisClient[] = [];

  constructor(
    private readonly connect: () => RedisClient,
    private readonly streams: readonly EventStream[],
    private readonly consumer: string,
    private readonly enqueue: (hooks: readonly FinishedJobHook[]) => Promise<void>,
    private readonly logger: Logger,
    private readonly options: DispatcherOptions = DEFAULT_DISPATCHER_OPTIONS,
  ) {}

  start(): void {
    if (this.loops.length > 0) return;
    this.loops = this.streams.map((s) => {
      const conn = this.connect();
      this.connections.push(conn);
      return this.run(conn, s);
    });
  }

  private async run(redis: RedisClient, stream: EventStream): Promise<void> {
    let groupReady = false;
    let nextHousekeeping = 0;
    let lastError = '';
    while (!this.closed) {
      try {
        if (!groupReady) {
          await this.createGroup(redis, stream);
          groupReady = true;
        }
        if (Date.now() >= nextHousekeeping) {
          await this.housekeeping(redis, stream);
          nextHousekeeping = Date.now() + this.options.claimIdleMs / 2;
        }
        await this.readNew(redis, stream);
        lastError = '';
      } catch (err) {
        if (this.closed) break;
        const message = (err as Error).message;
        // A stream deleted under us loses its group: make it again.
        if (message.includes('NOGROUP')) groupReady = false;
        if (message !== lastError) {
          this.logger.warn({ err: message, tier: stream.tier }, 'webhook dispatcher: reading job events failed; retrying');
        }
        lastError = message;
        await sleep(1000);
      }
    }
  }

  private async createGroup(redis: RedisClient, s: EventStream): Promise<void> {
    try {
      // From the start of the stream, so events written before the first API ran are not missed.
      await redis.xgroup('CREATE', s.key, WEBHOOK_GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!(err as Error).message.includes('BUSYGROUP')) throw err;
    }
  }

  private async readNew(redis: RedisClient, s: EventStream): Promise<void> {
    const res = (await redis.xreadgroup(
      'GROUP',
      WEBHOOK_GROUP,
      this.consumer,
      'COUNT',
      200,
      'BLOCK',
      this.options.blockMs,
      'STREAMS',
      s.key,
      '>',
    )) as [string, StreamEntry[]][] | null;
    for (const [, entries] of res ?? []) await this.handle(redis, s, entries);
  }

  /** Queues the deliveries the entries call for, then acknowledges them all. */
  private async handle(redis: RedisClient, s: EventStream, entries: readonly StreamEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const hooks: FinishedJobHook[] = [];
    for (const [, flat] of entries) {
      const hook = hookOf(s.tier, fieldsOf(flat));
      if (hook !== null) hooks.push(hook);
    }
    await this.enqueue(hooks);
    const ids = entries.map(([id]) => id);
    await redis.xack(s.key, WEBHOOK_GROUP, ...ids);
    // The stream is untrimmed (see Keys.webhookEvents): an entry handled is an entry dropped.
    await redis.xdel(s.key, ...ids);
  }

  /** Takes over what dead consumers left pending, and forgets consumers long gone. */
  private async housekeeping(redis: RedisClient, s: EventStream): Promise<void> {
    let cursor = '0-0';
    for (let round = 0; round < 100; round++) {
      const [next, entries] = (await redis.xautoclaim(
        s.key,
        WEBHOOK_GROUP,
        this.consumer,
        this.options.claimIdleMs,
        cursor,
        'COUNT',
        200,
      )) as [string, StreamEntry[], ...unknown[]];
      // Redis 6.2 returns entries trimmed meanwhile with no fields: nothing to deliver, just acknowledge.
      await this.handle(
        redis,
        s,
        entries.filter((e) => Array.isArray(e) && typeof e[0] === 'string').map(([id, f]): StreamEntry => [id, f ?? []]),
      );
      if (next === '0-0') break;
      cursor = next;
    }
    const consumers = (await redis.xinfo('CONSUMERS', s.key, WEBHOOK_GROUP)) as unknown[][];
    for (const c of consumers) {
      const f = fieldsOf(c.map(String));
      if (f.name && f.name !== this.consumer && Number(f.pending) === 0 && Number(f.idle) > this.options.forgetConsumerMs) {
        await redis.xgroup('DELCONSUMER', s.key, WEBHOOK_GROUP, f.name);
      }
    }
  }

  /** Stops reading; entries read but not yet acknowledged are taken over by another process later. */
  async close(): Promise<void> {
    this.closed = true;
    // A blocking read ends when its connection does; but a command queued while its connection
    // waits to reconnect (Redis away, or never reached) is left pending by ioredis, so the wait
    // is bounded.
    for (const c of this.connections) c.disconnect();
    await Promise.race([Promise.allSettled(this.loops), sleep(2000, undefined, { ref: false })]);
  }
}
