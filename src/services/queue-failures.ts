import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { RedisClient } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';

const BLOCK_MS = 5_000;

/**
 * Tails the job queues' BullMQ event streams for `failed` events, so the reaper hears within
 * milliseconds of a job BullMQ gave up on. One blocking connection reads every stream; on a
 * Redis Cluster, which refuses one XREAD across slots, one per tier (a tier's queues share its
 * hash tag). A queue first used later is read from its next round on.
 */
export class QueueFailureFeed {
  private readonly connections: RedisClient[] = [];
  private closed = false;

  constructor(
    private readonly keys: Keys,
    private readonly tiers: readonly string[],
    /** The queues to watch, now (a tier's own and those of its GPU families). */
    private readonly queues: () => readonly string[],
    private readonly connect: () => RedisClient,
    private readonly onFailed: (queue: string, jobId: string) => void,
    private readonly logger: Logger,
    private readonly perTier: boolean,
  ) {}

  start(): void {
    const groups: ((q: string) => boolean)[] = this.perTier
      ? this.tiers.map((tier) => (q: string) => q === tier || q.startsWith(`${tier}.`))
      : [() => true];
    for (const inGroup of groups) {
      const conn = this.connect();
      this.connections.push(conn);
      void this.tail(conn, () => this.queues().filter(inGroup));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.connections) c.disconnect();
  }

  private async tail(conn: RedisClient, queues: () => readonly string[]): Promise<void> {
    // Stream key -> the last entry read (new streams start at their end: the sweep covers the past).
    const from = new Map<string, string>();
    const queueOf = new Map<string, string>();
    let failures = 0;
    while (!this.closed) {
      try {
        for (const q of queues()) {
          const key = this.keys.bullEvents(q);
          if (from.has(key)) continue;
          const last = await conn.xrevrange(key, '+', '-', 'COUNT', 1);
          from.set(key, last[0]?.[0] ?? '0-0');
          queueOf.set(key, q);
        }
        const keys = [...from.keys()];
        const reply = (await conn.xread('COUNT', 500, 'BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...keys.map((k) => from.get(k) ?? '$'))) as
          | [string, [string, string[]][]][]
          | null;
        failures = 0;
        for (const [key, entries] of reply ?? []) {
          for (const [id, kv] of entries) {
            from.set(key, id);
            const jobId = failedJobOf(kv);
            const queue = queueOf.get(key);
            if (jobId !== null && queue !== undefined) this.onFailed(queue, jobId);
          }
        }
      } catch (err) {
        if (this.closed) break;
        failures++;
        if (failures === 1 || failures % 30 === 0) {
          this.logger.warn({ err: (err as Error).message }, 'reaper: reading queue events failed; retrying');
        }
        await sleep(Math.min(5000, 200 * failures));
      }
    }
  }
}

/** The job id of a BullMQ `failed` event, else null. */
function failedJobOf(kv: readonly string[]): string | null {
  let event: string | undefined;
  let jobId: string | undefined;
  for (let i = 0; i + 1 < kv.length; i += 2) {
    if (kv[i] === 'event') event = kv[i + 1];
    else if (kv[i] === 'jobId') jobId = kv[i + 1];
  }
  return event === 'failed' && jobId ? jobId : null;
}
