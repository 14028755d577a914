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

function walkthrough(): string {
  const readme = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
  const section = readme.split('<!-- walkthrough:start -->')[1]?.split('<!-- walkthrough:end -->')[0];
  if (!section) throw new Error('README has no walkthrough section');
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]);
  return blocks.join('\n');
}

describe('README walkthrough', () => {
  it('runs as written', async () => {
    const script = walkthrough()
      .replaceAll('/tmp/', `${dir}/`)
      .replaceAll('http://localhost:8000', t.url)
      .replaceAll('.imagepod/local.env', join(dir, 'local.env'))
      .replaceAll('curl -s ', 'curl -sS --fail-with-body ');
    const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: join(import.meta.dirname, '../..'),
      env: { ...process.env, IMAGEPOD_JWT_SECRET: '', IMAGEPOD_REGISTRATION_TOKEN: '' },
      timeout: 60_000,
    });
    expect(stdout).toContain('"node_name":"gpu-server-1"');
    expect(stdout).toContain('"status":"queued"');
    expect(stdout).toContain('"status":"cancelled"');
    expect(stdout).toContain('"status":"cordoned"');
    expect(stdout).toContain('"jobs_run":0');
    expect(stdout).toContain('hello, {\\"name\\":\\"world\\"}');
    expect(stdout).toContain('event: end\ndata: {"status":"succeeded"}');
    expect(stdout).toContain('"result":{"data":{"greeting":"hello"}');
  }, 90_000);
});
