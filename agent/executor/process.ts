import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { JobEndReason } from '../../src/domain/job-status.js';
import { collectFromDirectory } from '../output.js';
import { jobEnv } from './env.js';
import { LineSplitter } from './lines.js';
import { EndStatus, type ExecutionHooks, type ExecutionRequest, type ExecutionResult, type Executor, stoppedResult } from './types.js';

export interface ProcessExecutorOptions {
  readonly workDir: string;
  readonly outputMaxBytes: number;
  readonly stopGraceSeconds: number;
}

/**
 * Runs a job's command as a child process of the agent, in a directory of its own, with the
 * same contract as the Docker executor: input in a file, results from an output directory, logs
 * streamed, timeout and cancel enforced on the whole process group. It isolates nothing: it is
 * for development machines without Docker and for trusted CPU-only nodes. The image is ignored.
 */
export class ProcessExecutor implements Executor {
  readonly kind = 'process';

  constructor(
    private readonly opts: ProcessExecutorOptions,
    private readonly logger: Logger,
  ) {}

  async health(): Promise<{ ok: true }> {
    return { ok: true };
  }

  async run(req: ExecutionRequest, hooks: ExecutionHooks, stop: AbortSignal): Promise<ExecutionResult> {
    const dir = join(this.opts.workDir, req.jobId);
    const outputDir = join(dir, 'output');
    const inputFile = join(dir, 'input.json');
    await rm(dir, { recursive: true, force: true });
    await mkdir(outputDir, { recursive: true });
    await writeFile(inputFile, JSON.stringify(req.inputData ?? null));

    const argv = [...(req.command ?? []), ...(req.args ?? [])];
    const fail = (reason: string, message: string): ExecutionResult => ({
      status: EndStatus.Failed,
      exitCode: null,
      reason,
      message,
      output: null,
      stoppedFor: null,
      failedToStart: false,
      startedAt: null,
      finishedAt: Date.now(),
    });
    try {
      const [file, ...rest] = argv;
      if (file === undefined) return fail('invalid_spec', 'the process executor runs the job’s command (or args); this job has neither');

      const gpuList = req.gpuIndices.join(',');
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
        HOME: dir,
        ...jobEnv(req, { inputFile, outputDir }),
        CUDA_VISIBLE_DEVICES: gpuList,
        NVIDIA_VISIBLE_DEVICES: gpuList === '' ? 'void' : gpuList,
      };
      const child = spawn(file, rest, { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      // Listen before anything else can yield: a short job may be gone by the next tick.
      const supervised = this.supervise(child, req, hooks, stop, outputDir);
      // For cleanup after an agent crash: the process group to kill.
      if (child.pid !== undefined) await writeFile(join(dir, 'pid'), String(child.pid));
      return await supervised;
    } finally {
      await rm(dir, { recursive: true, force: true }).catch(() => {});
    }
  }

  private async supervise(
    child: ChildProcess,
    req: ExecutionRequest,
    hooks: ExecutionHooks,
    stop: AbortSignal,
    outputDir: string,
  ): Promise<ExecutionResult> {
    let startedAt: number | null = null;
    let timedOut = false;
    let stopped = false;
    const out = new LineSplitter((l) => hooks.onLog('stdout', l));
    const err = new LineSplitter((l) => hooks.onLog('stderr', l));
    child.stdout?.on('data', (c: Buffer) => out.push(c));
    child.stderr?.on('data', (c: Buffer) => err.push(c));

    const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('close', (code, signal) => resolve({ code, signal }));
    });
    child.once('spawn', () => {
      startedAt = Date.now();
      hooks.onStarted();
    });

    const killGroup = async () => {
      signalGroup(child, 'SIGTERM');
      const exited = await Promise.race([ended.then(() => true), sleep(this.opts.stopGraceSeconds * 1000).then(() => false)]);
      if (!exited) signalGroup(child, 'SIGKILL');
    };
    const timer = setTimeout(() => {
      timedOut = true;
      void killGroup();
    }, req.timeoutSeconds * 1000);
    const onStop = () => {
      stopped = true;
      void killGroup();
    };
    stop.addEventListener('abort', onStop, { once: true });
    if (stop.aborted) onStop();

    const end = await ended;
    clearTimeout(timer);
    stop.removeEventListener('abort', onStop);
    out.end();
    err.end();
    const finishedAt = Date.now();
    const base = { startedAt, finishedAt, failedToStart: false, stoppedFor: null };

    if (end.error !== undefined) {
      return { ...base, status: EndStatus.Failed, exitCode: 127, reason: 'command_not_found', message: end.error.message, output: null };
    }
    if (stopped) return { ...base, exitCode: end.code, output: null, ...stoppedResult(stop) };
    if (timedOut) {
      return {
        ...base,
        status: EndStatus.TimedOut,
        exitCode: end.code,
        reason: JobEndReason.Timeout,
        message: `ran longer than its timeout of ${req.timeoutSeconds} s`,
        output: null,
      };
    }
    const exitCode = end.code ?? 128 + signalNumber(end.signal);
    const collected = await collectFromDirectory(outputDir, this.opts.outputMaxBytes);
    if (collected.kind === 'too_large') {
      return {
        ...base,
        status: EndStatus.Failed,
        exitCode,
        reason: JobEndReason.OutputTooLarge,
        message: `the output directory holds more than ${this.opts.outputMaxBytes} bytes`,
        output: null,
      };
    }
    if (exitCode !== 0) {
      return {
        ...base,
        status: EndStatus.Failed,
        exitCode,
        reason: JobEndReason.NonZeroExit,
        message: `exited with code ${exitCode}`,
        output: collected.output,
      };
    }
    return { ...base, status: EndStatus.Succeeded, exitCode: 0, reason: null, message: null, output: collected.output };
  }

  /** Every process in the job's process group, from /proc. */
  async processIds(jobId: string): Promise<number[]> {
    const leader = Number(await readFile(join(this.opts.workDir, jobId, 'pid'), 'utf8').catch(() => ''));
    if (!(leader > 0)) return [];
    const out: number[] = [];
    for (const entry of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
      // pid (comm) state ppid pgrp ...: comm may hold spaces, so read after its closing paren.
      const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      if (pgrp === leader) out.push(Number(entry));
    }
    return out;
  }

  /** Kills process groups of jobs this agent no longer holds and removes their directories. */
  async cleanup(_nodeId: string, keep: ReadonlySet<string>): Promise<string[]> {
    let entries: string[];
    try {
      entries = await readdir(this.opts.workDir);
    } catch {
      return [];
    }
    const removed: string[] = [];
    for (const jobId of entries) {
      if (keep.has(jobId)) continue;
      const dir = join(this.opts.workDir, jobId);
      const pid = Number(await readFile(join(dir, 'pid'), 'utf8').catch(() => ''));
      if (pid > 0) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      await rm(dir, { recursive: true, force: true });
      removed.push(jobId);
      this.logger.info({ jobId }, 'removed what was left of a job this agent no longer holds');
    }
    return removed;
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      /* gone */
    }
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGSEGV: 11, SIGABRT: 6 };
  return signal ? (table[signal] ?? 0) : 0;
}
