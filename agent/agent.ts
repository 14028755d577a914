import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { queueNameFor } from '../src/domain/queues.js';
import type { AgentConfig as ControlPlaneConfig } from '../src/domain/schemas/agent.js';
import type { HeartbeatBody } from '../src/domain/schemas/node.js';
import { openRedis, redisSpec } from '../src/redis/connection.js';
import { logConnectionErrors } from '../src/redis/error-log.js';
import { ApiClient, ApiError } from './api-client.js';
import { ClaimLoop, type NodeSelf } from './claim/claim-loop.js';
import { QueueHandle, type QueueInfo } from './claim/queue-handle.js';
import { WakeSource } from './claim/wake.js';
import type { AgentConfig } from './config.js';
import { CrashLoop } from './crash-loop.js';
import { type HostFacts, readHostFacts, readHostLive } from './discovery/host.js';
import { DockerExecutor } from './executor/docker.js';
import { ProcessExecutor } from './executor/process.js';
import { RegistryAuth } from './executor/registry-auth.js';
import type { Executor } from './executor/types.js';
import { StopReason } from './executor/types.js';
import { GpuMemoryWatch } from './gpu-memory.js';
import { GpuSource } from './gpus.js';
import { evaluateHealth } from './health.js';
import { Heartbeat } from './heartbeat.js';
import { type Identity, loadIdentity, saveIdentity } from './identity.js';
import { JobRunner } from './job-runner.js';
import { LockKeeper } from './locks/lock-keeper.js';
import { AgentMetrics, MetricsEndpoint } from './metrics.js';
import { ResourceBook } from './resources.js';

export const AGENT_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/**
 * One GPU server's agent: discovers the machine, registers (once; the identity is kept on disk),
 * heartbeats, claims the jobs that fit, runs them, and hands them back when it stops.
 */
export class Agent {
  private adminState: 'active' | 'cordoned' | 'draining' = 'active';
  /** Labels and prices as the API last said (an admin may change them), and owners at their cap. */
  private labels: Record<string, string> = {};
  private prices: [number, number, number] = [0, 0, 0];
  private capped = new Set<string>();
  /** Owners the API refused here since the last heartbeat answer. */
  private readonly cappedHere = new Set<string>();
  private healthy = true;
  private stopping = false;
  private readonly closers: (() => Promise<void> | void)[] = [];
  /** Resolves when the agent must stop on its own (its node was deleted). */
  readonly fatal: Promise<string>;
  readonly metrics: AgentMetrics;
  /** Where Prometheus scrapes this agent; null when turned off or its port was taken. */
  metricsUrl: string | null = null;
  private raiseFatal: (why: string) => void = () => {};

  private constructor(
    readonly config: AgentConfig,
    readonly logger: Logger,
  ) {
    this.fatal = new Promise((resolve) => {
      this.raiseFatal = resolve;
    });
    this.metrics = new AgentMetrics(config.node.name, config.metrics !== null);
  }

  identity!: Identity;
  executor!: Executor;
  resources!: ResourceBook;
  runner!: JobRunner;
  private claimLoop!: ClaimLoop;
  private memoryWatch!: GpuMemoryWatch;
  private heartbeat!: Heartbeat;

  /**
   * Starts an agent. `executor` replaces the one the configuration would choose: the simulator
   * and the benchmarks run jobs that only pretend (everything else is the real agent).
   */
  static async start(config: AgentConfig, logger: Logger, executor?: Executor): Promise<Agent> {
    const agent = new Agent(config, logger);
    agent.givenExecutor = executor;
    try {
      await agent.boot();
    } catch (err) {
      await agent.close();
      throw err;
    }
    return agent;
  }

  private async boot(): Promise<void> {
    const { config, logger } = this;
    const facts = await readHostFacts(config.diskPath);
    const gpus = await this.discoverGpus();
    this.executor = await this.chooseExecutor(gpus.mode === 'nvidia');
    // Plain HTTP to another machine was refused with the configuration (IMAGEPOD_ALLOW_INSECURE_API).
    const api = new ApiClient(config.apiUrl, logger, { caFile: config.apiCaFile });
    // Closers run last first: the API connections go after everything that reports.
    this.closers.push(() => api.close());
    const maxJobs = config.node.maxConcurrentJobs ?? Math.max(2, 2 * gpus.devices.length);
    const { identity, plane } = await this.identify(api, facts, gpus, maxJobs);
    this.identity = identity;
    const log = logger.child({ nodeId: identity.node_id });
    log.info({ gpus: gpus.devices.length, gpuMode: gpus.mode, executor: this.executor.kind, maxJobs }, 'agent ready');

    this.resources = new ResourceBook(gpus.devices, {
      cpuCores: facts.cpu_cores,
      memoryMiB: facts.memory_total,
      maxJobs,
      reservedCpuCores: config.node.reservedCpuCores,
      reservedMemoryMiB: config.node.reservedMemoryMiB,
      endAllowanceMs: config.claim.endAllowanceMs,
    });
    this.resources.updateLive((await gpus.read()).live);

    // Whatever containers this node left behind belong to jobs it no longer holds.
    await this.cleanupLeftovers();

    const queueRedis = openRedis(config.redis, 'worker', 'imagepod-agent');
    // Said once per change: a wrong CA or password would otherwise leave the agent silently waiting.
    logConnectionErrors([queueRedis], log);
    this.closers.push(() => queueRedis.disconnect());
    const queues = queuesToServe(plane, gpus.devices).map(
      (info) =>
        new QueueHandle(
          info,
          queueRedis,
          {
            lockDurationMs: config.locks.durationMs,
            stalledIntervalMs: config.locks.stalledIntervalMs,
            maxStalledCount: config.locks.maxStalledCount,
            workerName: `${config.node.name}/${identity.node_id}`,
          },
          log,
        ),
    );
    this.closers.push(() => Promise.all(queues.map((q) => q.close())).then(() => {}));

    const locks = new LockKeeper(
      {
        redis: redisSpec(config.redis, 'locks', 'imagepod-agent-locks'),
        lockDurationMs: config.locks.durationMs,
        watchdogMs: config.locks.watchdogMs,
      },
      log,
    );
    this.closers.push(() => locks.stop());
    const crashLoop = new CrashLoop(config.crashLoop.threshold, config.crashLoop.backoffMs);
    this.runner = new JobRunner({
      api,
      executor: this.executor,
      resources: this.resources,
      locks,
      crashLoop,
      nodeId: identity.node_id,
      logLines: plane.limits.log_lines,
      logger: log,
      onFreed: () => {
        this.claimLoop.wake();
        this.heartbeat.soon();
      },
      onRefused: (jobId, owner, code) => {
        if (code === 'fair_share') this.cappedHere.add(encodeURIComponent(owner));
        this.claimLoop.avoid(jobId);
      },
      // Until the next beat finds the runtime answering again (it wakes the claim loop then).
      onRuntimeAway: () => {
        this.healthy = false;
        this.heartbeat.soon();
      },
      onEnded: (status) => this.metrics.jobFinished(status),
    });
    this.memoryWatch = new GpuMemoryWatch(config.gpus.nvidiaSmi, this.executor, this.resources, config.gpuMemoryMargin, log);
    this.claimLoop = new ClaimLoop(
      queues,
      this.resources,
      () => this.self(),
      () => !this.stopping && this.adminState === 'active' && this.healthy && !crashLoop.backingOff,
      (claimed, placement) => {
        this.metrics.jobClaimed();
        this.runner.start(claimed, placement);
      },
      { ...config.claim, onScan: (seconds) => this.metrics.claimScanned(seconds) },
      log,
    );

    this.heartbeat = new Heartbeat({
      api,
      nodeId: identity.node_id,
      intervalMs: config.heartbeatIntervalMs ?? plane.heartbeat_interval_ms,
      collect: () => this.collect(gpus, crashLoop),
      onAck: (ack) => {
        this.metrics.heartbeatDelivered();
        const wasActive = this.adminState === 'active';
        this.adminState = ack.admin_state;
        this.labels = ack.labels;
        this.prices = [ack.price_per_gpu_hour, ack.price_per_cpu_core_hour, ack.price_per_gib_ram_hour];
        const capped = new Set(ack.capped_users.map((u) => encodeURIComponent(u)));
        const freed = [...this.capped].some((u) => !capped.has(u));
        this.capped = capped;
        this.cappedHere.clear();
        if (freed) this.claimLoop.wake();
        for (const id of ack.cancel_job_ids) this.runner.cancel(id);
        if (!wasActive && ack.admin_state === 'active') this.claimLoop.wake();
      },
      onForgotten: () => this.raiseFatal('the API no longer knows this node (was it deleted?)'),
      onFailed: () => this.metrics.heartbeatFailed(),
      logger: log,
    });
    this.closers.push(() => this.heartbeat.stop());
    await this.heartbeat.beat();
    this.heartbeat.start();

    const wake = new WakeSource(
      () => {
        const conn = openRedis(config.redis, 'blocking', 'imagepod-agent-wake');
        conn.on('error', () => {});
        return conn;
      },
      new Map(queues.map((q) => [q.name, q.eventsKey])),
      { onWake: () => this.claimLoop.wake(), onCancel: (jobId) => this.runner.cancel(jobId) },
      log,
      { perSlot: config.redis.kind === 'cluster' },
    );
    await wake.start();
    this.closers.push(() => wake.stop());
    for (const q of queues) await q.startStalledChecks();
    this.claimLoop.start();
    this.closers.push(() => this.claimLoop.stop());
    await this.serveMetrics(log);
  }

  /** `/metrics` for Prometheus. A port already taken costs the metrics, not the node's jobs. */
  private async serveMetrics(log: Logger): Promise<void> {
    const { resources, runner } = this;
    this.metrics.observe({
      runningJobs: () => runner.count,
      gpus: () =>
        resources.deviceList.map((d) => ({
          index: d.index,
          model: d.name,
          totalMiB: d.memoryTotal,
          freeMiB: resources.freeOn(d.index),
          reservedMiB: resources.reservedOn(d.index),
          utilization: resources.liveOf(d.index)?.utilization ?? null,
        })),
    });
    const at = this.config.metrics;
    if (at === null) return;
    try {
      const endpoint = await MetricsEndpoint.listen(this.metrics.registry, at.host, at.port);
      this.closers.push(() => endpoint.close());
      this.metricsUrl = endpoint.url;
      log.info({ url: endpoint.url }, 'serving metrics');
    } catch (err) {
      log.error(
        { err: (err as Error).message, host: at.host, port: at.port },
        'cannot serve metrics (IMAGEPOD_AGENT_METRICS_PORT); running without them',
      );
    }
  }

  private cleanupPending = false;

  /** Removes what jobs this node no longer holds left behind; with the runtime away, later. */
  private async cleanupLeftovers(): Promise<void> {
    try {
      await this.executor.cleanup(this.identity.node_id, new Set(this.runner?.jobIds ?? []));
      this.cleanupPending = false;
    } catch (err) {
      if (!this.cleanupPending)
        this.logger.warn({ err: (err as Error).message }, 'could not clean up old job containers; will when the runtime answers');
      this.cleanupPending = true;
    }
  }

  private self(): NodeSelf {
    return { name: this.config.node.name, labels: this.labels, prices: this.prices, capped: [...this.capped, ...this.cappedHere] };
  }

  private async discoverGpus(): Promise<GpuSource> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await GpuSource.discover(this.config.gpus.nvidiaSmi, this.config.gpus.simulated);
      } catch (err) {
        this.logger.error({ err: (err as Error).message, attempt }, 'GPU discovery failed; retrying in 10 s');
        await sleep(10_000);
      }
    }
  }

  private givenExecutor: Executor | undefined;

  private async chooseExecutor(realGpus: boolean): Promise<Executor> {
    if (this.givenExecutor !== undefined) return this.givenExecutor;
    const c = this.config;
    const process = () =>
      new ProcessExecutor(
        { workDir: c.workDir, outputMaxBytes: c.outputMaxBytes, stopGraceSeconds: c.docker.stopGraceSeconds },
        this.logger,
      );
    if (c.executor === 'process') return process();
    const docker = new DockerExecutor(
      {
        host: c.docker.host,
        network: c.docker.network,
        pullPolicy: c.docker.pullPolicy,
        pidsLimit: c.docker.pidsLimit,
        stopGraceSeconds: c.docker.stopGraceSeconds,
        outputMaxBytes: c.outputMaxBytes,
        gpuDeviceRequests: c.gpus.deviceRequests === 'on' || (c.gpus.deviceRequests === 'auto' && realGpus),
      },
      await RegistryAuth.load(c.docker.registryAuthFile, c.docker.registrySecretsFile),
      this.logger,
    );
    if (c.executor === 'docker') return docker;
    const health = await docker.health();
    if (health.ok) return docker;
    this.logger.warn({ reason: health.reason }, 'no Docker engine answers: running jobs as local processes');
    return process();
  }

  /** The identity on disk, checked with the API; or a new registration. */
  private async identify(
    api: ApiClient,
    facts: HostFacts,
    gpus: GpuSource,
    maxJobs: number,
  ): Promise<{ identity: Identity; plane: ControlPlaneConfig }> {
    const c = this.config;
    const saved = await loadIdentity(c.stateDir);
    if (saved !== null) {
      api.setApiKey(saved.api_key);
      try {
        return {
          identity: saved,
          plane: await api.config(saved.agent_id, { deadlineMs: Number.POSITIVE_INFINITY, failOnCertificateError: true }),
        };
      } catch (err) {
        if (!(err instanceof ApiError && (err.status === 401 || err.status === 404))) throw err;
        this.logger.warn({ nodeId: saved.node_id }, 'the API no longer knows the saved identity (node deleted?): registering again');
      }
    }
    if (c.registrationToken === undefined) {
      throw new Error(`no identity in ${c.stateDir} and no IMAGEPOD_REGISTRATION_TOKEN to register with`);
    }
    const reg = await api
      .register(
        {
          agent_name: c.node.name,
          agent_version: AGENT_VERSION,
          executor: this.executor.kind,
          node: {
            node_name: c.node.name,
            hostname: safeHostname(facts.hostname),
            gpu_count: gpus.devices.length,
            gpus: gpus.devices.map((d) => ({
              index: d.index,
              ...(d.uuid !== null && { uuid: d.uuid }),
              name: d.name,
              memory_total: d.memoryTotal,
            })),
            cpu_cores: facts.cpu_cores,
            memory_total: facts.memory_total,
            ...(facts.disk_total !== null && { disk_total: facts.disk_total }),
            max_concurrent_jobs: maxJobs,
            labels: { ...c.node.labels },
            price_per_gpu_hour: c.node.pricePerGpuHour,
            price_per_cpu_core_hour: c.node.pricePerCpuCoreHour,
            price_per_gib_ram_hour: c.node.pricePerGibRamHour,
            os: facts.os,
            simulated_gpus: gpus.mode === 'simulated',
          },
        },
        c.registrationToken,
      )
      .catch((err: unknown) => {
        if (err instanceof ApiError && err.code === 'node_name_taken') {
          throw new Error(`${err.message}. Set IMAGEPOD_NODE_NAME to another name, or delete the old node.`);
        }
        throw err;
      });
    const identity: Identity = {
      node_id: reg.node_id,
      agent_id: reg.agent_id,
      api_key: reg.api_key,
      api_url: c.apiUrl,
      registered_at: new Date().toISOString(),
    };
    await saveIdentity(c.stateDir, identity);
    api.setApiKey(reg.api_key);
    this.logger.info({ nodeId: reg.node_id, agentId: reg.agent_id }, 'registered');
    return { identity, plane: reg.config };
  }

  private async collect(gpus: GpuSource, crashLoop: CrashLoop): Promise<HeartbeatBody> {
    const reading = await gpus.read();
    this.resources.updateLive(reading.live);
    const [host, runtime] = await Promise.all([readHostLive(this.config.diskPath), this.executor.health()]);
    const health = evaluateHealth({
      gpuProblem: reading.problem,
      gpus: reading.live,
      runtime,
      diskFreeMiB: host.disk_available,
      diskMinFreeMiB: this.config.diskMinFreeMiB,
      diskPath: this.config.diskPath,
      crashLoop: crashLoop.reason,
    });
    if (runtime.ok && this.cleanupPending) await this.cleanupLeftovers();
    if (gpus.mode === 'nvidia') {
      for (const o of await this.memoryWatch.overLimit(this.runner.jobIds)) {
        this.runner.stopFor(
          o.jobId,
          StopReason.GpuMemoryExceeded,
          `uses ${o.usedMiB} MiB on GPU ${o.device}, more than the ${o.limitMiB} MiB allowed`,
        );
      }
    }
    const wasHealthy = this.healthy;
    this.healthy = health.status !== 'unhealthy';
    if (!wasHealthy && this.healthy) setImmediate(() => this.claimLoop.wake());
    return {
      gpus: this.resources.deviceList.map((d) => {
        const l = this.resources.liveOf(d.index);
        return {
          index: d.index,
          memory_free: this.resources.freeOn(d.index),
          ...(l?.memoryUsed != null && { memory_used: l.memoryUsed }),
          ...(l?.utilization != null && { utilization: l.utilization }),
          ...(l?.temperature != null && { temperature: l.temperature }),
          healthy: l?.healthy ?? true,
          ...(l?.error != null && { error: l.error.slice(0, 500) }),
        };
      }),
      cpu_cores_available: this.resources.cpuFree,
      memory_available: Math.min(this.resources.memoryFree, host.memory_available),
      ...(host.disk_available !== null && { disk_available: host.disk_available }),
      current_jobs: this.runner.count,
      running_job_ids: this.runner.jobIds,
      health_status: health.status,
      health_reasons: health.reasons,
    };
  }

  /**
   * Stops claiming, lets running jobs finish for up to the grace period, then stops the rest and
   * hands them back to the queue, and says goodbye with a last heartbeat.
   */
  async stop(graceMs = this.config.shutdownGraceMs): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.claimLoop?.stop();
    this.logger.info({ running: this.runner?.count ?? 0, graceMs }, 'stopping: no new jobs; running ones get the grace period');
    if (this.runner) await this.runner.shutdown(graceMs);
    // A last beat says the node has no jobs; it does not hold up the stop.
    await Promise.race([this.heartbeat?.beat().catch(() => {}), sleep(5000)]);
    await this.close();
  }

  private async close(): Promise<void> {
    for (const c of this.closers.reverse()) {
      try {
        await c();
      } catch {
        /* closing anyway */
      }
    }
  }
}

/** The tier queues this node could serve (CPU, and GPU tiers its GPUs can hold), and their per-family queues. */
function queuesToServe(plane: ControlPlaneConfig, devices: readonly { family: string; memoryTotal: number }[]): QueueInfo[] {
  const maxDevice = Math.max(0, ...devices.map((d) => d.memoryTotal));
  const families = [...new Set(devices.map((d) => d.family))];
  const out: QueueInfo[] = [];
  for (const t of plane.tiers) {
    if (t.kind === 'gpu' && (devices.length === 0 || t.min_gpu_memory_mib > maxDevice)) continue;
    const base = { tier: t.name, prefix: t.queue_prefix, maxGpuMemoryMiB: t.max_gpu_memory_mib };
    out.push({ ...base, name: t.queue_name });
    if (t.kind === 'gpu') for (const f of families) out.push({ ...base, name: queueNameFor(t.queue_name, [f]) });
  }
  return out;
}

function safeHostname(h: string): string {
  const clean = (h || hostname()).replace(/[^A-Za-z0-9.-]/g, '-').replace(/^[-.]+|[-.]+$/g, '');
  return clean === '' ? 'unknown-host' : clean.slice(0, 253);
}
