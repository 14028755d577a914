import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The API's Prometheus metrics. Each API server has its own registry (tests run several servers
 * in one process, and the global registry would mix them). Counters and histograms are recorded
 * as things happen, by the services; gauges are read from Redis when Prometheus scrapes.
 *
 * Several API replicas report the same queues and nodes (they share Redis): aggregate those with
 * `max`, not `sum`. Counters and histograms are per replica: `sum` them.
 */

const MIB = 1024 * 1024;

/** The BullMQ job states reported per queue. ImagePod gives every job a priority, so waiting jobs show as `prioritized`. */
export const QUEUE_STATES = ['waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed'] as const;
export type QueueState = (typeof QUEUE_STATES)[number];

/** What the job services record. */
export interface JobMetrics {
  jobsSubmitted(tier: string, count: number): void;
  /** An attempt started: from the job's submission to its start. */
  jobStarted(tier: string, createdAtMs: number, startedAtMs: number): void;
  /** A final status applied; `startedAtMs` is null for a job that never ran. */
  jobFinished(tier: string, status: string, startedAtMs: number | null, finishedAtMs: number): void;
}

export const NO_JOB_METRICS: JobMetrics = {
  jobsSubmitted: () => {},
  jobStarted: () => {},
  jobFinished: () => {},
};

export interface QueueDepth {
  readonly tier: string;
  readonly queue: string;
  readonly counts: Readonly<Partial<Record<QueueState, number>>>;
}

export interface FleetNode {
  /** The node's name (unique in the fleet), else its id. */
  readonly name: string;
  readonly lastHeartbeatMs: number | null;
  /** Only GPUs whose free memory is known (the node heartbeats). */
  readonly gpus: readonly { readonly index: number; readonly totalMiB: number; readonly freeMiB: number }[];
}

export interface Fleet {
  readonly byStatus: Readonly<Record<string, number>>;
  /** The nodes that get per-node series: a bounded number of them. */
  readonly nodes: readonly FleetNode[];
}

/** Where the scrape-time gauges read from. */
export interface MetricSources {
  readonly nodeStatuses: readonly string[];
  queueDepths(): Promise<QueueDepth[]>;
  /** Queued jobs and the GPU memory they ask for (memory per GPU times GPU count), per tier. */
  pendingByTier(): Promise<Record<string, { jobs: number; gpu_memory_mib: number }>>;
  fleet(): Promise<Fleet>;
}

const SUBMIT_TO_START_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];
const RUN_BUCKETS = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400, 259200, 604800];

export class ApiMetrics implements JobMetrics {
  readonly registry = new Registry();
  private sources: MetricSources | null = null;
  private readonly submitted: Counter<'tier'>;
  private readonly started: Counter<'tier'>;
  private readonly finished: Counter<'tier' | 'status'>;
  private readonly submitToStart: Histogram<'tier'>;
  private readonly runTime: Histogram<'tier' | 'status'>;
  private readonly http: Histogram<'method' | 'route' | 'status_code'>;
  private readonly collectErrors: Counter<'collector'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.submitted = new Counter({ name: 'imagepod_jobs_submitted_total', help: 'Jobs submitted', labelNames: ['tier'], registers });
    this.started = new Counter({
      name: 'imagepod_jobs_started_total',
      help: 'Job attempts that started running',
      labelNames: ['tier'],
      registers,
    });
    this.finished = new Counter({
      name: 'imagepod_jobs_finished_total',
      help: 'Jobs that reached a final status',
      labelNames: ['tier', 'status'],
      registers,
    });
    this.submitToStart = new Histogram({
      name: 'imagepod_job_submit_to_start_seconds',
      help: 'From a job’s submission to the start of an attempt',
      labelNames: ['tier'],
      buckets: SUBMIT_TO_START_BUCKETS,
      registers,
    });
    this.runTime = new Histogram({
      name: 'imagepod_job_run_seconds',
      help: 'How long a job’s last attempt ran, by its final status',
      labelNames: ['tier', 'status'],
      buckets: RUN_BUCKETS,
      registers,
    });
    this.http = new Histogram({
      name: 'imagepod_http_request_duration_seconds',
      help: 'HTTP requests by route pattern',
      labelNames: ['method', 'route', 'status_code'],
      registers,
    });
    this.collectErrors = new Counter({
      name: 'imagepod_metrics_collect_errors_total',
      help: 'Scrape-time reads that failed (their gauges are left out of that scrape)',
      labelNames: ['collector'],
      registers,
    });
    this.defineGauges(registers);
  }

  /** Gives the scrape-time gauges their sources (the services exist after the metrics). */
  observe(sources: MetricSources): void {
    this.sources = sources;
  }

  jobsSubmitted(tier: string, count: number): void {
    this.submitted.inc({ tier }, count);
  }

  jobStarted(tier: string, createdAtMs: number, startedAtMs: number): void {
    this.started.inc({ tier });
    if (createdAtMs > 0 && startedAtMs >= createdAtMs) this.submitToStart.observe({ tier }, (startedAtMs - createdAtMs) / 1000);
  }

  jobFinished(tier: string, status: string, startedAtMs: number | null, finishedAtMs: number): void {
    this.finished.inc({ tier, status });
    if (startedAtMs !== null && startedAtMs > 0 && finishedAtMs >= startedAtMs) {
      this.runTime.observe({ tier, status }, (finishedAtMs - startedAtMs) / 1000);
    }
  }

  httpRequest(method: string, route: string, statusCode: number, seconds: number): void {
    this.http.observe({ method, route, status_code: String(statusCode) }, seconds);
  }

  private defineGauges(registers: Registry[]): void {
    const fleet = shared(() => this.need().fleet());
    const pending = shared(() => this.need().pendingByTier());
    // A gauge's values are rebuilt at each scrape, so a node or queue that went away leaves no series.
    const metrics = this;
    const guarded = <L extends string>(collector: string, fill: (g: Gauge<L>, s: MetricSources) => Promise<void>) =>
      async function (this: Gauge<L>): Promise<void> {
        this.reset();
        if (metrics.sources === null) return;
        try {
          await fill(this, metrics.sources);
        } catch {
          this.reset();
          metrics.collectErrors.inc({ collector });
        }
      };

    new Gauge({
      name: 'imagepod_queue_jobs',
      help: 'Jobs in each BullMQ queue by state (waiting jobs are `prioritized`: every ImagePod job has a priority)',
      labelNames: ['tier', 'queue', 'state'],
      registers,
      collect: guarded<'tier' | 'queue' | 'state'>('queues', async (queueJobs, s) => {
        for (const q of await s.queueDepths()) {
          for (const state of QUEUE_STATES) queueJobs.set({ tier: q.tier, queue: q.queue, state }, q.counts[state] ?? 0);
        }
      }),
    });

    new Gauge({
      name: 'imagepod_queue_pending_jobs',
      help: 'Jobs queued and not yet taken by a node, per tier',
      labelNames: ['tier'],
      registers,
      collect: guarded<'tier'>('pending', async (g) => {
        for (const [tier, p] of Object.entries(await pending())) g.set({ tier }, p.jobs);
      }),
    });
    new Gauge({
      name: 'imagepod_queue_pending_gpu_memory_bytes',
      help: 'GPU memory the queued jobs of each tier ask for (memory per GPU times GPU count)',
      labelNames: ['tier'],
      registers,
      collect: guarded<'tier'>('pending', async (g) => {
        for (const [tier, p] of Object.entries(await pending())) g.set({ tier }, p.gpu_memory_mib * MIB);
      }),
    });

    new Gauge({
      name: 'imagepod_nodes',
      help: 'Registered nodes by status',
      labelNames: ['status'],
      registers,
      collect: guarded<'status'>('nodes', async (nodes, s) => {
        const f = await fleet();
        for (const status of s.nodeStatuses) nodes.set({ status }, f.byStatus[status] ?? 0);
      }),
    });
    new Gauge({
      name: 'imagepod_node_gpu_memory_total_bytes',
      help: 'GPU memory per device of nodes that heartbeat',
      labelNames: ['node', 'gpu'],
      registers,
      collect: guarded<'node' | 'gpu'>('nodes', async (gpuTotal) => {
        for (const n of (await fleet()).nodes)
          for (const g of n.gpus) gpuTotal.set({ node: n.name, gpu: String(g.index) }, g.totalMiB * MIB);
      }),
    });
    new Gauge({
      name: 'imagepod_node_gpu_memory_free_bytes',
      help: 'GPU memory free for new jobs per device, as the node last reported',
      labelNames: ['node', 'gpu'],
      registers,
      collect: guarded<'node' | 'gpu'>('nodes', async (gpuFree) => {
        for (const n of (await fleet()).nodes) for (const g of n.gpus) gpuFree.set({ node: n.name, gpu: String(g.index) }, g.freeMiB * MIB);
      }),
    });
    new Gauge({
      name: 'imagepod_node_heartbeat_age_seconds',
      help: 'Time since each node’s last heartbeat',
      labelNames: ['node'],
      registers,
      collect: guarded<'node'>('nodes', async (heartbeatAge) => {
        const now = Date.now();
        for (const n of (await fleet()).nodes) {
          if (n.lastHeartbeatMs !== null) heartbeatAge.set({ node: n.name }, Math.max(0, (now - n.lastHeartbeatMs) / 1000));
        }
      }),
    });
  }

  private need(): MetricSources {
    if (this.sources === null) throw new Error('metrics have no sources yet');
    return this.sources;
  }
}

/**
 * One read shared by the callers that come while it runs: the gauges of one scrape, which
 * prom-client collects all at once, see the same snapshot, and the next scrape reads afresh.
 */
function shared<T>(read: () => Promise<T>): () => Promise<T> {
  let running: Promise<T> | null = null;
  return () => {
    if (running === null) {
      running = read().finally(() => {
        running = null;
      });
    }
    return running;
  };
}
