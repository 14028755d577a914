import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { jobsOf } from '../support/jobs.js';

/**
 * A job that uses more GPU memory than it declared (plus the margin) is stopped with the reason
 * gpu_memory_exceeded; one within its declaration runs on. nvidia-smi is the stand-in, its
 * per-process answer written by the test with the job's real process id.
 */
const FIXTURES = join(import.meta.dirname, '../fixtures');
const GPUS = join(FIXTURES, 'nvidia-smi/8x-h100.csv');
const UUIDS = readFileSync(GPUS, 'utf8')
  .trim()
  .split('\n')
  .map((l) => l.split(', ')[1] as string);
const apps = join(mkdtempSync(join(tmpdir(), 'imagepod-apps-')), 'compute-apps.csv');
let t: TestApi;
let agent: Agent;

beforeAll(async () => {
  writeFileSync(apps, '');
  process.env.FAKE_NVIDIA_SMI_GPUS = GPUS;
  process.env.FAKE_NVIDIA_SMI_APPS = apps;
  t = await startTestApi('gpu-memory', { IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' });
  agent = await startAgent(t, {
    IMAGEPOD_NVIDIA_SMI: join(FIXTURES, 'bin/nvidia-smi'),
    IMAGEPOD_GPU_MEMORY_MARGIN_PERCENT: '10',
    IMAGEPOD_GPU_MEMORY_MARGIN_MIB: '256',
  });
});
afterAll(async () => {
  await agent.stop(0);
  await t.close();
  delete process.env.FAKE_NVIDIA_SMI_GPUS;
  delete process.env.FAKE_NVIDIA_SMI_APPS;
});

/** Starts a job that prints its process id, and waits for that line. */
async function startJob(seconds: number): Promise<{ id: string; pid: number; uuid: string }> {
  const jobs = jobsOf(t);
  const id = await jobs.submit({
    docker_image: 'busybox',
    command: ['sh', '-c', `echo pid $$; sleep ${seconds}`],
    gpu_memory_required: 10000,
    memory_required: 16,
    cpu_cores_required: 0.1,
  });
  const pid = await waitFor('the job to print its pid', async () => {
    const line = (await jobs.logLines(id)).find((l) => l.startsWith('pid '));
    return line ? Number(line.slice(4)) : undefined;
  });
  const view = await jobs.view(id);
  return { id, pid, uuid: UUIDS[view.gpu_indices[0]] as string };
}

describe('GPU memory enforcement', () => {
  it('stops a job over its declaration plus the margin, with gpu_memory_exceeded; leaves one within it alone', async () => {
    const jobs = jobsOf(t);
    const within = await startJob(3);
    const over = await startJob(60);
    // 10000 declared: up to 11256 is allowed. 10900 stays; 12500 is over.
    writeFileSync(apps, `${within.uuid}, ${within.pid}, 10900\n${over.uuid}, ${over.pid}, 12500\n`);

    const stopped = await jobs.status(over.id, 'failed', 10_000);
    expect(stopped.status_reason).toBe('gpu_memory_exceeded');
    expect(stopped.error_message).toContain('more GPU memory than it declared');
    expect((await jobs.finished(within.id)).status).toBe('succeeded');
  }, 30_000);
});
