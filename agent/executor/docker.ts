import { randomBytes } from 'node:crypto';
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import type { Logger } from 'pino';
import { pack } from 'tar-stream';
import { JobEndReason } from '../../src/domain/job-status.js';
import type { PullPolicy } from '../config.js';
import { collectFromTar } from '../output.js';
import { EngineAwayError, engineAway, engineBack, engineGoingAway, killSignals, Leftovers } from './docker-engine.js';
import { jobEnv } from './env.js';
import { LineSplitter } from './lines.js';
import type { RegistryAuth } from './registry-auth.js';
import {
  EndStatus,
  type ExecutionHooks,
  type ExecutionRequest,
  type ExecutionResult,
  type Executor,
  stoppedResult,
  stopReasonOf,
} from './types.js';

export const LABEL = {
  managed: 'imagepod.managed',
  jobId: 'imagepod.job-id',
  nodeId: 'imagepod.node-id',
} as const;

const IN_CONTAINER = { inputFile: '/imagepod/input.json', outputDir: '/imagepod/output' } as const;

export interface DockerExecutorOptions {
  /** `unix:///var/run/docker.sock`, `/path/to/docker.sock` or `tcp://host:2375`; default the local socket. */
  readonly host: string | undefined;
  readonly network: string;
  readonly pullPolicy: PullPolicy;
  readonly pidsLimit: number;
  readonly stopGraceSeconds: number;
  readonly outputMaxBytes: number;
  /** Pass GPUs as DeviceRequests to the NVIDIA runtime (real GPUs), or only name them in the environment (simulated). */
  readonly gpuDeviceRequests: boolean;
}

export function dockerFromHost(host: string | undefined): Docker {
  if (host === undefined || host === '') return new Docker();
  if (host.startsWith('unix://')) return new Docker({ socketPath: host.slice('unix://'.length) });
  if (host.startsWith('/')) return new Docker({ socketPath: host });
  const u = new URL(host.replace(/^tcp:/, 'http:'));
  return new Docker({ host: u.hostname, port: Number(u.port || 2375), protocol: u.protocol === 'https:' ? 'https' : 'http' });
}

/**
 * Runs each job in its own container: pulled with progress, limited (memory without swap, CPU,
 * pids), all capabilities dropped, no new privileges, never privileged, no host paths, only the
 * GPUs it was given. Input goes in and results come out through the Docker API (no bind mounts).
 * The container is always removed.
 */
export class DockerExecutor implements Executor {
  readonly kind = 'docker';
  readonly docker: Docker;
  private readonly leftovers = new Leftovers();
  /**
   * Aborted when a health check finds the engine away: a container's wait is a long request that
   * an engine killed outright may leave hanging instead of failing.
   */
  private engineGone = new AbortController();

  constructor(
    private readonly opts: DockerExecutorOptions,
    private readonly auth: RegistryAuth,
    private readonly logger: Logger,
  ) {
    this.docker = dockerFromHost(opts.host);
  }

  async health(): Promise<{ ok: true } | { ok: false; reason: string }> {
    try {
      await Promise.race([this.docker.ping(), sleep(3000).then(() => Promise.reject(new Error('no answer within 3 s')))]);
      if (this.engineGone.signal.aborted) this.engineGone = new AbortController();
      void this.leftovers.sweep(this.docker, this.logger);
      return { ok: true };
    } catch (err) {
      this.engineGone.abort(new EngineAwayError(err));
      return { ok: false, reason: `Docker engine unreachable: ${(err as Error).message}` };
    }
  }

  async run(req: ExecutionRequest, hooks: ExecutionHooks, stop: AbortSignal): Promise<ExecutionResult> {
    const result = (r: Partial<ExecutionResult> & Pick<ExecutionResult, 'status'>): ExecutionResult => ({
      exitCode: null,
      reason: null,
      message: null,
      output: null,
      stoppedFor: null,
      failedToStart: false,
      startedAt: null,
      finishedAt: Date.now(),
      ...r,
    });

    // The engine away before the job started is not the job's failure: the agent hands it back.
    const engineUnavailable = (err: unknown) =>
      result({
        status: EndStatus.Failed,
        reason: JobEndReason.EngineUnavailable,
        message: err instanceof EngineAwayError ? err.message : `the Docker engine is not answering: ${dockerMessage(err)}`,
        failedToStart: true,
      });
    let pulled: string | null;
    try {
      pulled = await this.ensureImage(req, hooks, stop);
    } catch (err) {
      if (err instanceof EngineAwayError) return engineUnavailable(err);
      throw err;
    }
    if (pulled !== null) {
      if (stop.aborted) return result({ status: EndStatus.Cancelled, reason: stopReasonOf(stop), stoppedFor: stopReasonOf(stop) });
      return result({ status: EndStatus.Failed, reason: JobEndReason.ImagePullFailed, message: pulled });
    }
    if (stop.aborted) return result({ status: EndStatus.Cancelled, reason: stopReasonOf(stop), stoppedFor: stopReasonOf(stop) });

    let container: Docker.Container;
    try {
      container = await this.docker.createContainer(this.createOptions(req));
    } catch (err) {
      if (engineAway(err)) return engineUnavailable(err);
      return result({
        status: EndStatus.Failed,
        reason: 'start_failed',
        message: `could not create the container: ${dockerMessage(err)}`,
        failedToStart: true,
      });
    }
    try {
      return await this.runContainer(container, req, hooks, stop, result);
    } finally {
      await container.remove({ force: true, v: true }).catch((err: unknown) => {
        if (engineAway(err)) return this.leftovers.add(container.id);
        if (statusOf(err) !== 404) this.logger.warn({ jobId: req.jobId, err: dockerMessage(err) }, 'could not remove a job container');
      });
    }
  }

  private createOptions(req: ExecutionRequest): Docker.ContainerCreateOptions {
    const gpus = req.gpuIndices.map(String);
    const env: Record<string, string> = {
      ...jobEnv(req, IN_CONTAINER),
      // Always ours, over the job's env and the image's ENV: where the NVIDIA runtime is the
      // engine's default runtime it gives a container the GPUs this variable names, and CUDA
      // images say `all`. `void` means none.
      NVIDIA_VISIBLE_DEVICES: gpus.length > 0 ? gpus.join(',') : 'void',
    };
    // Simulated GPUs: no runtime renumbers the devices, so name them for CUDA as well.
    if (!this.opts.gpuDeviceRequests) env.CUDA_VISIBLE_DEVICES = gpus.join(',');
    const memoryBytes = req.memoryMiB * 1024 * 1024;
    return {
      name: `imagepod-${req.jobId.slice(0, 8)}-${randomBytes(3).toString('hex')}`,
      Image: req.image,
      ...(req.command !== null && { Entrypoint: [...req.command] }),
      ...(req.args !== null && { Cmd: [...req.args] }),
      Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
      Labels: { [LABEL.managed]: 'true', [LABEL.jobId]: req.jobId, [LABEL.nodeId]: req.nodeId },
      AttachStdout: true,
      AttachStderr: true,
      Tty: false,
      OpenStdin: false,
      HostConfig: {
        ...(memoryBytes > 0 && { Memory: memoryBytes, MemorySwap: memoryBytes }),
        NanoCpus: Math.round(req.cpuCores * 1e9),
        PidsLimit: this.opts.pidsLimit,
        CapDrop: ['ALL'],
        SecurityOpt: ['no-new-privileges'],
        Privileged: false,
        // Its own IPC namespace whatever the engine's default-ipc-mode: no shared memory with other jobs.
        IpcMode: 'private',
        NetworkMode: this.opts.network,
        ...(this.opts.gpuDeviceRequests &&
          gpus.length > 0 && { DeviceRequests: [{ Driver: 'nvidia', DeviceIDs: gpus, Capabilities: [['gpu']] }] }),
      },
    };
  }

  /** Null when the image is there; otherwise why it could not be had. */
  private async ensureImage(req: ExecutionRequest, hooks: ExecutionHooks, stop: AbortSignal): Promise<string | null> {
    const present = await this.docker
      .getImage(req.image)
      .inspect()
      .then(
        () => true,
        (err: unknown) => {
          if (engineAway(err)) throw new EngineAwayError(err);
          return false;
        },
      );
    const tag = req.image.includes('@') ? null : (/:([^/:]+)$/.exec(req.image)?.[1] ?? 'latest');
    const policy = this.opts.pullPolicy === 'auto' ? (tag === 'latest' ? 'always' : 'if-not-present') : this.opts.pullPolicy;
    if (policy === 'never') return present ? null : `image ${req.image} is not on this node and the pull policy is never`;
    if (policy === 'if-not-present' && present) return null;

    const cred = this.auth.forPull(req.image, req.registrySecret);
    if (cred !== null && 'missing' in cred) return `registry secret "${cred.missing}" is not configured on this node`;
    hooks.onPulling(0, `pulling ${req.image}`);
    try {
      const stream = (await this.docker.pull(req.image, cred ? { authconfig: cred } : {})) as Readable;
      const onAbort = () => stream.destroy(new Error('stopped'));
      stop.addEventListener('abort', onAbort, { once: true });
      const layers = new Map<string, { current: number; total: number }>();
      let lastPercent = 0;
      try {
        await new Promise<void>((resolve, reject) => {
          this.docker.modem.followProgress(
            stream,
            (err: Error | null, events: { error?: string }[]) => {
              const failed = events?.find((e) => e.error)?.error;
              if (err || failed) reject(new Error(failed ?? err?.message ?? 'pull failed'));
              else resolve();
            },
            (ev: { id?: string; status?: string; error?: string; progressDetail?: { current?: number; total?: number } }) => {
              if (ev.error) return;
              if (ev.id && ev.progressDetail?.total && ev.status === 'Downloading') {
                layers.set(ev.id, { current: ev.progressDetail.current ?? 0, total: ev.progressDetail.total });
              } else if (ev.id && (ev.status === 'Download complete' || ev.status === 'Pull complete')) {
                const l = layers.get(ev.id);
                if (l) l.current = l.total;
              }
              let cur = 0;
              let tot = 0;
              for (const l of layers.values()) {
                cur += l.current;
                tot += l.total;
              }
              const percent = tot > 0 ? Math.floor((100 * cur) / tot) : 0;
              if (percent !== lastPercent) {
                lastPercent = percent;
                hooks.onPulling(percent, ev.status ?? 'pulling');
              }
            },
          );
        });
      } finally {
        stop.removeEventListener('abort', onAbort);
      }
      if (lastPercent !== 100) hooks.onPulling(100, `pulled ${req.image}`);
      return null;
    } catch (err) {
      return `could not pull ${req.image}: ${dockerMessage(err)}`;
    }
  }

  private async runContainer(
    container: Docker.Container,
    req: ExecutionRequest,
    hooks: ExecutionHooks,
    stop: AbortSignal,
    result: (r: Partial<ExecutionResult> & Pick<ExecutionResult, 'status'>) => ExecutionResult,
  ): Promise<ExecutionResult> {
    await container.putArchive(await inputArchive(req), { path: '/' });

    // Attach before starting so not a byte of output is missed. Without `logs`: there are none yet,
    // and asking the engine to replay them races with the live stream and can repeat a line.
    const attached = (await container.attach({ stream: true, stdout: true, stderr: true, logs: false })) as unknown as Readable;
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out = new LineSplitter((l) => hooks.onLog('stdout', l));
    const err = new LineSplitter((l) => hooks.onLog('stderr', l));
    stdout.on('data', (c: Buffer) => out.push(c));
    stderr.on('data', (c: Buffer) => err.push(c));
    this.docker.modem.demuxStream(attached, stdout, stderr);
    const outputDone = new Promise<void>((resolve) => {
      attached.once('end', resolve);
      attached.once('close', resolve);
      attached.once('error', () => resolve());
    });

    try {
      await container.start();
    } catch (e) {
      attached.destroy();
      const message = dockerMessage(e);
      // A command the image does not have is the job's fault, not the node's.
      if (/executable file not found|no such file or directory/i.test(message)) {
        return result({ status: EndStatus.Failed, exitCode: 127, reason: 'command_not_found', message });
      }
      return result({
        status: EndStatus.Failed,
        reason: 'start_failed',
        message: `could not start the container: ${message}`,
        failedToStart: true,
      });
    }
    const startedAt = Date.now();
    hooks.onStarted();

    let timedOut = false;
    let stopped = false;
    const stopContainer = () => container.stop({ t: this.opts.stopGraceSeconds }).catch(() => {});
    const timer = setTimeout(() => {
      timedOut = true;
      void stopContainer();
    }, req.timeoutSeconds * 1000);
    const onStop = () => {
      stopped = true;
      void stopContainer();
    };
    stop.addEventListener('abort', onStop, { once: true });
    if (stop.aborted) onStop();

    let exit: Exited;
    try {
      exit = await this.waitForExit(container, stop);
    } finally {
      clearTimeout(timer);
      stop.removeEventListener('abort', onStop);
    }
    // Let the last lines arrive before the status does.
    await Promise.race([outputDone, sleep(5000)]);
    out.end();
    err.end();
    const engineStopped = (code: number | null, message: string) =>
      result({ startedAt, exitCode: code, status: EndStatus.Failed, reason: JobEndReason.EngineStopped, message });
    if (exit.engineLost !== undefined && !stopped && !timedOut) return engineStopped(exit.StatusCode ?? null, exit.engineLost);
    let state: Docker.ContainerInspectInfo['State'];
    try {
      state = (await container.inspect()).State;
    } catch (err) {
      if (!engineAway(err)) throw err;
      // Stopped or timed out as the engine went away: that is how it ended, whatever the engine did.
      if (stopped) return result({ startedAt, exitCode: null, ...stoppedResult(stop) });
      if (timedOut) state = { ExitCode: exit.StatusCode ?? -1, OOMKilled: false } as Docker.ContainerInspectInfo['State'];
      else return engineStopped(exit.StatusCode ?? null, `the Docker engine went away as the job ended (${dockerMessage(err)})`);
    }
    const exitCode = exit.StatusCode ?? state.ExitCode ?? null;
    const base = { startedAt, exitCode };

    if (stopped) return result({ ...base, ...stoppedResult(stop) });
    if (timedOut) {
      return result({
        ...base,
        status: EndStatus.TimedOut,
        reason: JobEndReason.Timeout,
        message: `ran longer than its timeout of ${req.timeoutSeconds} s`,
      });
    }
    // Stopped by the engine, not by ImagePod: the engine shutting down (or someone on the node).
    if (exitCode !== 0 && !state.OOMKilled) {
      const outside = await this.stoppedOutside(container.id, startedAt, exitCode);
      if (outside !== null) return engineStopped(exitCode, outside);
    }
    // Docker sets OOMKilled only when the kernel killed the container's first process, and on
    // cgroup v2 sometimes after the exit is reported. A job whose shell ran the process that was
    // killed exits 137 (SIGKILL) without it: nobody else sends SIGKILL into a container with a
    // memory limit that ImagePod did not stop, so that is an out-of-memory kill as well.
    if (state.OOMKilled || exitCode === 137) {
      return result({
        ...base,
        status: EndStatus.Failed,
        reason: JobEndReason.OomKilled,
        message: state.OOMKilled
          ? `killed: out of memory (limit ${req.memoryMiB} MiB)`
          : `killed by SIGKILL (exit 137) under its ${req.memoryMiB} MiB memory limit: out of memory`,
      });
    }
    const collected = await this.collect(container);
    if (collected !== null && collected.kind === 'too_large') {
      return result({
        ...base,
        status: EndStatus.Failed,
        reason: JobEndReason.OutputTooLarge,
        message: `the output directory holds more than ${this.opts.outputMaxBytes} bytes`,
      });
    }
    const output = collected?.output ?? null;
    if (exitCode !== 0)
      return result({
        ...base,
        status: EndStatus.Failed,
        reason: JobEndReason.NonZeroExit,
        message: `exited with code ${exitCode}`,
        output,
      });
    return result({ ...base, status: EndStatus.Succeeded, output });
  }

  /** Why a container ImagePod did not stop was stopped by its engine, or null if it was not. */
  private async stoppedOutside(containerId: string, since: number, exitCode: number | null): Promise<string | null> {
    const signals = await killSignals(this.docker, containerId, since);
    if (signals !== null && signals.length === 0) return null;
    const how = `${signals?.[0] ? `signal ${signals[0]}, ` : ''}exit code ${exitCode}`;
    if (signals === null || (await engineGoingAway(this.docker, 2000))) {
      return `the Docker engine shut down while the job ran and stopped its container (${how})`;
    }
    return `its container was stopped from outside ImagePod, by a docker stop or kill on the node (${how})`;
  }

  /**
   * Waits for the container to exit. If the engine goes away meanwhile, waits for it to come back
   * (or for a stop): a container still running then (the engine's live-restore) is waited for again,
   * and one that exited 0 meanwhile ends as usual, though its output since is not streamed;
   * otherwise the run ends with what the engine lost.
   */
  private async waitForExit(container: Docker.Container, stop: AbortSignal): Promise<Exited> {
    for (;;) {
      try {
        return (await untilAborted(container.wait(), this.engineGone.signal)) as Exited;
      } catch (err) {
        if (!engineAway(err) && !(err instanceof EngineAwayError)) throw err;
        this.logger.warn({ err: dockerMessage(err) }, 'lost the Docker engine while a job ran: waiting for it to answer again');
        if (!(await engineBack(this.docker, stop, ENGINE_RETURN_MS))) {
          return { engineLost: `the Docker engine stopped answering while the job ran (${dockerMessage(err)})` };
        }
        if (this.engineGone.signal.aborted) this.engineGone = new AbortController();
        const state = await container.inspect().then(
          (i) => i.State,
          (e: unknown) => (statusOf(e) === 404 ? null : Promise.reject(e)),
        );
        if (state?.Running) continue;
        if (state === null) return { engineLost: 'the Docker engine restarted while the job ran and lost its container' };
        // It finished on its own while the engine was away (the engine keeps exit codes): as usual.
        if (state.ExitCode === 0) return { StatusCode: 0 };
        return {
          StatusCode: state.ExitCode,
          engineLost: `the Docker engine restarted while the job ran; its container did not survive (exit code ${state.ExitCode})`,
        };
      }
    }
  }

  private async collect(container: Docker.Container) {
    try {
      const tar = (await container.getArchive({ path: IN_CONTAINER.outputDir })) as unknown as Readable;
      return await collectFromTar(tar, this.opts.outputMaxBytes);
    } catch (err) {
      if (statusOf(err) === 404) return null;
      throw err;
    }
  }

  async processIds(jobId: string): Promise<number[]> {
    const [c] = await this.docker.listContainers({ filters: { label: [`${LABEL.jobId}=${jobId}`], status: ['running'] } });
    if (c === undefined) return [];
    const top = (await this.docker.getContainer(c.Id).top({ ps_args: '-o pid' })) as { Titles?: string[]; Processes?: string[][] };
    const col = Math.max(0, (top.Titles ?? []).indexOf('PID'));
    return (top.Processes ?? []).map((row) => Number(row[col])).filter((pid) => pid > 0);
  }

  async cleanup(nodeId: string, keep: ReadonlySet<string>): Promise<string[]> {
    const containers = await this.docker.listContainers({
      all: true,
      filters: { label: [`${LABEL.managed}=true`, `${LABEL.nodeId}=${nodeId}`] },
    });
    const removed: string[] = [];
    for (const c of containers) {
      const jobId = c.Labels[LABEL.jobId] ?? '';
      if (keep.has(jobId)) continue;
      await this.docker
        .getContainer(c.Id)
        .remove({ force: true, v: true })
        .catch(() => {});
      removed.push(jobId);
      this.logger.info({ jobId, container: c.Id.slice(0, 12) }, 'removed the container of a job this agent no longer holds');
    }
    return removed;
  }
}

/** `p`, or a rejection with the signal's reason if it aborts first. */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** How a container's wait ended: its exit code, and what happened to the engine if it went away. */
interface Exited {
  readonly StatusCode?: number;
  readonly engineLost?: string;
}

/** How long a running job waits for an engine that went away before it is given up. */
const ENGINE_RETURN_MS = 5 * 60_000;

/** /imagepod/input.json and an /imagepod/output any user can write, as a tar for putArchive. */
async function inputArchive(req: ExecutionRequest): Promise<Buffer> {
  const p = pack();
  p.entry({ name: 'imagepod', type: 'directory', mode: 0o755 });
  p.entry({ name: 'imagepod/input.json', mode: 0o644 }, JSON.stringify(req.inputData ?? null));
  p.entry({ name: 'imagepod/output', type: 'directory', mode: 0o777 });
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

function statusOf(err: unknown): number | undefined {
  return (err as { statusCode?: number } | null)?.statusCode;
}

/** The Docker engine's own message, without dockerode's "(HTTP code 500) server error - " wrapping. */
function dockerMessage(err: unknown): string {
  const e = err as { json?: { message?: string } | null; reason?: string; message?: string };
  const text = e.json?.message ?? e.message ?? e.reason ?? String(err);
  return (/^\(HTTP code \d+\) [^-]*- ([\s\S]*)$/.exec(text)?.[1] ?? text).trim();
}
