import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * An idle agent does not poll Redis: it blocks on the queues' event streams. Counted with
 * MONITOR on a Redis of the test's own, attributing each command to its client.
 */
let redis: OwnRedis;
let t: TestApi;
let agent: Agent;

beforeAll(async () => {
  redis = await OwnRedis.start();
  t = await startTestApi('idle', { IMAGEPOD_REDIS_URL: redis.url });
  agent = await startAgent(t, { IMAGEPOD_REDIS_URL: redis.url, IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090' });
});
afterAll(async () => {
  await agent.stop(0);
  await t.api.close();
  t.redis.disconnect();
  await redis.stop();
});

/** Commands per second sent by clients whose name does not start with imagepod-api. */
export async function agentCommandRate(url: string, seconds: number): Promise<{ perSecond: number; commands: Map<string, number> }> {
  const admin = new Redis(url);
  const clients = String(await admin.client('LIST'));
  const apiAddrs = new Set<string>();
  for (const line of clients.split('\n')) {
    const addr = /addr=(\S+)/.exec(line)?.[1];
    const name = /name=(\S*)/.exec(line)?.[1] ?? '';
    if (addr && name.startsWith('imagepod-api')) apiAddrs.add(addr);
  }
  const monitor = await admin.monitor();
  const commands = new Map<string, number>();
  let count = 0;
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    // Commands a script runs show with source "lua": count the script call, not its insides.
    if (source.includes('lua')) return;
    const addr = source.split(' ').pop() ?? '';
    if (apiAddrs.has(addr) || args[0]?.toLowerCase() === 'monitor' || args[0]?.toLowerCase() === 'client') return;
    count++;
    const cmd = (args[0] ?? '').toLowerCase();
    commands.set(cmd, (commands.get(cmd) ?? 0) + 1);
  });
  await sleep(seconds * 1000);
  monitor.disconnect();
  admin.disconnect();
  return { perSecond: count / seconds, commands };
}

describe('an idle agent', () => {
  it('sends Redis a handful of commands per second (test intervals of 1 s), not a polling stream', async () => {
    await sleep(1500);
    const { perSecond, commands } = await agentCommandRate(redis.url, 4);
    // With the test's 1 s rescan and stalled-check intervals; at the default 30 s it is well under 1.
    expect(perSecond, JSON.stringify([...commands])).toBeLessThan(15);
    expect(perSecond).toBeGreaterThan(0);
  }, 30_000);
});
