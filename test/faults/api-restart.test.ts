import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/agent.js';
import { ApiProcess } from '../support/api-process.js';
import { CarefulClient, type Submission, tally } from '../support/careful-client.js';
import { call } from '../support/http.js';
import { deletePrefix, testRedis } from '../support/redis.js';

/**
 * The API process killed (SIGKILL twice, SIGTERM once) and started again on the same port while
 * clients submit with Idempotency-Keys and retry: no acknowledged job is lost, no key makes two
 * jobs, and a client that lost an answer gets the same job when it sends the request again.
 */
const CLIENTS = 6;
const JOBS_PER_CLIENT = 15;
/** The API is stopped, with this signal, once this many submissions have been acknowledged. */
const RESTARTS: readonly { at: number; signal: NodeJS.Signals }[] = [
  { at: 12, signal: 'SIGKILL' },
  { at: 40, signal: 'SIGTERM' },
  { at: 65, signal: 'SIGKILL' },
];
/** Worst case 1.0 each: the user's held budget counts the jobs. */
const JOB = { docker_image: 'busybox', command: ['echo', 'hi'], timeout_seconds: 3600, max_price_per_hour: 1 };

let api: ApiProcess;
let phase = 'up';

beforeAll(async () => {
  api = await ApiProcess.create('faults-api-restart', { IMAGEPOD_IDEMPOTENCY_LEASE_SECONDS: '2' });
  await api.start();
});
afterAll(async () => {
  await api?.kill('SIGKILL');
  const redis = testRedis();
  if (api) await deletePrefix(redis, api.prefix);
  redis.disconnect();
});

const base = () => `${api.url}/gpu-workers`;

/** A proxy that passes requests to the API and throws its answers away: a client's request times out. */
async function answerEater(port: number): Promise<{ server: Server; url: string }> {
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    client.pipe(upstream);
    upstream.on('data', () => {});
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return { server, url: `http://127.0.0.1:${typeof addr === 'object' && addr !== null ? addr.port : 0}/gpu-workers` };
}

async function restart(signal: NodeJS.Signals): Promise<void> {
  phase = `api stopped (${signal})`;
  await api.kill(signal);
  await sleep(200);
  await api.start();
  phase = 'up';
}

describe('the API restarted under load', () => {
  it('loses no acknowledged job and makes none twice', async () => {
    const alice = api.token('alice');
    const clients = Array.from({ length: CLIENTS }, () => new CarefulClient(base, alice, () => phase));
    const streams = clients.map(async (c, ci) => {
      for (let j = 0; j < JOBS_PER_CLIENT; j++) {
        await c.submit(`api-restart-${ci}-${j}`, { ...JOB, job_name: `c${ci}-j${j}` });
        await sleep(5);
      }
    });
    const acked = () => clients.flatMap((c) => c.submissions).filter((s) => s.id !== null).length;
    for (const r of RESTARTS) {
      await waitFor(`${r.at} submissions acknowledged`, async () => acked() >= r.at, 30_000);
      await restart(r.signal);
    }
    await Promise.all(streams);

    // A client whose request timed out (the answer never reached it), and the API restarted
    // before it retried: the retry is answered with the job the first request made.
    const send = (url: string, key: string, body: unknown, timeoutMs: number) =>
      fetch(`${url}/jobs/`, {
        method: 'POST',
        headers: { authorization: `Bearer ${alice}`, 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    const eater = await answerEater(api.port);
    const timedOutKey = randomUUID();
    const timedOutBody = { ...JOB, job_name: 'timed-out-client' };
    await expect(send(eater.url, timedOutKey, timedOutBody, 1000)).rejects.toThrow();
    eater.server.close();
    await restart('SIGKILL');
    const timedOut = new CarefulClient(base, alice, () => phase);
    const retriedTimedOut = await timedOut.submit(timedOutKey, timedOutBody);
    expect(retriedTimedOut.answers.at(-1)?.status).toBe(201);
    const replay = await send(base(), timedOutKey, timedOutBody, 5000);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(((await replay.json()) as { id: string }).id).toBe(retriedTimedOut.id);

    // A client whose request was in flight when the API was killed sends it again.
    const inFlight = new CarefulClient(base, alice, () => phase);
    const inFlightKey = randomUUID();
    const inFlightBody = { ...JOB, job_name: 'in-flight-at-kill' };
    const firstTry = send(base(), inFlightKey, inFlightBody, 5000).then(
      (r) => r.status,
      () => 'network' as const,
    );
    await sleep(3);
    await restart('SIGKILL');
    const lostAnswerFirstTry = await firstTry;
    const retriedInFlight = await inFlight.submit(inFlightKey, inFlightBody);

    const subs: Submission[] = [...clients.flatMap((c) => c.submissions), retriedTimedOut, retriedInFlight];
    const figures = tally(subs);
    let lost = 0;
    for (const s of subs) {
      const r = await call(base(), 'GET', `/jobs/${s.id}`, { token: alice });
      if (r.status !== 200 || r.body.job_name !== s.name) lost++;
    }
    const list = await call(base(), 'GET', '/jobs/?limit=500', { token: alice });
    expect(list.status).toBe(200);
    const listed = new Map<string, number>();
    for (const j of list.body.items as { job_name: string }[]) listed.set(j.job_name, (listed.get(j.job_name) ?? 0) + 1);
    const missing = subs.filter((s) => !listed.has(s.name)).length;
    const duplicates = [...listed.values()].filter((n) => n > 1).length;
    const limits = await call(base(), 'GET', '/users/alice/limits', { token: alice });
    const resumed = api.lines.filter((l) => l.includes('idempotency: resuming')).length;
    const unhandled = api.lines.filter((l) => l.includes('unhandled error')).length;
    const all5xx = Object.fromEntries(Object.entries(figures.byStatus).filter(([s]) => s.startsWith('5')));

    const summary = {
      fault: 'API process stopped under load (SIGKILL, SIGTERM) and started again on the same port',
      faults_injected: RESTARTS.length + 2,
      restarts: [...RESTARTS.map((r) => r.signal), 'SIGKILL (after a client timed out)', 'SIGKILL (a request in flight)'],
      clients: CLIENTS,
      submissions: figures.submissions,
      acknowledged: figures.acknowledged,
      attempts: figures.attempts,
      lost: lost + missing,
      duplicates,
      held_money: limits.body.held_money,
      in_flight_at_kill_first_try: lostAnswerFirstTry,
      submissions_resumed_after_a_dead_attempt: resumed,
      unhandled_errors_logged: unhandled,
      five_xx_all: all5xx,
      answers_by_phase: figures.byPhase,
    };
    console.log(`faults/api-restart: ${JSON.stringify(summary)}`);
    mkdirSync(join(import.meta.dirname, '../artifacts'), { recursive: true });
    writeFileSync(join(import.meta.dirname, '../artifacts/faults-api-restart.json'), `${JSON.stringify(summary, null, 2)}\n`);

    expect(figures.acknowledged).toBe(CLIENTS * JOBS_PER_CLIENT + 2);
    expect(lost + missing).toBe(0);
    expect(duplicates).toBe(0);
    expect(list.body.items).toHaveLength(CLIENTS * JOBS_PER_CLIENT + 2);
    // One budget hold per job, however often it was sent.
    expect(limits.body.held_money).toBe(CLIENTS * JOBS_PER_CLIENT + 2);
    expect(all5xx['500'] ?? 0).toBe(0);
    expect(unhandled).toBe(0);
  }, 120_000);
});
