import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { CANCEL_EVENT } from '../../src/domain/queue-events.js';

/** Queue events that can make a job claimable: one arrived, or came back to the queue. */
const WAKING_EVENTS = new Set(['added', 'waiting', 'stalled', 'removed', 'paused', 'resumed']);

export interface WakeHandlers {
  /** A job may have become claimable in this tier's queue. */
  onWake(tier: string): void;
  /** The API asked for this job to be stopped. */
  onCancel(jobId: string): void;
}

/**
 * Blocks on the tiers' BullMQ event streams (one XREAD, on its own connection) so the agent
 * hears within milliseconds that a job arrived or came back, and that one of its jobs was
 * cancelled, without polling. Idle, it costs one command per block timeout.
 */
export class WakeSource {
  private running = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly redis: Redis,
    /** tier name -> its events stream key */
    private readonly streams: ReadonlyMap<string, string>,
    private readonly handlers: WakeHandlers,
    private readonly logger: Logger,
    private readonly blockMs = 10_000,
  ) {}

  async start(): Promise<void> {
    this.running = true;
    // Start from the streams' current ends: older events are about jobs the first scan sees anyway.
    const ids = new Map<string, string>();
    for (const key of this.streams.values()) {
      const last = await this.redis.xrevrange(key, '+', '-', 'COUNT', 1);
      ids.set(key, last[0]?.[0] ?? '0-0');
    }
    this.loop = this.run(ids);
  }

  private async run(ids: Map<string, string>): Promise<void> {
    const tierOf = new Map([...this.streams].map(([tier, key]) => [key, tier]));
    let failures = 0;
    while (this.running) {
      try {
        const keys = [...ids.keys()];
        const reply = (await this.redis.xread(
          'COUNT',
          500,
          'BLOCK',
          this.blockMs,
          'STREAMS',
          ...keys,
          ...keys.map((k) => ids.get(k) ?? '$'),
        )) as [string, [string, string[]][]][] | null;
        failures = 0;
        for (const [key, entries] of reply ?? []) {
          const tier = tierOf.get(key);
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
          if (wake && tier !== undefined) this.handlers.onWake(tier);
        }
      } catch (err) {
        if (!this.running) break;
        failures++;
        if (failures === 1 || failures % 30 === 0)
          this.logger.warn({ err: (err as Error).message }, 'waiting for queue events failed; retrying');
        await sleep(Math.min(5000, 200 * failures));
        // Whatever happened meanwhile, look at the queues once Redis is back.
        for (const tier of this.streams.keys()) this.handlers.onWake(tier);
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    this.redis.disconnect();
    await this.loop?.catch(() => {});
  }
}

function fieldOf(fields: string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}
