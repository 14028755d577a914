import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

/** The real `imagepod` binary against a real API and, where jobs must run, a real agent (process executor). */
const ROOT = join(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/imagepod.mjs');

let t: TestApi;
let dir: string;
let configFile: string;
const agents: Agent[] = [];

beforeAll(async () => {
  t = await startTestApi('cli', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1000' });
  dir = mkdtempSync(join(tmpdir(), 'imagepod-cli-'));
  configFile = join(dir, 'conf', 'config.json');
});
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop(0)));
});
afterAll(async () => t.close());

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI as a child process (asynchronously: the API and agent live in this process). */
function imagepod(args: string[], opts: { env?: Record<string, string>; stdin?: string } = {}): Promise<Run> {
  const env: Record<string, string | undefined> = { ...process.env, IMAGEPOD_CONFIG: configFile, HOME: dir, ...opts.env };
  for (const k of ['IMAGEPOD_API_URL', 'IMAGEPOD_TOKEN'] as const) if (opts.env?.[k] === undefined) delete env[k];
  const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin.end(opts.stdin ?? '');
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** The CLI as a child process to signal: resolves `ended` when it exits. */
function imagepodChild(args: string[]) {
  const env: Record<string, string | undefined> = { ...process.env, IMAGEPOD_CONFIG: configFile, HOME: dir };
  delete env.IMAGEPOD_API_URL;
  delete env.IMAGEPOD_TOKEN;
  const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => {
    out.stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    out.stderr += d.toString();
  });
  const ended = new Promise<Run>((resolve) => child.once('close', (code) => resolve({ code, ...out })));
  return { child, out, ended };
}

/** As alice (logged in by the first test), or as someone else through the environment. */
const as = (token: string) => ({ env: { IMAGEPOD_API_URL: t.url, IMAGEPOD_TOKEN: token } });
const lines = (text: string) => text.trim().split('\n');

describe('imagepod login', () => {
  it('refuses a bad token and saves nothing', async () => {
    const r = await imagepod(['login', '--api-url', t.url, '--token', 'not-a-token']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('refused the token: the bearer token was not accepted');
    expect(() => statSync(configFile)).toThrow();
  });

  it('checks the token, then saves the URL and token readable by the owner only', async () => {
    const r = await imagepod(['login', '--api-url', `${t.url}/gpu-workers/`, '--token', t.tokens.alice]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`Logged in to ${t.url} as alice (user); saved in ${configFile}\n`);
    expect(statSync(configFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(configFile, 'utf8'))).toEqual({ api_url: t.url, token: t.tokens.alice });
    expect((await imagepod(['whoami'])).stdout).toBe(`alice (user) at ${t.url}\n`);
  });

  it('takes the token from stdin, and the environment overrides the file', async () => {
    const other = join(dir, 'other.json');
    const r = await imagepod(['login', '--api-url', t.url, '--json'], { stdin: `${t.tokens.bob}\n`, env: { IMAGEPOD_CONFIG: other } });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ kind: 'user', user_id: 'bob', role: 'user', config_path: other });
    expect(JSON.parse((await imagepod(['whoami', '--json'], as(t.tokens.admin))).stdout)).toEqual({
      kind: 'user',
      user_id: 'root',
      role: 'admin',
    });
  });
});

describe('usage errors and API errors', () => {
  it('shows help; bad usage exits 2 with the command’s help; a bad field exits 1 naming it', async () => {
    const help = await imagepod(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('submit');
    const submitHelp = await imagepod(['submit', '--help']);
    expect(submitHelp.stdout).toContain('--gpu-memory SIZE');

    const unknown = await imagepod(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown command "frobnicate"');
    const bad = await imagepod(['submit', '--image', 'busybox', '--gpus', 'two']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--gpus takes a whole number');
    expect(bad.stderr).toContain('Usage:');
    expect((await imagepod(['status'])).code).toBe(2);
    expect((await imagepod(['jobs', '--bogus'])).code).toBe(2);

    const invalid = await imagepod(['submit', '--image', 'busybox', '--priority', '5000', '--cpu', '0']);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^error: invalid request\n/);
    expect(invalid.stderr).toMatch(/^ {2}priority: .+$/m);
    expect(invalid.stderr).toMatch(/^ {2}cpu_cores_required: .+$/m);
    const badImage = await imagepod(['submit', '--image', 'Not An Image!']);
    expect(badImage.stderr).toMatch(/^error: invalid request\n {2}docker_image: not a valid image name/);
    const missing = await imagepod(['status', '00000000-0000-4000-8000-000000000000']);
    expect(missing).toMatchObject({ code: 1, stderr: 'error: job 00000000-0000-4000-8000-000000000000 not found\n' });
  });
});

describe('imagepod submit, status, jobs, cancel', () => {
  let queued: string;

  it('submits from flags', async () => {
    const r = await imagepod([
      'submit',
      '--image',
      'pytorch/pytorch:2.4.0',
      '--name',
      'flags',
      '--gpu-memory',
      '8GiB',
      '--gpu-type',
      'H100',
      '--cpu',
      '2.5',
      '--memory',
      '512',
      '-e',
      'A=1',
      '--env',
      'B=two=2',
      '--selector',
      'zone=eu-1',
      '--timeout',
      '2h',
      '--priority',
      '7',
      '--max-retries',
      '1',
      '--webhook-url',
      'https://example.com/hook',
      '--',
      'python',
      'train.py',
      '--epochs',
      '3',
    ]);
    expect(r.code).toBe(0);
    queued = r.stdout.trim();
    expect(queued).toMatch(/^[0-9a-f-]{36}$/);
    const job = await jobsOf(t).view(queued);
    expect(job).toMatchObject({
      user_id: 'alice',
      job_name: 'flags',
      image: 'pytorch/pytorch:2.4.0',
      command: ['python', 'train.py', '--epochs', '3'],
      gpu_count: 1,
      gpu_memory_required: 8192,
      gpu_type: 'H100',
      cpu_cores_required: 2.5,
      memory_required: 512,
      env: { A: '1', B: 'two=2' },
      node_selector: { zone: 'eu-1' },
      timeout_seconds: 7200,
      priority: 7,
      max_retries: 1,
      webhook_url: 'https://example.com/hook',
      tier: 'gpu-8g',
      status: 'queued',
    });
  });

  it('submits from a YAML file, flags over its fields', async () => {
    const file = join(dir, 'job.yaml');
    writeFileSync(
      file,
      [
        'job_name: from-yaml',
        'docker_image: busybox',
        'command: [sh, -c, "echo hi"]',
        'memory_required: 64',
        'env:',
        '  FROM_FILE: "yes"',
        'input_data:',
        '  n: 7',
      ].join('\n'),
    );
    const r = await imagepod(['submit', '-f', file, '--name', 'renamed', '-e', 'EXTRA=1', '--priority', '3', '--json']);
    expect(r.code).toBe(0);
    const job = JSON.parse(r.stdout);
    expect(job).toMatchObject({
      job_name: 'renamed',
      docker_image: 'busybox',
      command: ['sh', '-c', 'echo hi'],
      env: { FROM_FILE: 'yes', EXTRA: '1' },
      input_data: { n: 7 },
      memory_required: 64,
      priority: 3,
      status: 'queued',
    });
    // Cancel it now, so no agent of a later test runs it.
    const cancelled = await imagepod(['cancel', job.id]);
    expect(cancelled.stderr).toBe('');
    expect(cancelled.stdout).toBe(`${job.id}  cancelled\n`);
  });

  it('shows a job, and lists jobs as a table and as JSON', async () => {
    const status = await imagepod(['status', queued]);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^ID:\\s+${queued}$`, 'm'));
    expect(status.stdout).toMatch(/^Status:\s+queued$/m);
    expect(status.stdout).toMatch(/^Waiting:\s+no live node has a H100 GPU$/m);
    expect(status.stdout).toMatch(/^GPUs:\s+1x 8 GiB H100$/m);
    expect(JSON.parse((await imagepod(['status', queued, '--json'])).stdout)).toMatchObject({ id: queued, status: 'queued' });

    const table = lines((await imagepod(['jobs'])).stdout);
    expect(table[0]).toMatch(/^ID\s+NAME\s+STATUS\s+GPUS\s+NODE\s+CREATED$/);
    expect(table.find((l) => l.startsWith(queued))).toMatch(/flags\s+queued\s+1x 8 GiB H100\s+-\s+\d+s ago/);
    expect(table.some((l) => /renamed\s+cancelled/.test(l))).toBe(true);
    const page = JSON.parse((await imagepod(['jobs', '--status', 'cancelled', '--json'])).stdout);
    expect(page.items.map((j: { job_name: string }) => j.job_name)).toEqual(['renamed']);
    expect(page.next_cursor).toBeNull();
  });

  it('cancels a job; cancelling it again is the API’s 409', async () => {
    const r = await imagepod(['cancel', queued, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: queued, status: 'cancelled', status_reason: 'cancelled_by_user' });
    const again = await imagepod(['cancel', queued]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`error: job ${queued} already ended (cancelled)\n`);
  });
});

describe('with an agent running jobs', () => {
  it('submit --wait streams the job’s logs and exits with its exit code; logs, nodes and usage show it', async () => {
    const agent = await startAgent(t, { IMAGEPOD_PRICE_PER_GPU_HOUR: '0', IMAGEPOD_PRICE_PER_CPU_CORE_HOUR: '3.6' });
    agents.push(agent);
    const failing = await imagepod([
      'submit',
      '--image',
      'busybox',
      '--memory',
      '64',
      '--name',
      'three',
      '--command',
      'echo hello from the job; echo to stderr >&2; echo bye; exit 3',
      '--wait',
    ]);
    expect(failing.code).toBe(3);
    expect(failing.stdout).toBe('hello from the job\nbye\n');
    expect(failing.stderr).toContain('to stderr\n');
    expect(failing.stderr).toMatch(/job three \([0-9a-f-]{36}\) failed with exit code 3/);
    const id = /submitted job three \(([0-9a-f-]{36})\)/.exec(failing.stderr)?.[1] ?? '';

    const ok = await imagepod(['submit', '--image', 'busybox', '--memory', '64', '--wait', '--json', '--', 'sh', '-c', 'echo fine']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ status: 'succeeded', exit_code: 0, node_id: agent.identity.node_id });
    expect(ok.stderr).toContain('fine\n');

    // The job's stdout and stderr are read apart, so only each stream keeps its order.
    const logs = await imagepod(['logs', id]);
    const logged = lines(logs.stdout);
    expect(logged.filter((l) => l !== 'to stderr')).toEqual(['hello from the job', 'bye', 'job ended: failed']);
    expect(logged).toContain('to stderr');
    const followed = await imagepod(['logs', id, '--follow', '--json']);
    expect(followed.code).toBe(0);
    expect(lines(followed.stdout).map((l) => JSON.parse(l))).toEqual(
      logged.map((text) => ({ id: expect.any(String), time: expect.any(String), stream: expect.any(String), text })),
    );

    const nodes = lines((await imagepod(['nodes'])).stdout);
    expect(nodes[0]).toMatch(/^NAME\s+ID\s+STATUS\s+GPUS/);
    expect(nodes.find((l) => l.startsWith(agent.config.node.name))).toContain(`${agent.identity.node_id}  online`);
    const nodePage = JSON.parse((await imagepod(['nodes', '--json'])).stdout);
    expect(nodePage.items.map((n: { node_id: string }) => n.node_id)).toContain(agent.identity.node_id);

    // The ledger entry follows the job's final status by a moment.
    await waitFor('both jobs in the ledger', async () => (await t.req('GET', '/usage/', { token: t.tokens.alice })).body.total.jobs === 2);
    const usage = await imagepod(['usage', '--from', '1d']);
    expect(usage.code).toBe(0);
    const rows = lines(usage.stdout);
    expect(rows[0]).toMatch(/^From \S+ \S+Z to \S+ \S+Z$/);
    expect(rows[2]).toMatch(/^USER\s+JOBS\s+GPU-HOURS\s+COST$/);
    expect(rows[3]).toMatch(/^alice\s+2\s+0\s+[\d.]+$/);
    expect(rows[4]).toMatch(/^TOTAL\s+2\s+0\s+[\d.]+$/);
    const byNode = JSON.parse((await imagepod(['usage', '--group-by', 'node', '--json'], as(t.tokens.admin))).stdout);
    expect(byNode).toMatchObject({ group_by: 'node', groups: [{ key: agent.identity.node_id, jobs: 2 }], total: { jobs: 2 } });
  });

  it('Ctrl-C on submit --wait detaches and says how to follow again; the job keeps running', async () => {
    agents.push(await startAgent(t));
    const run = imagepodChild([
      'submit',
      '--image',
      'busybox',
      '--memory',
      '64',
      '--name',
      'long',
      '--command',
      'echo started; sleep 30',
      '--wait',
    ]);
    await waitFor('the job to start', async () => run.out.stdout.includes('started\n'));
    run.child.kill('SIGINT');
    const r = await run.ended;
    expect(r.code).toBe(130);
    const id = /submitted job long \(([0-9a-f-]{36})\)/.exec(r.stderr)?.[1] ?? '';
    expect(r.stderr).toContain(`detached: job ${id} keeps running; follow it with: imagepod logs ${id} --follow`);
    expect((await jobsOf(t).view(id)).status).toBe('running');
    expect((await imagepod(['cancel', id])).code).toBe(0);
  });
});

describe('imagepod token', () => {
  it('mints a working token for an admin; a user gets the API’s 403', async () => {
    const refused = await imagepod(['token', '--user', 'carol']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe('error: this route requires an admin (JWT with role admin)\n');

    const r = await imagepod(['token', '--user', 'carol', '--role', 'admin', '--ttl', '1h'], as(t.tokens.admin));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^token for carol \(admin\), valid until \S+ \S+Z\n$/);
    const minted = r.stdout.trim();
    expect((await t.req('GET', '/me', { token: minted })).body).toEqual({ kind: 'user', user_id: 'carol', role: 'admin' });
    const asJson = JSON.parse((await imagepod(['token', '--user', 'dave', '--json'], as(minted))).stdout);
    expect(asJson).toMatchObject({ user_id: 'dave', role: 'user', token: expect.any(String), expires_at: expect.any(String) });
    const badTtl = await imagepod(['token', '--user', 'dave', '--ttl', '90d'], as(minted));
    expect(badTtl.code).toBe(1);
    expect(badTtl.stderr).toContain('\n  ttl: ');
  });
});
