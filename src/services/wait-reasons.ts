import { hourlyRate } from '../domain/cost.js';
import { gpuFamilies } from '../domain/gpu.js';
import type { Accounting } from './accounting.js';
import type { JobRecord } from './job-model.js';
import type { NodeLive, NodeRecord } from './node-model.js';
import type { NodeRegistry } from './node-registry.js';

/** How many nodes that could hold a job the explanation looks at. */
const CANDIDATES = 500;

/**
 * Why a queued job is not running, in the words its owner needs: its owner is at the running
 * cap, no live node has that GPU type (or enough of them, or large enough), none matches its
 * node constraints, it pays too little, the only nodes that fit keep failing jobs at start, or
 * the nodes that fit are busy. Checked in that order against the live fleet.
 */
export class WaitReasons {
  constructor(
    private readonly nodes: NodeRegistry,
    private readonly accounting: Accounting,
  ) {}

  async explain(rec: JobRecord): Promise<string> {
    const r = rec.spec.requirements;
    const limits = await this.accounting.limits(rec.owner);
    if (limits.max_running_jobs !== null) {
      const running = await this.accounting.runningCount(rec.owner);
      if (running >= limits.max_running_jobs) {
        return `fair share: ${rec.owner} has ${running} jobs running, the cap is ${limits.max_running_jobs}`;
      }
    }

    const k = r.gpu_count;
    const families = k > 0 && r.gpu_type !== null ? gpuFamilies(r.gpu_type) : ['any'];
    const type = k > 0 && r.gpu_type !== null ? `${r.gpu_type} ` : '';
    let fleet = await this.nodes.nodesThatCouldHold(families, k, r.gpu_memory_mib, CANDIDATES);
    if (fleet.length === 0) {
      if (k === 0) return 'no live node is taking jobs';
      if (families[0] !== 'any') {
        const present = await Promise.all(families.map((f) => this.nodes.anyNodeWithFamily(f)));
        if (!present.some(Boolean)) return `no live node has a ${r.gpu_type} GPU`;
      }
      return `no live node has ${k} ${type}GPU${k > 1 ? 's' : ''} with ${r.gpu_memory_mib} MiB each`;
    }
    fleet = fleet.filter(({ record }) => record.cpu_cores >= r.cpu_cores && record.memory_total >= r.memory_mib);
    if (fleet.length === 0) return `no live node that has the GPUs also has ${r.cpu_cores} CPU cores and ${r.memory_mib} MiB RAM`;
    if (r.node_name !== null) {
      fleet = fleet.filter(({ record }) => record.node_name === r.node_name);
      if (fleet.length === 0) return `node ${r.node_name} is not live, or cannot hold this job`;
    }
    const selector = Object.entries(r.node_selector);
    if (selector.length > 0) {
      fleet = fleet.filter(({ record }) => selector.every(([key, v]) => record.labels[key] === v));
      if (fleet.length === 0)
        return `no live node that could hold it has the labels ${selector.map(([key, v]) => `${key}=${v}`).join(',')}`;
    }
    if (r.max_price_per_hour !== null) {
      const max = r.max_price_per_hour;
      const rates = fleet.map((n) => ({ n, rate: this.rateOn(rec, n.record) }));
      const affordable = rates.filter((x) => x.rate <= max + 1e-9);
      if (affordable.length === 0) {
        const cheapest = Math.min(...rates.map((x) => x.rate));
        return `price too low: it pays at most ${max}/h, the cheapest node that could run it costs ${cheapest}/h`;
      }
      fleet = affordable.map((x) => x.n);
    }
    const working = fleet.filter(({ live }) => !crashLooping(live));
    if (working.length === 0) return 'the only nodes that could run it keep failing jobs at start (crash loop)';
    return working.length === 1 ? 'the one node that could run it is busy' : `all ${working.length} nodes that could run it are busy`;
  }

  /** What the job would cost per hour on a node: on its largest GPUs of an accepted family. */
  private rateOn(rec: JobRecord, node: NodeRecord): number {
    const r = rec.spec.requirements;
    const families = r.gpu_type === null ? null : new Set(gpuFamilies(r.gpu_type));
    const totals = node.gpus
      .filter((g) => families === null || families.has(g.family))
      .map((g) => g.memory_total)
      .filter((t) => t >= r.gpu_memory_mib)
      .sort((a, b) => b - a)
      .slice(0, r.gpu_count);
    return hourlyRate(node, { gpuMemoryMiB: r.gpu_memory_mib, cpuCores: r.cpu_cores, memoryMiB: r.memory_mib }, totals);
  }
}

function crashLooping(live: NodeLive | null): boolean {
  return live?.health_reasons.some((reason) => reason.startsWith('crash loop')) ?? false;
}
