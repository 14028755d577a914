import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import { createLogger } from '../../src/logger.js';
import { agentEnv, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

/** Everything both processes log, as the JSON lines they write. */
const lines: string[] = [];
const sink = () =>
  new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });

let t: TestApi;
let agent: Agent;

beforeAll(async () => {
  t = await startTestApi('logs', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' }, createLogger('debug', 'imagepod-api', sink()));
  const config = loadAgentConfig(agentEnv(t, { IMAGEPOD_LOG_LEVEL: 'debug', IMAGEPOD_SIMULATED_GPUS: '1x24564:RTX 4090' }));
  agent = await Agent.start(config, createLogger('debug', 'imagepod-agent', sink()));
});
afterAll(async () => {
  await agent?.stop(0);
  await t?.close();
});

describe('logs of a full run', () => {
  it('are JSON with a request id on every request line, the job and node ids where they apply, and no credential anywhere', async () => {
    const jobs = jobsOf(t);
    const id = await jobs.submit({ docker_image: 'busybox', command: ['sh', '-c', 'echo working; exit 3'], memory_required: 64 });
    expect((await jobs.finished(id)).exit_code).toBe(3);
    const ok = await jobs.submit({ docker_image: 'busybox', command: ['sh', '-c', 'echo fine'], memory_required: 64 });
    await jobs.finished(ok);
    // Credentials that must never be echoed: a session, a wrong token, a cookie.
    const session = await t.req('POST', '/session', { body: { token: t.tokens.bob } });
    const cookie = (session.headers.get('set-cookie') ?? '').split(';')[0] as string;
    await t.req('GET', '/jobs', { headers: { cookie } });
    await t.req('GET', '/jobs', { token: `${t.tokens.alice}x` });
    await t.req('GET', '/nodes', { token: t.registrationToken });
    await t.req('GET', `/jobs/${id}`, { token: t.tokens.admin });
    await waitFor('request lines written', async () => lines.some((l) => l.includes(`/jobs/${id}`)));

    const parsed = lines.map((l) => JSON.parse(l) as Record<string, any>);
    expect(parsed.length).toBeGreaterThan(20);

    const secrets = {
      jwtSecret: t.secret,
      registrationToken: t.registrationToken,
      aliceToken: t.tokens.alice,
      adminToken: t.tokens.admin,
      bobToken: t.tokens.bob,
      agentKey: agent.identity.api_key,
      session: cookie.slice('imagepod_session='.length),
    };
    for (const [what, value] of Object.entries(secrets)) {
      expect(value, what).toBeTruthy();
      expect(
        lines.filter((l) => l.includes(value as string)),
        `${what} appears in the logs`,
      ).toEqual([]);
    }

    // Every line about an HTTP request says which one.
    const requestLines = parsed.filter((l) => l.service === 'imagepod-api' && (l.req !== undefined || l.reqId !== undefined));
    expect(requestLines.length).toBeGreaterThan(10);
    for (const l of requestLines) expect(l.reqId ?? l.req?.id, JSON.stringify(l)).toMatch(/^[A-Za-z0-9._-]+$/);
    // The API's lines about one job's reports carry the job and the reporting node.
    const aboutJob = parsed.filter((l) => l.service === 'imagepod-api' && l.jobId === id);
    expect(aboutJob.length).toBeGreaterThan(0);
    // Each of them was written while serving a request (an agent's report, a read): each says which.
    for (const l of aboutJob) expect(l.reqId, JSON.stringify(l)).toMatch(/^[A-Za-z0-9._-]+$/);
    expect(aboutJob.some((l) => l.nodeId === agent.identity.node_id)).toBe(true);
    // The agent's lines about the job carry its id and the node's.
    const agentJobLines = parsed.filter((l) => l.service === 'imagepod-agent' && l.jobId === id);
    expect(agentJobLines.length).toBeGreaterThan(0);
    expect(agentJobLines.every((l) => l.nodeId === agent.identity.node_id)).toBe(true);
    // No stack traces.
    expect(lines.filter((l) => /\n\s+at |"stack"/.test(l))).toEqual([]);
  });
});
