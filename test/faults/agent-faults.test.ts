import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { Keys } from '../../src/redis/keys.js';
import type { LedgerEntry } from '../../src/services/accounting.js';
import type { JobEvent } from '../../src/services/job-events.js';
import { type AgentProcess, spawnAgent, startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';
import { OwnDockerd } from '../support/own-dockerd.js';

/**
 * Agents killed, frozen and left without their Docker engine while they run jobs, against a
 * real API and Redis: every job ends exactly once as its user sees it (one final status and
 * event, at most one ledger entry of its own, nothing left running or held), and a frozen agent
 * that lost its job stops it and says nothing over its new owner. Figures are printed and saved
 * in test/artifacts/faults-agents.json.
 */
const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
const ARTIFACTS = join(import.meta.dirname, '../artifacts');
let t: TestApi;
let keys: Keys;
/** Final events per job, from a subscription to the API's event feed opened before any job. */
const finals = new Map<string, number>();
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  t = await startTestApi('agent-faults', {
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200',
    IMAGEPOD_HEARTBEAT_TTL_MS: '1000',
    IMAGEPOD_REAPER_INTERVAL_MS: '1000',
  });
  keys = new Keys(t.prefix);
  await t.api.context.events.start();
  t.api.context.events.subscribe((e: JobEvent) => {
    if (e.final) finals.set(e.job_id, (finals.get(e.job_id) ?? 0) + 1);
  });
  // Budget holds are made only for a user with a budget: with one, "nothing left held" means something.
  await t.req('PUT', '/users/alice/limits', { token: t.tokens.admin, body: { money_budget: 100_000 } });
});
afterAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(join(ARTIFACTS, 'faults-agents.json'), `${JSON.stringify(figures, null, 2)}\n`);
  await t?.close();
});

const jobs = () => jobsOf(t);
const view = (id: string) => jobs().view(id);
const online = (name: string) =>
  waitFor(
    `${name} online`,
    async () => {
      const nodes = (await t.req('GET', '/nodes/?status=online&limit=500', { token: t.tokens.admin })).body.items;
      return nodes.find((n: { node_name: string }) => n.node_name === name)?.node_id as string | undefined;
    },
    30_000,
  );

async function ledger(): Promise<Map<string, LedgerEntry>> {
  const raw = await t.redis.hgetall(keys.ledger);
  return new Map(Object.entries(raw).map(([k, v]) => [k, JSON.parse(v) as LedgerEntry]));
}

/** A deterministic pseudo-random sequence, so a failing run can be told apart from bad luck. */
function rng(seed: number) {
  let s = seed;
  return () => {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

describe('agents SIGKILLed at random moments', () => {
  const JOBS = 200;
  const AGENTS = 4;
  const SUBMIT_MS = 12_000;
  const CHAOS_MS = 20_000;
  const dir = mkdtempSync(join(tmpdir(), 'imagepod-chaos-'));
  const executions = join(dir, 'executions');
  const failedOnce = join(dir, 'failed-once');
  const env = {
    IMAGEPOD_MAX_CONCURRENT_JOBS: '8',
    // Most jobs outlive a dead agent; one whose agent dies twice fails as stalled (BullMQ's verdict).
    IMAGEPOD_MAX_STALLED_COUNT: '1',
    IMAGEPOD_PRICE_PER_CPU_CORE_HOUR: '1',
    IMAGEPOD_LOG_LEVEL: 'warn',
  };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(`${JOBS} jobs, ${AGENTS} agents, one killed every 1-3 s: every job ends once, none lost, none charged twice`, async () => {
    const random = rng(7);
    const live: AgentProcess[] = [];
    const all: AgentProcess[] = [];
    const launch = (reuse?: AgentProcess) => {
      const a = spawnAgent(
        t,
        reuse
          ? {
              ...env,
              IMAGEPOD_AGENT_STATE_DIR: reuse.env.IMAGEPOD_AGENT_STATE_DIR ?? '',
              IMAGEPOD_NODE_NAME: reuse.env.IMAGEPOD_NODE_NAME ?? '',
            }
          : env,
      );
      live.push(a);
      all.push(a);
      return a;
    };
    for (let i = 0; i < AGENTS; i++) launch();
    await Promise.all(live.map((a) => online(a.env.IMAGEPOD_NODE_NAME ?? '')));

    // Submissions, spread over SUBMIT_MS in batches; every 20th job fails its first run and has retries.
    const ids: string[] = [];
    const retrying = new Set<string>();
    const submitting = (async () => {
      const batches = 20;
      for (let b = 0; b < batches; b++) {
        const specs = Array.from({ length: JOBS / batches }, (_, i) => {
          const n = b * (JOBS / batches) + i;
          const retry = n % 20 === 19;
          const run = retry
            ? 'if grep -qx "$IMAGEPOD_JOB_ID" "$FAILED_ONCE" 2>/dev/null; then echo done; else echo "$IMAGEPOD_JOB_ID" >> "$FAILED_ONCE"; exit 3; fi'
            : 'echo done';
          return {
            job_name: `chaos-${n}${retry ? '-retry' : ''}`,
            docker_image: 'busybox',
            command: ['sh', '-c', `echo "$IMAGEPOD_JOB_ID" >> "$EXECUTIONS"; sleep "$S"; ${run}`],
            env: { EXECUTIONS: executions, FAILED_ONCE: failedOnce, S: (0.2 + 1.8 * random()).toFixed(2) },
            cpu_cores_required: 0.5,
            memory_required: 16,
            timeout_seconds: 120,
            max_retries: retry ? 2 : 0,
          };
        });
        const r = await t.req('POST', '/jobs/batch', { token: t.tokens.alice, body: { jobs: specs } });
        if (r.status !== 201) throw new Error(`batch: ${r.status} ${r.text}`);
        for (const [i, j] of (r.body.items as { id: string }[]).entries()) {
          ids.push(j.id);
          if (specs[i]?.max_retries) retrying.add(j.id);
        }
        await sleep(SUBMIT_MS / batches);
      }
    })();

    // The chaos: SIGKILL a random agent every 1-3 s, then start a replacement, half the time on the
    // same node (its state dir: a restarted agent) and half the time a new node.
    let kills = 0;
    let sameNode = 0;
    const chaosUntil = Date.now() + CHAOS_MS;
    while (Date.now() < chaosUntil) {
      await sleep(1000 + 2000 * random());
      const victim = live.splice(Math.floor(random() * live.length), 1)[0];
      if (victim === undefined) continue;
      await victim.kill('SIGKILL');
      kills++;
      const reuse = random() < 0.5;
      if (reuse) sameNode++;
      launch(reuse ? victim : undefined);
    }
    await submitting;

    // Let the survivors finish: every job must reach a final status (its final event says so).
    await waitFor('every job final', async () => ids.every((id) => finals.has(id)), 90_000).catch(() => undefined);
    // A moment for any late second report or reap to show, if there were one.
    await sleep(2000);
    const views = await Promise.all(ids.map(view));
    await Promise.all(live.map((a) => a.kill('SIGTERM')));

    const entries = await ledger();
    const runs = new Map<string, number>();
    for (const id of readFileSync(executions, 'utf8').split('\n').filter(Boolean)) runs.set(id, (runs.get(id) ?? 0) + 1);
    const byStatus: Record<string, number> = {};
    for (const v of views)
      byStatus[`${v.status}${v.status_reason ? `/${v.status_reason}` : ''}`] =
        (byStatus[`${v.status}${v.status_reason ? `/${v.status_reason}` : ''}`] ?? 0) + 1;
    const lost = views.filter((v) => !FINAL.has(v.status)).map((v) => v.id);
    const duplicateFinals = ids.filter((id) => (finals.get(id) ?? 0) > 1);
    const missingFinalEvents = ids.filter((id) => (finals.get(id) ?? 0) === 0);
    // A job's own entry settles its last attempt; attempts before it (retries) are `<id>:<n>`.
    const succeededUnbilled = views.filter((v) => v.status === 'succeeded' && !entries.has(v.id)).map((v) => v.id);
    const spend = await t.redis.hget(keys.userSpend('alice'), 'm:total');
    const ledgerTotal = [...entries.values()].reduce((a, e) => a + e.cost, 0);
    // The ledger is a hash keyed by the entry's id, so a second charge can only show as spend that
    // does not match the entries, or a job whose shown cost is not what its entries add up to.
    const costMismatch = views.filter((v) => {
      const own = [...entries.entries()].filter(([k]) => k === v.id || k.startsWith(`${v.id}:`));
      const sum = own.reduce((a, [, e]) => a + e.cost, 0);
      return Math.abs((v.cost ?? 0) - sum) > 1e-6;
    });
    // Executed more often than planned (a retrying job runs twice by design).
    const rerun = ids.filter((id) => (runs.get(id) ?? 0) > (retrying.has(id) ? 2 : 1));
    const limits = (await t.req('GET', '/users/alice/limits', { token: t.tokens.alice })).body;
    const reaped = (await Promise.all(ids.map((id) => t.redis.hget(keys.jobRecord('cpu', id), 'reaped')))).filter(Boolean).length;

    const summary = {
      fault: 'agents SIGKILLed at random moments (every 1-3 s) while running jobs, replaced at once',
      faults_injected: kills,
      replacements_on_the_same_node: sameNode,
      agents_started: all.length,
      jobs: ids.length,
      jobs_lost: lost.length,
      duplicate_final_states: duplicateFinals.length,
      jobs_without_a_final_event: missingFinalEvents.length,
      duplicate_charges: costMismatch.length + (Math.abs(Number(spend ?? 0) - ledgerTotal) > 1e-6 ? 1 : 0),
      succeeded_without_ledger_entry: succeededUnbilled.length,
      jobs_executed_more_than_once: rerun.length,
      executions: [...runs.values()].reduce((a, b) => a + b, 0),
      ended_by_the_reaper: reaped,
      outcomes: byStatus,
      running_jobs_left: limits.running_jobs,
      held_money_left: limits.held_money,
    };
    figures.sigkill = summary;
    console.log(`faults/agents sigkill: ${JSON.stringify(summary)}`);

    expect(lost).toEqual([]);
    expect(duplicateFinals).toEqual([]);
    expect(missingFinalEvents).toEqual([]);
    expect(costMismatch.map((v) => v.id)).toEqual([]);
    expect(Number(spend ?? 0)).toBeCloseTo(ledgerTotal, 6);
    expect(succeededUnbilled).toEqual([]);
    expect(limits).toMatchObject({ running_jobs: 0, held_money: 0 });
    expect(kills).toBeGreaterThanOrEqual(5);
    // Most jobs survive their agents' deaths (at-least-once: some ran twice).
    expect(byStatus.succeeded ?? 0).toBeGreaterThan(JOBS * 0.8);
  }, 180_000);
});

describe('an agent frozen (SIGSTOP) past its lock', () => {
  it('loses its job to another agent; resumed, it stops its process and reports nothing over the new owner', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imagepod-freeze-'));
    const marks = join(dir, 'marks');
    const frozen = spawnAgent(t, { IMAGEPOD_NODE_NAME: 'frozen', IMAGEPOD_LOG_LEVEL: 'info' });
    const frozenNode = await online('frozen');
    // Each execution says where it runs (its HOME is under its agent's state dir) and its pid.
    const id = await jobs().submit({
      docker_image: 'busybox',
      command: [
        'sh',
        '-c',
        'echo "start $HOME $$" >> "$MARKS"; sleep 15; echo "{\\"home\\": \\"$HOME\\"}" > "$IMAGEPOD_OUTPUT_DIR/result.json"; echo "done $HOME" >> "$MARKS"',
      ],
      env: { MARKS: marks },
      cpu_cores_required: 0.5,
      memory_required: 16,
    });
    expect((await jobs().status(id, 'running', 30_000)).node_id).toBe(frozenNode);
    await waitFor('the first execution started', async () => existsSync(marks));
    const [, frozenHome, frozenPid] = /^start (\S+) (\d+)$/m.exec(readFileSync(marks, 'utf8')) ?? [];
    expect(frozenHome).toContain(frozen.env.IMAGEPOD_AGENT_STATE_DIR);

    frozen.child.kill('SIGSTOP');
    // Another agent: the frozen one's lock (2 s) lapses, the stalled check (1 s) hands the job on.
    const taker: Agent = await startAgent(t, { IMAGEPOD_NODE_NAME: 'taker' });
    try {
      const taken = await waitFor(
        'the job taken over',
        async () => {
          const v = await view(id);
          return v.status === 'running' && v.node_id === taker.identity.node_id ? v : undefined;
        },
        20_000,
      );
      expect(taken.attempts).toBe(2);
      frozen.child.kill('SIGCONT');
      // Resumed, it finds its lock gone and stops its own execution long before that would end.
      await waitFor('the frozen agent’s execution stopped', async () => !alive(Number(frozenPid)), 5_000);
      expect(frozen.output()).toContain('lost the lock on a running job');
      expect(frozen.output()).not.toContain('"msg":"job ended"');

      const done = await jobs().status(id, 'succeeded', 30_000);
      expect(done.node_id).toBe(taker.identity.node_id);
      expect(done.exit_code).toBe(0);
      // The result is the new owner's, and the frozen execution never finished.
      expect(done.result.data.home).not.toContain(frozen.env.IMAGEPOD_AGENT_STATE_DIR);
      const lines = readFileSync(marks, 'utf8').split('\n').filter(Boolean);
      expect(lines.filter((l) => l.startsWith('done '))).toEqual([`done ${done.result.data.home}`]);
      await sleep(1500);
      expect(finals.get(id)).toBe(1);
      const own = (await ledger()).get(id);
      expect(own?.node_id).toBe(taker.identity.node_id);
      expect((await view(id)).status).toBe('succeeded');
      figures.sigstop = {
        fault: 'agent SIGSTOPped past its lock duration, then SIGCONTed',
        faults_injected: 1,
        taken_over_by_another_agent: true,
        frozen_execution_stopped_on_resume: true,
        // Had it reported its end, it would have logged it.
        reports_over_the_new_owner: frozen.output().includes('"msg":"job ended"') ? 1 : 0,
        final_events: finals.get(id),
      };
      console.log(`faults/agents sigstop: ${JSON.stringify(figures.sigstop)}`);
    } finally {
      await taker.stop(0);
      await frozen.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

describe('the Docker engine restarted while jobs run', () => {
  let engine: OwnDockerd;
  let agent: Agent;
  beforeAll(async () => {
    engine = await OwnDockerd.start();
    agent = await startAgent(t, {
      IMAGEPOD_NODE_NAME: 'docker-restart',
      IMAGEPOD_EXECUTOR: 'docker',
      IMAGEPOD_DOCKER_HOST: engine.host,
      IMAGEPOD_DOCKER_NETWORK: 'none',
      IMAGEPOD_PULL_POLICY: 'if-not-present',
      IMAGEPOD_MAX_CONCURRENT_JOBS: '4',
    });
  }, 120_000);
  afterAll(async () => {
    await agent?.stop(0);
    await engine?.stop();
  });

  it('running jobs end with a reason naming the engine (a retry recovers), the agent reconnects and runs new jobs', async () => {
    const node = async () => (await t.req('GET', `/nodes/${agent.identity.node_id}`, { token: t.tokens.admin })).body;
    // The shell exits at once on the engine's SIGTERM, as most programs do.
    const job = (name: string, extra: Record<string, unknown> = {}) =>
      jobs().submit({
        job_name: name,
        docker_image: 'imagepod-test/busybox:1',
        command: ['sh', '-c', 'trap "exit 143" TERM; echo up; sleep 6 & wait'],
        cpu_cores_required: 0.5,
        memory_required: 32,
        ...extra,
      });
    const once = await job('no-retries');
    const retried = await job('one-retry', { max_retries: 1 });
    await jobs().status(once, 'running', 60_000);
    await jobs().status(retried, 'running', 60_000);

    await engine.down();
    // While it is away the node says why it takes nothing, and a job submitted now waits.
    const sick = await waitFor('node unhealthy', async () => {
      const n = await node();
      return n.status === 'unhealthy' ? n : undefined;
    });
    expect(sick.health_reasons.join(' ')).toContain('Docker engine unreachable');
    const during = await job('submitted-while-away');
    const failed = await jobs().status(once, 'failed', 20_000);
    expect(failed.status_reason).toBe('engine_stopped');
    expect(failed.error_message).toMatch(/Docker engine/);
    const requeued = await view(retried);
    expect(requeued).toMatchObject({ status: 'queued' });
    expect((await view(during)).status).toBe('queued');

    await engine.up();
    await waitFor('node healthy again', async () => (await node()).status === 'online', 30_000);
    // The retry runs on the engine that came back, and so do the jobs that waited and new ones.
    const after = await job('submitted-after');
    const ended = await Promise.all([retried, during, after].map((id) => jobs().status(id, 'succeeded', 60_000)));
    expect(ended[0]?.attempts).toBeGreaterThanOrEqual(2);
    for (const id of [once, retried, during, after]) expect(finals.get(id)).toBe(1);
    // Nothing of the killed containers is left behind.
    await waitFor(
      'leftover containers removed',
      async () => {
        const { stdout } = await promisify(execFile)('docker', ['-H', engine.host, 'ps', '-aq']);
        return stdout.trim() === '';
      },
      15_000,
    );
    figures.docker_restart = {
      fault: 'Docker engine stopped (SIGTERM: it stops its containers) and started again under a running agent',
      faults_injected: 1,
      running_jobs: 2,
      failed_with_engine_reason: failed.status === 'failed' && failed.status_reason === 'engine_stopped' ? 1 : 0,
      recovered_by_retry: ended[0]?.status === 'succeeded' ? 1 : 0,
      jobs_run_after_the_engine_came_back: 3,
      jobs_stuck: 0,
      error_message: failed.error_message,
    };
    console.log(`faults/agents docker-restart: ${JSON.stringify(figures.docker_restart)}`);
  }, 150_000);

  it('an engine that crashed (SIGKILL) and came back: a job whose container outlived it ends as it ran, once', async () => {
    const id = await jobs().submit({
      docker_image: 'imagepod-test/busybox:1',
      command: ['sh', '-c', 'echo up; sleep 6; echo "{\\"ok\\": true}" > "$IMAGEPOD_OUTPUT_DIR/result.json"'],
      cpu_cores_required: 0.5,
      memory_required: 32,
    });
    await jobs().status(id, 'running', 60_000);
    await engine.crash();
    await sleep(1000);
    await engine.up();
    const v = await jobs().finished(id, 60_000);
    // The container runs on without the engine (its shim lives); the agent waits for the engine and
    // reads how it ended. Had the engine killed it, the job would fail naming the engine.
    if (v.status === 'succeeded') expect(v).toMatchObject({ exit_code: 0, result: { data: { ok: true } } });
    else expect(v).toMatchObject({ status: 'failed', status_reason: 'engine_stopped' });
    await sleep(500);
    expect(finals.get(id)).toBe(1);
    figures.docker_crash = {
      fault: 'Docker engine killed (SIGKILL) and started again under a running job',
      faults_injected: 1,
      outcome: `${v.status}${v.status_reason ? `/${v.status_reason}` : ''}`,
      final_events: finals.get(id),
    };
    console.log(`faults/agents docker-crash: ${JSON.stringify(figures.docker_crash)}`);
  }, 90_000);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
