/**
 * Where a queued job's Redis memory goes: submits 1,000 jobs (nothing claims them) to an API on
 * a Redis of its own, then sums MEMORY USAGE per kind of key, per job.
 *   npm run bench:memory
 */
import { startStack } from './lib/context.js';
import { SAMPLE_JOB } from './parts/memory.js';

const JOBS = 1000;
const stack = await startStack('bench');
try {
  const r = await stack.post('/jobs/batch', { jobs: Array.from({ length: JOBS }, () => SAMPLE_JOB) });
  if (r.status !== 201) throw new Error(`batch submit: ${r.status}`);
  const kinds = new Map<string, { keys: number; bytes: number; encoding: string }>();
  // The benchmark's own Redis: KEYS is fine here.
  for (const key of await stack.client.keys('*')) {
    const kind = key.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<id>').replace(/:\d+$/, ':<n>');
    const bytes = Number(await stack.client.memory('USAGE', key, 'SAMPLES', 0));
    const encoding = String(await stack.client.object('ENCODING', key));
    const k = kinds.get(kind) ?? { keys: 0, bytes: 0, encoding };
    k.keys++;
    k.bytes += bytes;
    kinds.set(kind, k);
  }
  console.log(`MEMORY USAGE per queued job, ${JOBS} jobs (keys of one kind summed, divided by the jobs):`);
  let total = 0;
  for (const [kind, k] of [...kinds].sort((a, b) => b[1].bytes - a[1].bytes)) {
    total += k.bytes;
    if (k.bytes / JOBS >= 1) console.log(`  ${kind.padEnd(48)} ${k.encoding.padEnd(10)} ${(k.bytes / JOBS).toFixed(0).padStart(6)} B`);
  }
  console.log(`  ${'all'.padEnd(59)} ${(total / JOBS).toFixed(0).padStart(6)} B`);
} finally {
  await stack.close();
}
