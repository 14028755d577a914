import { readFileSync, writeFileSync } from 'node:fs';
import { seededRandom } from '../fleet.js';

/**
 * A workload trace: one job a line, `arrival_s,duration_s,gpu_count,gpu_mem_mib,gpu_type,timeout_s`
 * (gpu_type empty for any GPU; timeout_s, the time limit the user asked for, may be left out).
 * The generator follows the shape of published GPU cluster traces
 * (Alibaba PAI 2020, "MLaaS in the Wild", NSDI '22): most jobs use one GPU and often only part
 * of its memory, a few use 2, 4 or 8 whole GPUs; durations are heavy-tailed (log-normal, median
 * about ten minutes, some running hours); arrivals are Poisson at a rate that keeps the fleet
 * busy. About a fifth of jobs ask for a GPU model. Time limits are what users write: the run
 * time padded by a factor between 1.2 and 4, rounded up to a quarter hour (Slurm's logs show
 * limits of about two to three times the real run time on average).
 */
export interface TraceJob {
  readonly arrival: number;
  readonly duration: number;
  readonly gpuCount: number;
  readonly gpuMemMiB: number;
  readonly gpuType: string;
  /** The job's time limit (seconds). */
  readonly timeout: number;
}

export interface TraceOptions {
  readonly jobs: number;
  readonly seed: number;
  /** Total GPU memory of the fleet (MiB), to pace arrivals to the target load. */
  readonly fleetGpuMiB: number;
  /** Offered load as a share of the fleet's GPU memory. */
  readonly load: number;
}

const GIB = 1024;

function pick<T>(rand: () => number, weighted: readonly (readonly [T, number])[]): T {
  let r = rand() * weighted.reduce((s, [, w]) => s + w, 0);
  for (const [v, w] of weighted) {
    r -= w;
    if (r <= 0) return v;
  }
  return (weighted.at(-1) as readonly [T, number])[0];
}

/** A standard normal draw (Box-Muller). */
function normal(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

export function generateTrace(o: TraceOptions): TraceJob[] {
  const rand = seededRandom(o.seed);
  const shapes: TraceJob[] = [];
  for (let i = 0; i < o.jobs; i++) {
    const gpuCount = pick(rand, [
      [1, 0.8],
      [2, 0.08],
      [4, 0.07],
      [8, 0.05],
    ] as const);
    const gpuMemMiB =
      gpuCount === 1
        ? pick(rand, [
            [8 * GIB, 0.25],
            [16 * GIB, 0.25],
            [24 * GIB, 0.2],
            [40 * GIB, 0.15],
            [78 * GIB, 0.15],
          ] as const)
        : pick(rand, [
            [40 * GIB, 0.3],
            [78 * GIB, 0.7],
          ] as const);
    // Log-normal: median 600 s, sigma 1.4; between 30 s and 8 h.
    const duration = Math.round(Math.min(8 * 3600, Math.max(30, 600 * Math.exp(1.4 * normal(rand)))));
    const gpuType =
      rand() < 0.2
        ? pick(rand, [
            ['A100', 0.5],
            ['H100', 0.5],
          ] as const)
        : '';
    const timeout = Math.ceil((duration * (1.2 + 2.8 * rand())) / 900) * 900;
    shapes.push({ arrival: 0, duration, gpuCount, gpuMemMiB, gpuType, timeout });
  }
  // Pace arrivals so the offered GPU memory-time is `load` of the fleet's.
  const work = shapes.reduce((s, j) => s + j.gpuCount * j.gpuMemMiB * j.duration, 0) / shapes.length;
  const rate = (o.load * o.fleetGpuMiB) / work;
  let t = 0;
  return shapes.map((j) => {
    t += -Math.log(1 - rand()) / rate;
    return { ...j, arrival: Math.round(t * 10) / 10 };
  });
}

const HEADER = 'arrival_s,duration_s,gpu_count,gpu_mem_mib,gpu_type';
/** Without a time limit, a job may run a week. */
const NO_LIMIT_S = 7 * 86400;

export function writeTrace(path: string, jobs: readonly TraceJob[]): void {
  const lines = [
    `${HEADER},timeout_s`,
    ...jobs.map((j) => `${j.arrival},${j.duration},${j.gpuCount},${j.gpuMemMiB},${j.gpuType},${j.timeout}`),
  ];
  writeFileSync(path, `${lines.join('\n')}\n`);
}

export function readTrace(path: string): TraceJob[] {
  const [header, ...rows] = readFileSync(path, 'utf8').trim().split('\n');
  const h = header?.trim();
  if (h !== HEADER && h !== `${HEADER},timeout_s`) throw new Error(`${path}: not a trace (bad header)`);
  return rows.map((row, i) => {
    const [arrival, duration, count, mem, type, timeout] = row.split(',');
    const j = {
      arrival: Number(arrival),
      duration: Number(duration),
      gpuCount: Number(count),
      gpuMemMiB: Number(mem),
      gpuType: (type ?? '').trim(),
      timeout: timeout === undefined || timeout.trim() === '' ? NO_LIMIT_S : Number(timeout),
    };
    if ([j.arrival, j.duration, j.gpuCount, j.gpuMemMiB, j.timeout].some((x) => !Number.isFinite(x)))
      throw new Error(`${path}:${i + 2}: not a trace row`);
    return j;
  });
}
