import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';
import { TestSentinelRedis } from '../support/redis-topologies.js';

/**
 * Redis behind Sentinel: a primary, its replica and one Sentinel, started here. The API and an
 * agent are given only the Sentinel's address and the primary's name; a job runs; then the
 * Sentinel promotes the replica, and both follow it to the new primary and run the next job.
 */

let sentinel: TestSentinelRedis;
let t: TestApi;
let agent: Agent;

beforeAll(async () => {
  sentinel = await TestSentinelRedis.start('imagepod');
  const env = {
    IMAGEPOD_REDIS_URL: '',
    IMAGEPOD_REDIS_SENTINELS: sentinel.sentinelAddress,
    IMAGEPOD_REDIS_SENTINEL_MASTER: sentinel.master,
  };
  t = await startTestApi('redis-sentinel', { ...env, IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200', IMAGEPOD_HEARTBEAT_TTL_MS: '1000' });
  agent = await startAgent(t, env);
}, 60_000);

afterAll(async () => {
  await agent?.stop(0);
  await t?.close();
  await sentinel?.stop();
}, 60_000);

const job = (text: string) => ({ docker_image: 'busybox', command: ['sh', '-c', `echo ${text}`], memory_required: 64 });

describe('Redis through Sentinel', () => {
  it('runs a job on the primary the Sentinel names', async () => {
    expect((await fetch(`${t.url}/readyz`)).status).toBe(200);
    const jobs = jobsOf(t);
    const id = await jobs.submit(job('before'));
    expect(await jobs.finished(id)).toMatchObject({ status: 'succeeded', node_id: agent.identity.node_id });
    expect(await jobs.logLines(id)).toEqual(['before', 'job ended: succeeded']);
  });

  it('follows a failover: the replica becomes the primary, and the API and the agent carry on with it', async () => {
    const { replica } = sentinel.ports;
    expect(await sentinel.failover()).toBe(replica);
    const jobs = jobsOf(t);
    // The first write after the switch may meet the demoted primary (READONLY): it is sent again
    // on a new connection to the new one, so the submission itself succeeds.
    const id = await waitFor('a submission after the failover', async () => {
      const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: job('after') });
      return r.status === 201 ? (r.body.id as string) : undefined;
    });
    expect(await jobs.finished(id, 30_000)).toMatchObject({ status: 'succeeded', node_id: agent.identity.node_id });
    expect(await jobs.logLines(id)).toEqual(['after', 'job ended: succeeded']);
    // What was written before the switch was replicated, and is still there.
    const listed = (await t.req('GET', '/jobs/', { token: t.tokens.alice })).body.items;
    expect(listed).toHaveLength(2);
    const node = (await t.req('GET', `/nodes/${agent.identity.node_id}`, { token: t.tokens.admin })).body;
    expect(node.status).toBe('online');
  }, 60_000);
});
