import { Queue, Worker } from 'bullmq';
import { percentile } from '../fleet.js';
import { type BenchStack, until } from '../lib/context.js';
import { LoadClient } from '../lib/http.js';

export interface Latency {
  p50: number;
  p99: number;
}

/** Fires `fn` `rate` times a second for `seconds`, without waiting for one call before the next. */
async function paced(rate: number, seconds: number, fn: (i: number) => Promise<void>): Promise<void> {
  const total = rate * seconds;
  const t0 = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    inflight.push(fn(i));
  }
  await Promise.all(inflight);
}

/** Raw BullMQ: add() at a paced rate, a Worker records how long each job waited to start. */
export async function rawPaced(stack: BenchStack, rate: number, seconds: number): Promise<Latency> {
  const queue = new Queue('raw-paced', { connection: stack.client, prefix: 'raw' });
  const waits: number[] = [];
  // BullMQ leaves a connection it was given open: this one is closed below.
  const workerConnection = stack.client.duplicate({ maxRetriesPerRequest: null });
  const worker = new Worker(
    'raw-paced',
    async (job) => {
      waits.push(Date.now() - job.timestamp);
    },
    { connection: workerConnection, prefix: 'raw', concurrency: 50 },
  );
  await paced(rate, seconds, async (i) => {
    await queue.add('noop', { i, pad: 'x'.repeat(80) });
  });
  await until(async () => waits.length >= rate * seconds, 60_000, 10);
  await worker.close();
  workerConnection.disconnect();
  await queue.obliterate({ force: true });
  await queue.close();
  waits.sort((a, b) => a - b);
  return { p50: percentile(waits, 50), p99: percentile(waits, 99) };
}

/**
 * ImagePod: POST /jobs/ at a paced rate; how long from the API accepting a job (created_at) to
 * the API recording an agent's claim of it (assigned_at).
 */
export async function imagepodPaced(stack: BenchStack, rate: number, seconds: number): Promise<Latency> {
  const client = new LoadClient(stack.api.url);
  const ids: string[] = [];
  const job = { docker_image: 'busybox', command: ['noop'], args: ['0'], cpu_cores_required: 0.01, memory_required: 1 };
  await paced(rate, seconds, async () => {
    const r = await client.send('POST', '/gpu-workers/jobs/', stack.token, job);
    if (r.status !== 201) throw new Error(`submit: ${r.status} ${r.text.slice(0, 200)}`);
    ids.push((JSON.parse(r.text) as { id: string }).id);
  });
  // Read each job once it has succeeded; only the ones still running are asked again.
  const waits: number[] = [];
  let pending = ids;
  await until(
    async () => {
      const still: string[] = [];
      for (let i = 0; i < pending.length; i += 100) {
        const batch = pending.slice(i, i + 100);
        const views = await Promise.all(
          batch.map(
            async (id) =>
              JSON.parse((await client.send('GET', `/gpu-workers/jobs/${id}`, stack.token)).text) as {
                created_at: string;
                assigned_at: string | null;
                status: string;
              },
          ),
        );
        for (const [k, v] of views.entries()) {
          if (v.status === 'succeeded') waits.push(Date.parse(v.assigned_at ?? v.created_at) - Date.parse(v.created_at));
          else still.push(batch[k] as string);
        }
      }
      pending = still;
      return pending.length === 0;
    },
    120_000,
    500,
  );
  client.close();
  waits.sort((a, b) => a - b);
  return { p50: percentile(waits, 50), p99: percentile(waits, 99) };
}

/**
 * What one `POST /jobs/` costs, submitted one at a time after a warm-up: CPU ms of the API process
 * (from /proc) and of Redis per submission. A 1-GPU job that none of the bench's agents (no GPUs)
 * takes, so no report adds to it. At a paced rate, this is what bounds one API process.
 */
export async function submitCost(stack: BenchStack, n: number): Promise<{ api: number; redis: number }> {
  const client = new LoadClient(stack.api.url);
  const job = { docker_image: 'busybox', command: ['noop'], gpu_count: 1, gpu_memory_required: 1024, memory_required: 1 };
  const submit = async () => {
    const r = await client.send('POST', '/gpu-workers/jobs/', stack.token, job);
    if (r.status !== 201) throw new Error(`submit: ${r.status} ${r.text.slice(0, 200)}`);
  };
  for (let i = 0; i < n / 2; i++) await submit();
  const api0 = stack.api.cpuMs();
  const redis0 = await stack.redisCpuMs();
  for (let i = 0; i < n; i++) await submit();
  const cost = { api: (stack.api.cpuMs() - api0) / n, redis: ((await stack.redisCpuMs()) - redis0) / n };
  client.close();
  return cost;
}
