import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CANCEL_EVENT } from '../../src/domain/queue-events.js';
import type { RedisClient } from '../../src/redis/connection.js';
import { groupByHashTag } from '../../src/redis/slots.js';

/** Queue events that can make a job claimable: one arrived, or came back to the queue. */
const WAKING_EVENTS = new Set(['added', 'waiting', 'stalled', 'removed', 'paused', 'resumed']);

export interface WakeHandlers {
  /** A job may have become claimable in this queue. */
  onWake(queue: string): void;
  /** The API asked for this job to be stopped. */
  onCancel(jobId: string): void;
}

/**
 * Blocks on the tiers' BullMQ event streams (XREAD, on a connection of its own) so the agent
 * hears within milliseconds that a job arrived or came back, and that one of its jobs was
 * cancelled, without polling. Idle, it costs one command per block timeout per reader. One
 * server: one reader for every stream. A Redis Cluster refuses one XREAD across slots, so there
 * it is one reader per tier (a tier's streams share its hash tag, and so its slot).
 */
export class WakeSource {
  private running = false;
  private readonly loops: Promise<void>[] = [];
  private readonly connections: RedisClient[] = [];

  constructor(
    /** A new blocking connection, one per reader. */
    private readonly connect: () => RedisClient,
    /** queue name -> its events stream key */
    private readonly streams: ReadonlyMap<string, string>,
    private readonly handlers: WakeHandlers,
    private readonly logger: Logger,
    private readonly options: { readonly perSlot: boolean; readonly blockMs?: number },
  ) {}

  async start(): Promise<void> {
    this.running = true;
    const keys = [...new Set(this.streams.values())];
    for (const group of this.options.perSlot ? groupByHashTag(keys) : [keys]) {
      const redis = this.connect();
      this.connections.push(redis);
      // Start from the streams' current ends: older events are about jobs the first scan sees anyway.
      const ids = new Map<string, string>();
      for (const key of group) {
        const last = await redis.xrevrange(key, '+', '-', 'COUNT', 1);
        ids.set(key, last[0]?.[0] ?? '0-0');
      }
      this.loops.push(this.run(redis, ids));
    }
  }

  private async run(redis: RedisClient, ids: Map<string, string>): Promise<void> {
    const nameOf = new Map([...this.streams].map(([name, key]) => [key, name]));
    let failures = 0;
    while (this.running) {
      try {
        const keys = [...ids.keys()];
        const reply = (await redis.xread(
          'COUNT',
          500,
          'BLOCK',
          this.options.blockMs ?? 10_000,
          'STREAMS',
          ...keys,
          ...keys.map((k) => ids.get(k) ?? '$'),
        )) as [string, [string, string[]][]][] | null;
        failures = 0;
        for (const [key, entries] of reply ?? []) {
          const name = nameOf.get(key);
          let wake = false;
          for (const [id, fields] of entries) {
            ids.set(key, id);
            const event = fieldOf(fields, 'event');
            if (event === CANCEL_EVENT) {
              const jobId = fieldOf(fields, 'jobId');
              if (jobId) this.handlers.onCancel(jobId);
            } else if (event !== undefined && WAKING_EVENTS.has(event)) {
              wake = true;
            }
          }
          if (wake && name !== undefined) this.handlers.onWake(name);
        }
      } catch (err) {
        if (!this.running) break;
        failures++;
        if (failures === 1 || failures % 30 === 0)
          this.logger.warn({ err: (err as Error).message }, 'waiting for queue events failed; retrying');
        await sleep(Math.min(5000, 200 * failures));
        // Whatever happened meanwhile, look at the queues once Redis is back.
        for (const key of ids.keys()) {
          const name = nameOf.get(key);
          if (name !== undefined) this.handlers.onWake(name);
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const c of this.connections) c.disconnect();
    // ioredis leaves a read queued while Redis is away pending after disconnect(): bounded wait.
    await Promise.race([Promise.all(this.loops.map((l) => l.catch(() => {}))), sleep(2000, undefined, { ref: false })]);
  }
}

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
