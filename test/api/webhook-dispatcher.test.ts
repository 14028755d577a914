import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FinishedJobHook } from '../../src/services/webhooks/delivery-queue.js';
import { WEBHOOK_GROUP, WebhookDispatcher } from '../../src/services/webhooks/dispatcher.js';
import { waitFor } from '../support/agent.js';
import { deletePrefix, testRedis, uniquePrefix } from '../support/redis.js';

/** The dispatcher against the real Redis: consumer groups, pending entries, claims. */
let redis: Redis;
let prefix: string;
const opened: Redis[] = [];

beforeAll(() => {
  redis = testRedis();
  prefix = uniquePrefix('webhook-dispatcher');
});
afterAll(async () => {
  for (const c of opened) c.disconnect();
  await deletePrefix(redis, prefix);
  redis.disconnect();
});

const event = (job: string, status: string, hook: '0' | '1', final: '0' | '1') => [
  'job',
  job,
  'user',
  'alice',
  'status',
  status,
  'prev',
  'running',
  'node',
  '',
  'at',
  String(Date.now()),
  'hook',
  hook,
  'final',
  final,
];

function dispatcher(key: string, enqueue: (hooks: readonly FinishedJobHook[]) => Promise<void>): WebhookDispatcher {
  return new WebhookDispatcher(
    () => {
      const c = testRedis();
      opened.push(c);
      return c;
    },
    [{ tier: 'gpu-8g', key }],
    'live-consumer',
    enqueue,
    pino({ level: 'silent' }),
    { blockMs: 100, claimIdleMs: 300, forgetConsumerMs: 86_400_000 },
  );
}

describe('the webhook dispatcher', () => {
  it('takes over what a dead consumer left pending, queues only final events with a webhook, and acknowledges all', async () => {
    const key = `${prefix}:{gpu-8g}:ended-with-webhook`;
    await redis.xgroup('CREATE', key, WEBHOOK_GROUP, '0', 'MKSTREAM');
    await redis.xadd(key, '*', ...event('job-a', 'succeeded', '1', '1'));
    await redis.xadd(key, '*', ...event('job-b', 'running', '1', '0'));
    await redis.xadd(key, '*', ...event('job-c', 'failed', '0', '1'));
    // A failure that goes back to the queue is not the end.
    await redis.xadd(key, '*', ...event('job-d', 'failed', '1', '0'));
    // Another API process read these and died before acknowledging them.
    await redis.xreadgroup('GROUP', WEBHOOK_GROUP, 'dead-consumer', 'COUNT', 10, 'STREAMS', key, '>');

    const queued: FinishedJobHook[] = [];
    let failOnce = true;
    const d = dispatcher(key, async (hooks) => {
      // The first enqueue fails: nothing may be acknowledged, so the entries come round again.
      if (failOnce && hooks.length > 0) {
        failOnce = false;
        throw new Error('queue unavailable');
      }
      queued.push(...hooks);
    });
    d.start();
    try {
      await waitFor('the dead consumer entries delivered', async () => queued.length >= 1);
      expect(queued).toEqual([{ job_id: 'job-a', user_id: 'alice', tier: 'gpu-8g' }]);

      await redis.xadd(key, '*', ...event('job-e', 'cancelled', '1', '1'));
      await waitFor('a new final event delivered', async () => queued.length >= 2);
      expect(queued.map((h) => h.job_id)).toEqual(['job-a', 'job-e']);
      await waitFor('nothing left pending', async () => ((await redis.xpending(key, WEBHOOK_GROUP)) as [number])[0] === 0);
      // Handled entries are deleted: the stream is never trimmed otherwise.
      await waitFor('the stream emptied', async () => (await redis.xlen(key)) === 0);
    } finally {
      await d.close();
    }
  });
});
