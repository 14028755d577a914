/**
 * Replays a workload trace against a fleet of simulated agents (the real agent and its claim
 * code, on real Redis, with jobs that only pretend to run), time compressed, and compares what
 * it achieved with an offline best-fit-decreasing schedule of the same trace.
 *   npm run sim -- [trace.csv] [--jobs 1500] [--nodes 12] [--speed 250] [--bound 3600] [--starvation 3600] [--load 0.9]
 *   npm run sim:trace -- --out trace.csv [--jobs 1500] [--nodes 12]     (writes a trace)
 * Times are in trace seconds; --speed 250 plays 250 trace seconds in one real second. Faster
 * speeds multiply the platform's real latencies (a 100 ms claim becomes 25 trace seconds).
 */
import { parseArgs } from 'node:util';
import { percentile } from '../fleet.js';
import { startStack } from '../lib/context.js';
import { LoadClient } from '../lib/http.js';
import { SimExecutor } from '../lib/sim-executor.js';
import { fitOnNode, simulateBfd } from './bfd.js';
import { defaultFleet, fleetGpuMiB } from './fleet.js';
import { generateTrace, readTrace, type TraceJob, writeTrace } from './trace.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    jobs: { type: 'string', default: '1500' },
    nodes: { type: 'string', default: '12' },
    speed: { type: 'string', default: '250' },
    bound: { type: 'string', default: '3600' },
    // When a waiting job gets a reservation (the agents' IMAGEPOD_STARVATION_MS); default: the bound.
    starvation: { type: 'string' },
    load: { type: 'string', default: '0.9' },
    seed: { type: 'string', default: '2020' },
    out: { type: 'string' },
  },
});
const fleet = defaultFleet(Number(values.nodes));
const trace: TraceJob[] = positionals[0]
  ? readTrace(positionals[0])
  : generateTrace({ jobs: Number(values.jobs), seed: Number(values.seed), fleetGpuMiB: fleetGpuMiB(fleet), load: Number(values.load) });
if (values.out) {
  writeTrace(values.out, trace);
  console.log(`wrote ${trace.length} jobs to ${values.out}`);
  process.exit(0);
}
const SPEED = Number(values.speed);
const BOUND = Number(values.bound);
const STARVATION = Number(values.starvation ?? values.bound);
const SAMPLE = 60; // trace seconds
const realMs = (traceSeconds: number) => (traceSeconds * 1000) / SPEED;

// ── the offline bound ─────────────────────────────────────────────────────────────────────────
const bfd = simulateBfd(fleet, trace, SAMPLE);

// ── the replay ───────────────────────────────────────────────────────────────────────────────
const started = new Map<string, number>();
const ended = new Set<string>();
const indexOf = new Map<string, number>();
const observer = {
  started: (id: string) => started.set(id, performance.now()),
  ended: (id: string) => ended.add(id),
};
const stack = await startStack('sim');
const samples: { t: number; allocated: number; stranded: number }[] = [];
let overCommits = 0;
try {
  for (const node of fleet) {
    await stack.addAgents(
      1,
      {
        IMAGEPOD_NODE_NAME: node.name,
        IMAGEPOD_SIMULATED_GPUS: `${node.gpus}x${node.mib}:${node.model}`,
        IMAGEPOD_MAX_CONCURRENT_JOBS: String(node.gpus * 10),
        IMAGEPOD_STARVATION_MS: String(Math.max(1, Math.round(realMs(STARVATION)))),
        // The 90 s a job may hold its resources past its limit (pull, stop), compressed too.
        IMAGEPOD_END_ALLOWANCE_MS: String(Math.round(realMs(90))),
        IMAGEPOD_RESCAN_INTERVAL_MS: '500',
      },
      () => new SimExecutor(observer),
    );
  }
  const total = fleetGpuMiB(fleet);
  const client = new LoadClient(stack.api.url, 64);
  const submittedAt: number[] = new Array(trace.length).fill(Number.NaN);
  const t0 = performance.now();
  const traceNow = () => ((performance.now() - t0) * SPEED) / 1000;

  const sampler = setInterval(() => {
    let allocated = 0;
    let stranded = 0;
    const waiting = [...indexOf].filter(([id]) => !started.has(id)).map(([, i]) => trace[i] as TraceJob);
    for (const [n, agent] of stack.agents.entries()) {
      const book = agent.resources;
      const free = book.deviceList.map((d) => book.freeOn(d.index));
      for (const d of book.deviceList) {
        const reserved = book.reservedOn(d.index);
        allocated += reserved;
        if (reserved > d.memoryTotal) overCommits++;
      }
      const spec = fleet[n];
      if (spec && waiting.length > 0 && !waiting.some((j) => fitOnNode(j, spec, free) !== null))
        stranded += free.reduce((a, b) => a + b, 0);
    }
    samples.push({ t: traceNow(), allocated: allocated / total, stranded: stranded / total });
  }, realMs(SAMPLE));

  const submits: Promise<void>[] = [];
  for (const [i, j] of trace.entries()) {
    const wait = realMs(j.arrival) - (performance.now() - t0);
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    submits.push(
      (async () => {
        const r = await client.send('POST', '/gpu-workers/jobs/', stack.token, {
          docker_image: 'busybox',
          command: ['sim'],
          args: [String(Math.max(1, Math.round(realMs(j.duration))))],
          gpu_count: j.gpuCount,
          gpu_memory_required: j.gpuMemMiB,
          ...(j.gpuType !== '' && { gpu_type: j.gpuType }),
          cpu_cores_required: 0.01,
          memory_required: 1,
          // The limit compressed like the run time, rounded up so no job is stopped early.
          timeout_seconds: Math.max(1, Math.ceil(realMs(Math.max(j.timeout, j.duration)) / 1000)),
        });
        if (r.status !== 201) throw new Error(`submit: ${r.status} ${r.text.slice(0, 200)}`);
        const id = (JSON.parse(r.text) as { id: string }).id;
        indexOf.set(id, i);
        submittedAt[i] = traceNow();
      })(),
    );
  }
  await Promise.all(submits);
  while (ended.size < trace.length) await new Promise((r) => setTimeout(r, 100));
  clearInterval(sampler);
  client.close();

  // ── figures ────────────────────────────────────────────────────────────────────────────────
  const waits = new Map<number, number>();
  for (const [id, i] of indexOf) {
    const s = started.get(id);
    if (s !== undefined) waits.set(i, Math.max(0, ((s - t0) * SPEED) / 1000 - (trace[i] as TraceJob).arrival));
  }
  const classOf = (j: TraceJob) => {
    const mib = j.gpuCount * j.gpuMemMiB;
    return mib <= 16 * 1024 ? 'small (<= 16 GiB)' : mib <= 80 * 1024 ? 'medium (<= 80 GiB)' : 'large (> 80 GiB)';
  };
  const lastArrival = (trace.at(-1) as TraceJob).arrival;
  const steady = (s: { t: number }) => s.t >= lastArrival * 0.1 && s.t <= lastArrival;
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const ipAlloc = mean(samples.filter(steady).map((s) => s.allocated));
  const bfdAlloc = mean(bfd.samples.filter(steady).map((s) => s.allocated));
  const ipStranded = mean(samples.filter(steady).map((s) => s.stranded));
  const bfdStranded = mean(bfd.samples.filter(steady).map((s) => s.stranded));
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const mins = (s: number) => `${(s / 60).toFixed(1)} min`;

  console.log(
    `Trace: ${trace.length} jobs over ${(lastArrival / 3600).toFixed(1)} h (load ${values.load} of the fleet's GPU memory); fleet: ${fleet.length} nodes, ${fleet.reduce((s, n) => s + n.gpus, 0)} GPUs of 80 GiB; played ${SPEED}x faster; wait bound ${mins(BOUND)}, reservations after ${mins(STARVATION)}`,
  );
  console.log('\nGPU memory allocated over time (share of the fleet):');
  console.log('  trace time   ImagePod   best-fit-decreasing bound');
  for (let k = 1; k <= 10; k++) {
    const t = (lastArrival * k) / 10;
    const near = (xs: { t: number; allocated: number }[]) =>
      xs.reduce((b, s) => (Math.abs(s.t - t) < Math.abs(b.t - t) ? s : b), xs[0] ?? { t: 0, allocated: 0 });
    console.log(
      `  ${(t / 3600).toFixed(2).padStart(7)} h   ${pct(near(samples).allocated).padStart(8)}   ${pct(near(bfd.samples).allocated).padStart(8)}`,
    );
  }
  console.log('\nSteady state (from 10% of the trace to its last arrival):');
  console.log(
    `  mean allocation          ImagePod ${pct(ipAlloc)}   bound ${pct(bfdAlloc)}   ratio ${(ipAlloc / bfdAlloc).toFixed(3)} (goal >= 0.90)`,
  );
  console.log(`  mean stranded memory     ImagePod ${pct(ipStranded)}   bound ${pct(bfdStranded)}   (free, but no waiting job fits there)`);
  console.log('\nWait from arrival to start, by job size (GPUs x memory per GPU):');
  console.log('  size                     ImagePod: median / p99 / max          bound: median / p99 / max');
  for (const cls of ['small (<= 16 GiB)', 'medium (<= 80 GiB)', 'large (> 80 GiB)']) {
    const ip = trace.map((j, i) => ({ j, i })).filter(({ j }) => classOf(j) === cls);
    const a = ip
      .map(({ i }) => waits.get(i) ?? Number.NaN)
      .filter(Number.isFinite)
      .sort((x, y) => x - y);
    const b = ip
      .map(({ i, j }) => (bfd.starts[i] ?? Number.NaN) - j.arrival)
      .filter(Number.isFinite)
      .sort((x, y) => x - y);
    const fmt = (xs: number[]) => `${mins(percentile(xs, 50))} / ${mins(percentile(xs, 99))} / ${mins(xs.at(-1) ?? 0)}`;
    console.log(`  ${cls.padEnd(22)} ${String(ip.length).padStart(4)} jobs: ${fmt(a).padEnd(34)} ${fmt(b)}`);
  }
  const maxWait = Math.max(...waits.values());
  const over = [...waits.values()].filter((w) => w > BOUND).length;
  const bfdOver = trace.filter((j, i) => (bfd.starts[i] ?? Number.POSITIVE_INFINITY) - j.arrival > BOUND).length;
  console.log(
    `\nLongest wait ${mins(maxWait)}; jobs waiting longer than the ${mins(BOUND)} bound: ImagePod ${over}, best-fit-decreasing bound ${bfdOver}`,
  );
  console.log(`Over-commits seen (a GPU promised more memory than it has): ${overCommits}`);
  console.log(`Replay took ${((performance.now() - t0) / 60_000).toFixed(1)} real minutes.`);
} finally {
  await stack.close();
}
