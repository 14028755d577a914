/**
 * ImagePod against raw BullMQ, in one run on one Redis (a server of the benchmark's own):
 *   npm run bench [-- --quick] [--only dispatch,paced,memory,heartbeats]
 *  - dispatch: jobs/s from REST submission (batches of 1,000) to completion on simulated no-op
 *    agents (the real agent, claiming and reporting; jobs that only pretend to run), against
 *    addBulk and a Worker draining no-op jobs, with the CPU each process spent per job;
 *  - submit-to-start p50/p99 at a paced 200 jobs/s, and the API's CPU per single submission;
 *  - Redis memory per queued job;
 *  - heartbeat ingestion, 10,000 nodes beating once a second each (and, for scale, the same load
 *    on a bare node:http server: what this machine answers at all);
 *  - available-nodes latency over those 10,000 nodes.
 */
import { parseArgs } from 'node:util';
import { ms } from './fleet.js';
import { startStack } from './lib/context.js';
import { type CpuPerJob, imagepodDispatch, rawDispatch } from './parts/dispatch.js';
import { availableNodesLatency, bareHttpCeiling, heartbeatLoad, registerFleet } from './parts/heartbeats.js';
import { memoryPerJob } from './parts/memory.js';
import { imagepodPaced, rawPaced, submitCost } from './parts/paced.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, only: { type: 'string' } } });
const q = values.quick;
/** Parts to run (all by default): one part alone is quicker to iterate on. */
const parts = new Set((values.only ?? 'dispatch,paced,memory,heartbeats').split(','));
const DISPATCH_JOBS = q ? 2000 : 10_000;
const PACED_SECONDS = q ? 3 : 10;
const SUBMIT_COST_JOBS = q ? 500 : 2000;
const MEMORY_JOBS = q ? 2000 : 10_000;
const FLEET = q ? 2000 : 10_000;
const HEARTBEAT_SECONDS = q ? 5 : 10;
const AGENTS = 8;

const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const line = (label: string, value: string, note = '') => console.log(`  ${label.padEnd(54)} ${value.padStart(18)}  ${note}`);

const stack = await startStack('bench', { IMAGEPOD_BODY_LIMIT_BYTES: String(8 * 1024 * 1024) });
try {
  console.log(
    `ImagePod bench: one Redis ${await stack.client.info('server').then((s) => /redis_version:(\S+)/.exec(s)?.[1])}, API in its own process, ${AGENTS} simulated agents in this one`,
  );

  // Agents start after raw BullMQ's run, so that run has this process to itself.
  const agents = async () => {
    if (stack.agents.length === 0) await stack.addAgents(AGENTS, { IMAGEPOD_MAX_CONCURRENT_JOBS: '64' });
  };
  if (parts.has('dispatch')) {
    console.log('\nDispatch (submission to completion):');
    const raw = await rawDispatch(stack, DISPATCH_JOBS);
    line(
      'raw BullMQ: addBulk + Worker (concurrency 50), no-op',
      `${raw.jobsPerSecond.toFixed(0)} jobs/s`,
      `(addBulk alone ${raw.addBulkPerSecond.toFixed(0)}/s)`,
    );
    await agents();
    const ip = await imagepodDispatch(stack, DISPATCH_JOBS);
    line(
      'ImagePod: POST /jobs/batch -> agents -> completed',
      `${ip.jobsPerSecond.toFixed(0)} jobs/s`,
      `(submission alone ${ip.submitPerSecond.toFixed(0)}/s)`,
    );
    line('ratio ImagePod / raw', ratio(ip.jobsPerSecond, raw.jobsPerSecond), '(goal >= 0.50x)');
    // Where the time goes: the machine's two cores are shared by all three.
    const cpu = (c: CpuPerJob, api: boolean) =>
      `${api ? `API ${c.api.toFixed(2)}  ` : ''}workers ${c.workers.toFixed(2)}  Redis ${c.redis.toFixed(2)}`;
    line('CPU ms per job, raw BullMQ', cpu(raw.cpu, false));
    line('CPU ms per job, ImagePod', cpu(ip.cpu, true));
  }
  if (parts.has('paced')) {
    console.log(`\nSubmit to start, paced at 200 jobs/s for ${PACED_SECONDS} s:`);
    const rp = await rawPaced(stack, 200, PACED_SECONDS);
    line('raw BullMQ: add() -> Worker starts', `p50 ${ms(rp.p50)}`, `p99 ${ms(rp.p99)}`);
    await agents();
    const ipp = await imagepodPaced(stack, 200, PACED_SECONDS);
    line("ImagePod: POST /jobs/ -> an agent's claim recorded", `p50 ${ms(ipp.p50)}`, `p99 ${ms(ipp.p99)}`);
    line('ratio of p99 ImagePod / raw', ratio(ipp.p99, rp.p99), '(goal <= 2x)');
    const cost = await submitCost(stack, SUBMIT_COST_JOBS);
    line(
      'CPU ms per POST /jobs/, one at a time (warm)',
      `API ${cost.api.toFixed(2)}`,
      `Redis ${cost.redis.toFixed(2)}  (one API core: ~${Math.round(1000 / cost.api)} submissions/s)`,
    );
  }
  for (const a of stack.agents.splice(0)) await a.stop(0);
  if (parts.has('memory')) {
    console.log(`\nRedis memory per queued job (${MEMORY_JOBS} jobs, nothing claiming):`);
    const mem = await memoryPerJob(stack, MEMORY_JOBS);
    line('raw BullMQ job, 100-byte data', `${mem.raw100.toFixed(0)} B`);
    line('raw BullMQ job carrying the same job spec as its data', `${mem.rawSameJob.toFixed(0)} B`);
    line('ImagePod job (record, lookup entries, BullMQ job)', `${mem.imagepod.toFixed(0)} B`);
    line('ratio ImagePod / raw with the same spec', ratio(mem.imagepod, mem.rawSameJob), '(goal <= 1.5x)');
  }
  if (parts.has('heartbeats')) {
    console.log(`\nHeartbeats: ${FLEET} nodes, each beating once a second, for ${HEARTBEAT_SECONDS} s:`);
    const fleet = await registerFleet(stack, FLEET);
    const hb = await heartbeatLoad(stack, fleet, HEARTBEAT_SECONDS);
    line('offered', `${hb.offered} beats/s`);
    line('sustained', `${hb.sustained.toFixed(0)} beats/s`, hb.errors > 0 ? `(${hb.errors} errors)` : '');
    line('API latency', `p50 ${ms(hb.p50)}`, `p99 ${ms(hb.p99)} (goal p99 < 50 ms at 10,000/s)`);
    line('Redis CPU per beat', `${hb.redisMicrosPerBeat.toFixed(1)} us`);
    // What this machine answers at all with this generator: no framework, no auth, no Redis.
    const bare = await bareHttpCeiling(fleet, HEARTBEAT_SECONDS);
    line(
      'bare node:http server (parse, answer {}), same load',
      `${bare.sustained.toFixed(0)} beats/s`,
      `p50 ${ms(bare.p50)}  p99 ${ms(bare.p99)} (this machine's ceiling)`,
    );
    // What one API process sustains with headroom, for sizing: a tenth of the fleet beating.
    const tenth = { nodes: fleet.nodes.slice(0, Math.ceil(FLEET / 10)) };
    const light = await heartbeatLoad(stack, tenth, Math.min(5, HEARTBEAT_SECONDS));
    line(
      `the same at ${light.offered} beats/s`,
      `${light.sustained.toFixed(0)} beats/s`,
      `API p50 ${ms(light.p50)}  p99 ${ms(light.p99)}${light.errors > 0 ? ` (${light.errors} errors)` : ''}`,
    );

    console.log(`\nGET /available-nodes/ over ${FLEET} live nodes, 300 sequential requests each:`);
    for (const r of await availableNodesLatency(stack, 300)) line(r.label, `p50 ${ms(r.p50)}`, `p99 ${ms(r.p99)}`);
  }
} finally {
  await stack.close();
}
