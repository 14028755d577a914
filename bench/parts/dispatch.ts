import { Queue, Worker } from 'bullmq';
import type { BenchStack } from '../lib/context.js';
import { until } from '../lib/context.js';

/** CPU time per job, ms, of each process taking part: where a run's time goes. */
export interface CpuPerJob {
  /** This process: the raw Worker, or ImagePod's simulated agents (and the load driver). */
  readonly workers: number;
  readonly api: number;
  readonly redis: number;
}

async function cpuMeter(stack: BenchStack): Promise<(n: number) => Promise<CpuPerJob>> {
  const self0 = process.cpuUsage();
  const api0 = stack.api.cpuMs();
  const redis0 = await stack.redisCpuMs();
  return async (n) => {
    const self = process.cpuUsage(self0);
    return {
      workers: (self.user + self.system) / 1000 / n,
      api: (stack.api.cpuMs() - api0) / n,
      redis: ((await stack.redisCpuMs()) - redis0) / n,
    };
  };
}

/** Raw BullMQ: addBulk of no-op jobs and one Worker (concurrency 50) draining them, end to end. */
export async function rawDispatch(
  stack: BenchStack,
  n: number,
): Promise<{ jobsPerSecond: number; addBulkPerSecond: number; cpu: CpuPerJob }> {
  const queue = new Queue('raw-dispatch', { connection: stack.client, prefix: 'raw' });
  let done = 0;
  // BullMQ leaves a connection it was given open: this one is closed below.
  const workerConnection = stack.client.duplicate({ maxRetriesPerRequest: null });
  const worker = new Worker('raw-dispatch', async () => null, {
    connection: workerConnection,
    prefix: 'raw',
    concurrency: 50,
    autorun: false,
  });
  worker.on('completed', () => {
    done++;
  });
  const meter = await cpuMeter(stack);
  const t0 = performance.now();
  void worker.run();
  for (let i = 0; i < n; i += 1000) {
    await queue.addBulk(
      Array.from({ length: Math.min(1000, n - i) }, (_, j) => ({ name: 'noop', data: { i: i + j, pad: 'x'.repeat(80) } })),
    );
  }
  const added = performance.now() - t0;
  await until(async () => done >= n, 600_000, 5);
  const total = performance.now() - t0;
  const cpu = await meter(n);
  await worker.close();
  workerConnection.disconnect();
  await queue.obliterate({ force: true });
  await queue.close();
  return { jobsPerSecond: n / (total / 1000), addBulkPerSecond: n / (added / 1000), cpu };
}

/**
 * ImagePod: jobs submitted over REST in batches of 1,000, claimed by real agents (simulated
 * executor, no-op jobs), reported and completed: submission to the last completion.
 */
export async function imagepodDispatch(
  stack: BenchStack,
  n: number,
): Promise<{ jobsPerSecond: number; submitPerSecond: number; cpu: CpuPerJob }> {
  const job = { docker_image: 'busybox', command: ['noop'], args: ['0'], cpu_cores_required: 0.01, memory_required: 1 };
  const cpu = stack.queue('cpu');
  const before = (await cpu.getJobCounts('completed')).completed ?? 0;
  const meter = await cpuMeter(stack);
  const t0 = performance.now();
  for (let i = 0; i < n; i += 1000) {
    const r = await stack.post('/jobs/batch', { jobs: Array.from({ length: Math.min(1000, n - i) }, () => job) });
    if (r.status !== 201) throw new Error(`batch submit: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
  }
  const submitted = performance.now() - t0;
  await until(async () => ((await cpu.getJobCounts('completed')).completed ?? 0) - before >= n, 600_000, 20);
  const total = performance.now() - t0;
  return { jobsPerSecond: n / (total / 1000), submitPerSecond: n / (submitted / 1000), cpu: await meter(n) };
}
