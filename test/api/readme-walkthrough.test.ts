import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';

/**
 * Runs the README's "Try it with curl" section as written, against a running server. Only the
 * address, the secrets file and curl's failure flag differ: every request must answer 2xx.
 */
const run = promisify(execFile);
let t: TestApi;
let dir: string;
let agent: Agent;

beforeAll(async () => {
  t = await startTestApi('readme');
  // The local agent of `npm run local`, here with a 4 GiB GPU: the hello job fits, the 8 GiB
  // job of the original README waits, so the walkthrough can cancel it.
  agent = await startAgent(t, { IMAGEPOD_SIMULATED_GPUS: '1x4096:RTX 4090' });
  dir = mkdtempSync(join(tmpdir(), 'imagepod-readme-'));
  writeFileSync(join(dir, 'local.env'), `IMAGEPOD_JWT_SECRET=${t.secret}\nIMAGEPOD_REGISTRATION_TOKEN=${t.registrationToken}\n`);
});
afterAll(async () => {
  await agent.stop(0);
  await t.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The shell blocks of a marked README section, joined. */
function section(name: string): string {
  const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
  const text = readme.split(`<!-- ${name}:start -->`)[1]?.split(`<!-- ${name}:end -->`)[0];
  if (!text) throw new Error(`README has no ${name} section`);
  const blocks = [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks.join('\n');
}

/** Runs README shell as written, but against the test server, failing on any non-2xx answer. */
async function runAsWritten(script: string, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await run(
    'bash',
    [
      '-euo',
      'pipefail',
      '-c',
      script
        .replaceAll('/tmp/', `${dir}/`)
        .replaceAll('http://localhost:8000', t.url)
        .replaceAll('.imagepod/local.env', join(dir, 'local.env'))
        .replaceAll('curl -s ', 'curl -sS --fail-with-body '),
    ],
    {
      cwd: join(import.meta.dirname, '../..'),
      env: { ...process.env, IMAGEPOD_JWT_SECRET: '', IMAGEPOD_REGISTRATION_TOKEN: '', ...env },
      timeout: 60_000,
    },
  );
  return stdout;
}

describe('README walkthrough', () => {
  it('runs as written', async () => {
    const stdout = await runAsWritten(section('walkthrough'));
    expect(stdout).toContain('"node_name":"gpu-server-1"');
    expect(stdout).toContain('"status":"queued"');
    expect(stdout).toContain('"status":"cancelled"');
    expect(stdout).toContain('"status":"cordoned"');
    expect(stdout).toContain('"jobs_run":0');
    expect(stdout).toContain('hello, {\\"name\\":\\"world\\"}');
    expect(stdout).toContain('event: end\ndata: {"status":"succeeded"}');
    expect(stdout).toContain('"result":{"data":{"greeting":"hello"}');
  }, 90_000);

  it("the cost section's commands work as written", async () => {
    // The walkthrough's first three lines set the tokens; the node is the local agent's.
    const tokens = section('walkthrough').split('\n').slice(0, 3).join('\n');
    expect(tokens).toContain('export ADMIN_TOKEN=');
    const stdout = await runAsWritten(`${tokens}\n${section('costs')}`, { NODE_ID: agent.identity.node_id });
    expect(stdout).toContain('"price_per_gpu_hour":2.4');
    expect(stdout).toContain('"labels":{"zone":"eu-1"}');
    expect(stdout).toContain('"user_id":"alice","max_running_jobs":8,"money_budget":500,"gpu_hours_budget":200,"budget_period":"month"');
    expect(stdout).toContain('"group_by":"user"');
    expect(stdout).toContain('"group_by":"node"');
  }, 60_000);
});
