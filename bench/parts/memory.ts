import { Queue } from 'bullmq';
import type { BenchStack } from '../lib/context.js';

async function usedMemory(stack: BenchStack): Promise<number> {
  const info = await stack.client.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
}

/** The job a user submits, as the benchmarks submit it. */
export const SAMPLE_JOB = {
  job_name: 'resnet50-finetune',
  docker_image: 'pytorch/pytorch',
  docker_tag: '2.4.0-cuda12.4-cudnn9-runtime',
  command: ['python', 'train.py'],
  args: ['--epochs', '10', '--batch-size', '64'],
  env: { WANDB_PROJECT: 'vision', HF_HOME: '/cache' },
  input_data: { dataset: 's3://datasets/imagenet-subset', lr: 0.001 },
  gpu_memory_required: 20000,
  cpu_cores_required: 4,
  memory_required: 16384,
};

/**
 * Redis memory per queued job (nothing claims them): ImagePod's (its record, lookup entries and
 * BullMQ job) against raw BullMQ jobs carrying the same job as their data, and 100-byte ones.
 */
export async function memoryPerJob(stack: BenchStack, n: number): Promise<{ imagepod: number; rawSameJob: number; raw100: number }> {
  const measure = async (fill: () => Promise<void>) => {
    await new Promise((r) => setTimeout(r, 200));
    const before = await usedMemory(stack);
    await fill();
    await new Promise((r) => setTimeout(r, 200));
    return ((await usedMemory(stack)) - before) / n;
  };
  const raw = async (name: string, data: object) => {
    const q = new Queue(name, { connection: stack.client, prefix: 'raw' });
    const bytes = await measure(async () => {
      for (let i = 0; i < n; i += 1000) await q.addBulk(Array.from({ length: Math.min(1000, n - i) }, () => ({ name: 'job', data })));
    });
    await q.obliterate({ force: true });
    await q.close();
    return bytes;
  };
  const rawSameJob = await raw('raw-memory-job', SAMPLE_JOB);
  const raw100 = await raw('raw-memory-100', { pad: 'x'.repeat(90) });
  const imagepod = await measure(async () => {
    for (let i = 0; i < n; i += 1000) {
      const r = await stack.post('/jobs/batch', { jobs: Array.from({ length: Math.min(1000, n - i) }, () => SAMPLE_JOB) });
      if (r.status !== 201) throw new Error(`batch: ${r.status}`);
    }
  });
  return { imagepod, rawSameJob, raw100 };
}
