import { gpuFamilies } from '../../src/domain/gpu.js';
import { familyOf, type SimNodeSpec } from './fleet.js';
import type { TraceJob } from './trace.js';

/**
 * The offline bound: the same fleet and trace placed by an omniscient central scheduler that,
 * whenever a job arrives or ends, places waiting jobs largest first (best-fit decreasing), each
 * on the devices that strand the least memory. Event-driven, so no claim latency at all.
 */
export interface Placed {
  readonly job: number;
  readonly start: number;
}

export interface SimState {
  /** free[node][device] MiB */
  readonly free: number[][];
}

interface Running {
  readonly end: number;
  readonly node: number;
  readonly devices: number[];
  readonly mib: number;
}

/** Best fit of a job on one node: device indices and stranded MiB, or null. */
export function fitOnNode(job: TraceJob, spec: SimNodeSpec, free: readonly number[]): { devices: number[]; stranded: number } | null {
  if (job.gpuType !== '' && !gpuFamilies(job.gpuType).includes(familyOf(spec.model))) return null;
  const fitting = free
    .map((f, d) => ({ d, f }))
    .filter((x) => x.f >= job.gpuMemMiB)
    .sort((a, b) => a.f - b.f)
    .slice(0, job.gpuCount);
  if (fitting.length < job.gpuCount) return null;
  return { devices: fitting.map((x) => x.d), stranded: fitting.reduce((s, x) => s + x.f - job.gpuMemMiB, 0) };
}

export function simulateBfd(fleet: readonly SimNodeSpec[], trace: readonly TraceJob[], sampleEvery: number) {
  const free = fleet.map((n) => Array.from({ length: n.gpus }, () => n.mib));
  const total = fleet.reduce((s, n) => s + n.gpus * n.mib, 0);
  const starts = new Array<number>(trace.length).fill(Number.NaN);
  const running: Running[] = [];
  const waiting: number[] = [];
  const samples: { t: number; allocated: number; stranded: number }[] = [];
  let next = 0;
  let t = 0;
  let nextSample = 0;
  const allocated = () => total - free.reduce((s, n) => s + n.reduce((a, b) => a + b, 0), 0);
  const stranded = () => {
    if (waiting.length === 0) return 0;
    let s = 0;
    for (const [i, spec] of fleet.entries()) {
      const f = free[i] as number[];
      if (!waiting.some((w) => fitOnNode(trace[w] as TraceJob, spec, f) !== null)) s += f.reduce((a, b) => a + b, 0);
    }
    return s;
  };
  const schedule = () => {
    waiting.sort((a, b) => {
      const ja = trace[a] as TraceJob;
      const jb = trace[b] as TraceJob;
      return jb.gpuCount * jb.gpuMemMiB - ja.gpuCount * ja.gpuMemMiB || ja.arrival - jb.arrival;
    });
    for (let w = 0; w < waiting.length; ) {
      const idx = waiting[w] as number;
      const job = trace[idx] as TraceJob;
      let best: { node: number; devices: number[]; stranded: number } | null = null;
      for (const [i, spec] of fleet.entries()) {
        const fit = fitOnNode(job, spec, free[i] as number[]);
        if (fit && (best === null || fit.stranded < best.stranded)) best = { node: i, ...fit };
      }
      if (best === null) {
        w++;
        continue;
      }
      for (const d of best.devices) (free[best.node] as number[])[d] = ((free[best.node] as number[])[d] as number) - job.gpuMemMiB;
      running.push({ end: t + job.duration, node: best.node, devices: best.devices, mib: job.gpuMemMiB });
      starts[idx] = t;
      waiting.splice(w, 1);
    }
  };
  while (next < trace.length || running.length > 0 || waiting.length > 0) {
    const nextArrival = next < trace.length ? (trace[next] as TraceJob).arrival : Number.POSITIVE_INFINITY;
    const nextEnd = running.reduce((m, r) => Math.min(m, r.end), Number.POSITIVE_INFINITY);
    const tNext = Math.min(nextArrival, nextEnd);
    if (!Number.isFinite(tNext)) break;
    while (nextSample <= tNext) {
      samples.push({ t: nextSample, allocated: allocated() / total, stranded: stranded() / total });
      nextSample += sampleEvery;
    }
    t = tNext;
    for (let i = running.length - 1; i >= 0; i--) {
      const r = running[i] as Running;
      if (r.end <= t) {
        for (const d of r.devices) (free[r.node] as number[])[d] = ((free[r.node] as number[])[d] as number) + r.mib;
        running.splice(i, 1);
      }
    }
    while (next < trace.length && (trace[next] as TraceJob).arrival <= t) waiting.push(next++);
    schedule();
  }
  return { starts, samples };
}
