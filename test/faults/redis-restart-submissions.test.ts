import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import { waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { CarefulClient, type Submission, tally } from '../support/careful-client.js';
import { call } from '../support/http.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * Redis (a server of this test's own, AOF with fsync always) killed with SIGKILL and started
 * again while clients submit: what was acknowledged survives, nothing is made twice, the API
 * answers 503 (never 500) while Redis is away, and it recovers by itself.
 */
const CLIENTS = 10;
const JOBS_PER_CLIENT = 12;
/** Redis is killed when this many submissions have been acknowledged, and is away this long each time. */
const KILL_AT = [15, 45, 80];
const AWAY_MS = 1200;
/** Worst case 1.0 each: the user's held budget counts the jobs. */
const JOB = { docker_image: 'busybox', command: ['echo', 'hi'], timeout_seconds: 3600, max_price_per_hour: 1 };

let redis: OwnRedis;
let t: TestApi;
let phase = 'before';
/** What the API logged that the figures count. */
const logged = { resumed: 0, unhandled: 0 };

beforeAll(async () => {
  redis = await OwnRedis.start('always');
  const logger = createLogger('info', 'imagepod-api', {
    write(line: string) {
      if (line.includes('idempotency: resuming')) logged.resumed++;
      if (line.includes('unhandled error')) logged.unhandled++;
    },
  });
  t = await startTestApi('faults-redis-restart', { IMAGEPOD_REDIS_URL: redis.url, IMAGEPOD_IDEMPOTENCY_LEASE_SECONDS: '2' }, logger);
});
afterAll(async () => {
  await t?.api.close();
  t?.redis.disconnect();
  await redis?.stop();
});

describe('Redis restarted during submissions', () => {
  it('keeps every acknowledged job, makes none twice, answers 503 (not 500) meanwhile, and recovers', async () => {
    const clients = Array.from(
      { length: CLIENTS },
      () =>
        new CarefulClient(
          () => `${t.url}/gpu-workers`,
          t.tokens.alice,
          () => phase,
        ),
    );
    const streams = clients.map(async (c, ci) => {
      for (let j = 0; j < JOBS_PER_CLIENT; j++) {
        await c.submit(`redis-restart-${ci}-${j}-${t.prefix}`, { ...JOB, job_name: `c${ci}-j${j}` });
        await sleep(5);
      }
    });

    // Redis dies mid-stream, several times; while it is away, reads are tried too.
    const ackedSubs = () => clients.flatMap((c) => c.submissions).filter((s) => s.id !== null);
    const readyWhileAway: number[] = [];
    const readsWhileAway: Record<string, number> = {};
    for (const at of KILL_AT) {
      await waitFor(`${at} submissions acknowledged`, async () => ackedSubs().length >= at, 30_000);
      const someId = ackedSubs()[0]?.id ?? '';
      phase = 'redis away';
      await redis.kill();
      const until = Date.now() + AWAY_MS;
      while (Date.now() < until) {
        readyWhileAway.push((await call(t.url, 'GET', '/readyz')).status);
        for (const path of ['/jobs/', `/jobs/${someId}`]) {
          const r = await t.req('GET', path, { token: t.tokens.alice });
          readsWhileAway[r.status] = (readsWhileAway[r.status] ?? 0) + 1;
        }
        await sleep(100);
      }
      await redis.up();
      phase = 'redis back';
      // It recovers by itself: no restart of the API.
      await waitFor('/readyz to say ready', async () => (await call(t.url, 'GET', '/readyz')).status === 200, 15_000);
    }
    await Promise.all(streams);
    phase = 'after';
    const fresh = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { ...JOB, job_name: 'after-recovery' } });
    expect(fresh.status).toBe(201);

    const subs: Submission[] = clients.flatMap((c) => c.submissions);
    const figures = tally(subs);

    // Every logical job was acknowledged in the end, and each one exists.
    expect(figures.acknowledged).toBe(CLIENTS * JOBS_PER_CLIENT);
    let lost = 0;
    for (const s of subs) {
      const r = await t.req('GET', `/jobs/${s.id}`, { token: t.tokens.alice });
      if (r.status !== 200 || r.body.job_name !== s.name) lost++;
    }
    const list = await t.req('GET', '/jobs/?limit=500', { token: t.tokens.alice });
    expect(list.status).toBe(200);
    const listed = new Map<string, number>();
    for (const j of list.body.items as { job_name: string; id: string }[]) listed.set(j.job_name, (listed.get(j.job_name) ?? 0) + 1);
    const missing = subs.filter((s) => !listed.has(s.name)).length;
    const duplicates = [...listed.values()].filter((n) => n > 1).length;
    // One budget hold per job, however often it was sent: held = jobs x worst case 1.0.
    const limits = await t.req('GET', '/users/alice/limits', { token: t.tokens.alice });

    const away = figures.byPhase['redis away'] ?? {};
    const fiveXxAway = Object.fromEntries(Object.entries(away).filter(([s]) => s.startsWith('5')));
    const all5xx = Object.fromEntries(Object.entries(figures.byStatus).filter(([s]) => s.startsWith('5')));
    const awayAnswers = subs.flatMap((s) => s.answers.filter((a) => a.phase === 'redis away'));
    const summary = {
      fault: 'redis SIGKILL + restart (AOF appendfsync always) during submissions',
      faults_injected: KILL_AT.length,
      clients: CLIENTS,
      submissions: figures.submissions,
      acknowledged: figures.acknowledged,
      attempts: figures.attempts,
      lost: lost + missing,
      duplicates,
      held_money: limits.body.held_money,
      submissions_resumed_after_a_dead_attempt: logged.resumed,
      unhandled_errors_logged: logged.unhandled,
      five_xx_while_redis_away: fiveXxAway,
      five_xx_all: all5xx,
      answers_by_phase: figures.byPhase,
      reads_while_away: readsWhileAway,
      readyz_while_away: { '503': readyWhileAway.filter((s) => s === 503).length, other: readyWhileAway.filter((s) => s !== 503).length },
    };
    console.log(`faults/redis-restart: ${JSON.stringify(summary)}`);
    mkdirSync(join(import.meta.dirname, '../artifacts'), { recursive: true });
    writeFileSync(join(import.meta.dirname, '../artifacts/faults-redis-restart.json'), `${JSON.stringify(summary, null, 2)}\n`);

    expect(lost + missing).toBe(0);
    expect(duplicates).toBe(0);
    expect(list.body.items).toHaveLength(CLIENTS * JOBS_PER_CLIENT + 1);
    expect(limits.body.held_money).toBe(CLIENTS * JOBS_PER_CLIENT + 1);
    // Never a 500: only 503s, each with Retry-After and a JSON error.
    expect(all5xx['500'] ?? 0).toBe(0);
    expect(logged.unhandled).toBe(0);
    expect(Object.keys(all5xx).filter((s) => s !== '503')).toEqual([]);
    expect(away['503'] ?? 0).toBeGreaterThan(0);
    for (const a of awayAnswers.filter((x) => x.status === 503)) {
      expect(a.retryAfter).toMatch(/^\d+$/);
      expect(a.error).toBe('unavailable');
    }
    expect(readyWhileAway.length).toBeGreaterThan(0);
    expect(readyWhileAway.every((s) => s === 503)).toBe(true);
    expect(Object.keys(readsWhileAway).filter((s) => s !== '200' && s !== '503')).toEqual([]);
  }, 90_000);
});
