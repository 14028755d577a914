import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const MIB = 1024 * 1024;
const SCAN_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** One GPU as the agent books it. */
export interface AgentGpu {
  readonly index: number;
  readonly model: string;
  readonly totalMiB: number;
  /** What a new job could have: the total less what running jobs declared, at most what the driver says is free. */
  readonly freeMiB: number;
  /** What running jobs declared on it. */
  readonly reservedMiB: number;
  /** Percent, as nvidia-smi reports it; null when unknown (simulated GPUs). */
  readonly utilization: number | null;
}

/** What the gauges read when Prometheus scrapes. */
export interface AgentState {
  runningJobs(): number;
  gpus(): readonly AgentGpu[];
}

/**
 * The agent's Prometheus metrics, in a registry of its own (tests run several agents in one
 * process). Every series carries the node's name as `node`, so they join the API's.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private state: AgentState | null = null;
  private readonly claimed: Counter;
  private readonly finished: Counter<'status'>;
  private readonly heartbeatLast: Gauge;
  private readonly heartbeatFailures: Counter;
  private readonly claimScan: Histogram;

  /** `processMetrics`: Node's own (CPU, memory, event loop), only worth their upkeep when served. */
  constructor(nodeName: string, processMetrics: boolean) {
    this.registry.setDefaultLabels({ node: nodeName });
    if (processMetrics) collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    this.claimed = new Counter({ name: 'imagepod_agent_jobs_claimed_total', help: 'Jobs this agent claimed from the queues', registers });
    this.finished = new Counter({
      name: 'imagepod_agent_jobs_finished_total',
      help: 'Jobs that ended on this agent, by how they ended (hand-backs at shutdown are not counted)',
      labelNames: ['status'],
      registers,
    });
    this.heartbeatLast = new Gauge({
      name: 'imagepod_agent_heartbeat_last_success_timestamp_seconds',
      help: 'When the API last accepted a heartbeat (Unix time)',
      registers,
    });
    this.heartbeatFailures = new Counter({
      name: 'imagepod_agent_heartbeat_failures_total',
      help: 'Heartbeats the API did not accept (or that did not reach it)',
      registers,
    });
    this.claimScan = new Histogram({
      name: 'imagepod_agent_claim_scan_seconds',
      help: 'One look at every queue this node serves for the jobs that fit it',
      buckets: SCAN_BUCKETS,
      registers,
    });
    const metrics = this;
    const fromState = <L extends string>(fill: (g: Gauge<L>, s: AgentState) => void) =>
      function (this: Gauge<L>): void {
        this.reset();
        if (metrics.state !== null) fill(this, metrics.state);
      };
    new Gauge({
      name: 'imagepod_agent_running_jobs',
      help: 'Jobs this agent runs now',
      registers,
      collect: fromState((g, s) => g.set(s.runningJobs())),
    });
    const perGpu = (name: string, help: string, value: (gpu: AgentGpu) => number) =>
      new Gauge({
        name,
        help,
        labelNames: ['gpu', 'model'],
        registers,
        collect: fromState<'gpu' | 'model'>((g, s) => {
          for (const gpu of s.gpus()) g.set({ gpu: String(gpu.index), model: gpu.model }, value(gpu));
        }),
      });
    perGpu('imagepod_agent_gpu_memory_total_bytes', 'Memory of each GPU', (g) => g.totalMiB * MIB);
    perGpu('imagepod_agent_gpu_memory_free_bytes', 'GPU memory a new job could have (what the heartbeat reports)', (g) => g.freeMiB * MIB);
    perGpu('imagepod_agent_gpu_memory_reserved_bytes', 'GPU memory the running jobs declared', (g) => g.reservedMiB * MIB);
    new Gauge({
      name: 'imagepod_agent_gpu_utilization_ratio',
      help: 'GPU utilization, 0 to 1, as nvidia-smi last reported it',
      labelNames: ['gpu'],
      registers,
      collect: fromState<'gpu'>((g, s) => {
        for (const gpu of s.gpus()) if (gpu.utilization !== null) g.set({ gpu: String(gpu.index) }, gpu.utilization / 100);
      }),
    });
  }

  /** Gives the gauges what they read (the agent's books exist once it has booted). */
  observe(state: AgentState): void {
    this.state = state;
  }

  jobClaimed(): void {
    this.claimed.inc();
  }

  jobFinished(status: string): void {
    this.finished.inc({ status });
  }

  heartbeatDelivered(atMs = Date.now()): void {
    this.heartbeatLast.set(atMs / 1000);
  }

  heartbeatFailed(): void {
    this.heartbeatFailures.inc();
  }

  claimScanned(seconds: number): void {
    this.claimScan.observe(seconds);
  }
}

/** `GET /metrics` on a small HTTP server of the agent's own (it serves nothing else). */
export class MetricsEndpoint {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async listen(registry: Registry, host: string, port: number): Promise<MetricsEndpoint> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'GET' || path !== '/metrics') {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found: try GET /metrics\n');
        return;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' }).end(text),
        () => res.writeHead(500, { 'Content-Type': 'text/plain' }).end('metrics unavailable\n'),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    return new MetricsEndpoint(server, `http://${shown}:${address.port}/metrics`);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
