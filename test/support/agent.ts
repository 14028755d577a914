import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.js';
import { loadAgentConfig } from '../../agent/config.js';
import type { TestApi } from './api.js';
import { REDIS_URL } from './redis.js';

const ROOT = join(import.meta.dirname, '../..');

/** The environment of a test agent: fast beats and short locks, so failures show in seconds. */
export function agentEnv(t: TestApi, env: Record<string, string> = {}): Record<string, string> {
  return {
    IMAGEPOD_API_URL: t.url,
    IMAGEPOD_REGISTRATION_TOKEN: t.registrationToken,
    IMAGEPOD_REDIS_URL: REDIS_URL,
    IMAGEPOD_AGENT_STATE_DIR: mkdtempSync(join(tmpdir(), 'imagepod-agent-')),
    IMAGEPOD_NODE_NAME: `agent-${Math.random().toString(36).slice(2, 10)}`,
    IMAGEPOD_EXECUTOR: 'process',
    IMAGEPOD_NVIDIA_SMI: '/nonexistent/nvidia-smi',
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200',
    IMAGEPOD_LOCK_DURATION_MS: '2000',
    IMAGEPOD_STALLED_INTERVAL_MS: '1000',
    IMAGEPOD_RESCAN_INTERVAL_MS: '1000',
    IMAGEPOD_STOP_GRACE_SECONDS: '1',
    IMAGEPOD_SHUTDOWN_GRACE_MS: '2000',
    IMAGEPOD_DISK_MIN_FREE_MIB: '0',
    // A free port each: tests run many agents at once.
    IMAGEPOD_AGENT_METRICS_PORT: '0',
    IMAGEPOD_AGENT_METRICS_HOST: '127.0.0.1',
    IMAGEPOD_LOG_LEVEL: process.env.IMAGEPOD_TEST_LOG_LEVEL ?? 'silent',
    ...env,
  };
}

/** An agent in this process (its lock renewal still runs in its own thread). */
export async function startAgent(t: TestApi, env: Record<string, string> = {}): Promise<Agent> {
  const config = loadAgentConfig(agentEnv(t, env));
  return Agent.start(config, pino({ level: config.logLevel }));
}

/** An agent as its own process, for tests that kill it. */
export interface AgentProcess {
  readonly child: ChildProcess;
  readonly env: Record<string, string>;
  output(): string;
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

export function spawnAgent(t: TestApi, env: Record<string, string> = {}): AgentProcess {
  const full = agentEnv(t, { IMAGEPOD_LOG_LEVEL: 'info', ...env });
  const child = spawn(process.execPath, ['--import', 'tsx', 'agent/main.ts'], {
    cwd: ROOT,
    env: { ...process.env, ...full },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    env: full,
    output: () => out,
    async kill(signal) {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Polls until `check` returns a value (not undefined/false), or fails after `ms`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
