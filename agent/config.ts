import { isIPv4 } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError, type Env, envBool, envInt, envKeyValues, envNumber, envString, mask, parseEnv } from '../src/config/env.js';
import { checkRedisEnv, describeRedisTarget, type RedisTarget, redisEnvShape, redisTargetOf } from '../src/config/redis-env.js';
import { readCaBundle, TlsFileError } from '../src/util/tls-files.js';

export const ExecutorKind = {
  Auto: 'auto',
  Docker: 'docker',
  Process: 'process',
} as const;
export type ExecutorKind = (typeof ExecutorKind)[keyof typeof ExecutorKind];

export const PullPolicy = {
  /** Kubernetes' rule: always for `:latest`, if-not-present otherwise. */
  Auto: 'auto',
  Always: 'always',
  IfNotPresent: 'if-not-present',
  Never: 'never',
} as const;
export type PullPolicy = (typeof PullPolicy)[keyof typeof PullPolicy];

/** `2x24564:RTX 4090,1x81920:A100` -> devices; for development machines without GPUs. */
export interface SimulatedGpu {
  readonly name: string;
  readonly memoryMiB: number;
}

export function parseSimulatedGpus(spec: string): SimulatedGpu[] | string {
  const out: SimulatedGpu[] = [];
  for (const part of spec.split(',')) {
    const m = /^\s*(\d+)x(\d+):(.+?)\s*$/.exec(part);
    if (!m?.[1] || !m[2] || !m[3]) return `"${part.trim()}" is not <count>x<MiB>:<model>, e.g. 2x24564:RTX 4090`;
    for (let i = 0; i < Number(m[1]); i++) out.push({ name: m[3], memoryMiB: Number(m[2]) });
  }
  return out;
}

const schema = z
  .object({
    IMAGEPOD_API_URL: envString().refine((u) => /^https?:\/\//.test(u), 'an http(s) URL, e.g. http://localhost:8000'),
    IMAGEPOD_API_CA_FILE: envString().optional(),
    IMAGEPOD_REGISTRATION_TOKEN: envString().optional(),
    ...redisEnvShape,
    IMAGEPOD_AGENT_STATE_DIR: envString().default('.imagepod/agent'),
    IMAGEPOD_NODE_NAME: envString().default(hostname()),
    IMAGEPOD_NODE_LABELS: envKeyValues().default({}),
    IMAGEPOD_PRICE_PER_GPU_HOUR: envNumber(0).default(0),
    IMAGEPOD_PRICE_PER_CPU_CORE_HOUR: envNumber(0).default(0),
    IMAGEPOD_PRICE_PER_GIB_RAM_HOUR: envNumber(0).default(0),
    IMAGEPOD_MAX_CONCURRENT_JOBS: envInt(1, 1024).optional(),
    IMAGEPOD_RESERVED_CPU_CORES: envNumber(0).default(0),
    IMAGEPOD_RESERVED_MEMORY_MIB: envInt(0).default(0),
    IMAGEPOD_NVIDIA_SMI: envString().default('nvidia-smi'),
    IMAGEPOD_SIMULATED_GPUS: envString().optional(),
    IMAGEPOD_EXECUTOR: z.enum(['auto', 'docker', 'process']).default('auto'),
    IMAGEPOD_DOCKER_HOST: envString().optional(),
    IMAGEPOD_DOCKER_NETWORK: envString().default('bridge'),
    IMAGEPOD_GPU_DEVICE_REQUESTS: z.enum(['auto', 'on', 'off']).default('auto'),
    IMAGEPOD_PULL_POLICY: z.enum(['auto', 'always', 'if-not-present', 'never']).default('auto'),
    IMAGEPOD_REGISTRY_AUTH_FILE: envString().optional(),
    IMAGEPOD_REGISTRY_SECRETS_FILE: envString().optional(),
    IMAGEPOD_PIDS_LIMIT: envInt(16).default(4096),
    IMAGEPOD_STOP_GRACE_SECONDS: envInt(0, 3600).default(10),
    IMAGEPOD_SHUTDOWN_GRACE_MS: envInt(0).default(60_000),
    IMAGEPOD_LOCK_DURATION_MS: envInt(500).default(30_000),
    IMAGEPOD_STALLED_INTERVAL_MS: envInt(100).default(30_000),
    IMAGEPOD_MAX_STALLED_COUNT: envInt(0, 100).default(2),
    IMAGEPOD_LOCK_WATCHDOG_MS: envInt(1000).default(600_000),
    IMAGEPOD_CLAIM_SCAN_LIMIT: envInt(1, 10_000).default(256),
    IMAGEPOD_CLAIM_BATCH: envInt(1, 256).default(16),
    IMAGEPOD_RESCAN_INTERVAL_MS: envInt(100).default(30_000),
    IMAGEPOD_STARVATION_MS: envInt(0).default(300_000),
    IMAGEPOD_END_ALLOWANCE_MS: envInt(0).default(90_000),
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: envInt(100).optional(),
    IMAGEPOD_DISK_PATH: envString().optional(),
    IMAGEPOD_DISK_MIN_FREE_MIB: envInt(0).default(1024),
    IMAGEPOD_WORK_DIR: envString().optional(),
    IMAGEPOD_OUTPUT_MAX_BYTES: envInt(0).default(512 * 1024),
    IMAGEPOD_GPU_MEMORY_MARGIN_PERCENT: envNumber(0, 1000).default(10),
    IMAGEPOD_GPU_MEMORY_MARGIN_MIB: envInt(0).default(256),
    IMAGEPOD_CRASH_LOOP_THRESHOLD: envInt(1, 100).default(3),
    IMAGEPOD_CRASH_LOOP_BACKOFF_MS: envInt(0).default(60_000),
    IMAGEPOD_ALLOW_INSECURE_API: envBool().default(false),
    IMAGEPOD_AGENT_METRICS_PORT: envString()
      .default('9464')
      .refine((v) => v === 'off' || (/^\d{1,5}$/.test(v) && Number(v) <= 65535), 'a port (0 picks a free one), or off'),
    IMAGEPOD_AGENT_METRICS_HOST: envString().default('0.0.0.0'),
    IMAGEPOD_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .superRefine((e, ctx) => {
    checkRedisEnv(e, ctx);
    if (isPlainHttpToAnotherMachine(e.IMAGEPOD_API_URL) && !e.IMAGEPOD_ALLOW_INSECURE_API) {
      ctx.addIssue({
        code: 'custom',
        path: ['IMAGEPOD_API_URL'],
        message:
          'plain http to another machine would carry the agent key in clear: use https, or set IMAGEPOD_ALLOW_INSECURE_API=true on a network you trust',
      });
    }
    if (e.IMAGEPOD_SIMULATED_GPUS !== undefined) {
      const parsed = parseSimulatedGpus(e.IMAGEPOD_SIMULATED_GPUS);
      if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', path: ['IMAGEPOD_SIMULATED_GPUS'], message: parsed });
    }
    if (e.IMAGEPOD_STALLED_INTERVAL_MS > e.IMAGEPOD_LOCK_DURATION_MS * 10) {
      ctx.addIssue({
        code: 'custom',
        path: ['IMAGEPOD_STALLED_INTERVAL_MS'],
        message: 'at most 10 lock durations, or a dead agent holds its jobs for too long',
      });
    }
  });

export interface AgentConfig {
  readonly apiUrl: string;
  /** PEM CA bundle the API's certificate must chain to (re-read when it changes); unset: the system's CAs. */
  readonly apiCaFile: string | undefined;
  readonly registrationToken: string | undefined;
  /** The same Redis the API uses (one server, Sentinel or Cluster), for the tier queues only. */
  readonly redis: RedisTarget;
  readonly stateDir: string;
  readonly node: {
    readonly name: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly pricePerGpuHour: number;
    readonly pricePerCpuCoreHour: number;
    readonly pricePerGibRamHour: number;
    readonly maxConcurrentJobs: number | undefined;
    readonly reservedCpuCores: number;
    readonly reservedMemoryMiB: number;
  };
  readonly gpus: {
    readonly nvidiaSmi: string;
    /** Set only by an operator who wants a development node with pretend GPUs. */
    readonly simulated: readonly SimulatedGpu[] | null;
    readonly deviceRequests: 'auto' | 'on' | 'off';
  };
  readonly executor: ExecutorKind;
  readonly docker: {
    readonly host: string | undefined;
    readonly network: string;
    readonly pullPolicy: PullPolicy;
    readonly registryAuthFile: string | undefined;
    readonly registrySecretsFile: string | undefined;
    readonly pidsLimit: number;
    readonly stopGraceSeconds: number;
  };
  readonly locks: {
    readonly durationMs: number;
    readonly stalledIntervalMs: number;
    readonly maxStalledCount: number;
    readonly watchdogMs: number;
  };
  readonly claim: {
    readonly scanLimit: number;
    /** At most this many jobs claimed in one step (each still has to fit what is left). */
    readonly claimBatch: number;
    readonly rescanIntervalMs: number;
    readonly starvationMs: number;
    /** How long past its time limit a job may hold its resources (pull, stop grace), for shadow times. */
    readonly endAllowanceMs: number;
  };
  readonly heartbeatIntervalMs: number | undefined;
  readonly shutdownGraceMs: number;
  readonly diskPath: string;
  readonly diskMinFreeMiB: number;
  readonly workDir: string;
  readonly outputMaxBytes: number;
  readonly crashLoop: { readonly threshold: number; readonly backoffMs: number };
  /** A job may use this much GPU memory above what it declared before it is stopped. */
  readonly gpuMemoryMargin: { readonly percent: number; readonly mib: number };
  readonly allowInsecureApi: boolean;
  /** Where `/metrics` listens; null when turned off. */
  readonly metrics: { readonly host: string; readonly port: number } | null;
  readonly logLevel: string;
}

export function loadAgentConfig(env: Env): AgentConfig {
  const e = parseEnv(schema, env);
  if (e.IMAGEPOD_API_CA_FILE !== undefined) checkCaFile(e.IMAGEPOD_API_CA_FILE);
  const simulated = e.IMAGEPOD_SIMULATED_GPUS === undefined ? null : parseSimulatedGpus(e.IMAGEPOD_SIMULATED_GPUS);
  const stateDir = e.IMAGEPOD_AGENT_STATE_DIR;
  return {
    apiUrl: e.IMAGEPOD_API_URL.replace(/\/+$/, ''),
    apiCaFile: e.IMAGEPOD_API_CA_FILE,
    registrationToken: e.IMAGEPOD_REGISTRATION_TOKEN,
    redis: redisTargetOf(e),
    stateDir,
    node: {
      name: e.IMAGEPOD_NODE_NAME,
      labels: e.IMAGEPOD_NODE_LABELS,
      pricePerGpuHour: e.IMAGEPOD_PRICE_PER_GPU_HOUR,
      pricePerCpuCoreHour: e.IMAGEPOD_PRICE_PER_CPU_CORE_HOUR,
      pricePerGibRamHour: e.IMAGEPOD_PRICE_PER_GIB_RAM_HOUR,
      maxConcurrentJobs: e.IMAGEPOD_MAX_CONCURRENT_JOBS,
      reservedCpuCores: e.IMAGEPOD_RESERVED_CPU_CORES,
      reservedMemoryMiB: e.IMAGEPOD_RESERVED_MEMORY_MIB,
    },
    gpus: {
      nvidiaSmi: e.IMAGEPOD_NVIDIA_SMI,
      simulated: Array.isArray(simulated) ? simulated : null,
      deviceRequests: e.IMAGEPOD_GPU_DEVICE_REQUESTS,
    },
    executor: e.IMAGEPOD_EXECUTOR,
    docker: {
      host: e.IMAGEPOD_DOCKER_HOST ?? env.DOCKER_HOST,
      network: e.IMAGEPOD_DOCKER_NETWORK,
      pullPolicy: e.IMAGEPOD_PULL_POLICY,
      registryAuthFile: e.IMAGEPOD_REGISTRY_AUTH_FILE,
      registrySecretsFile: e.IMAGEPOD_REGISTRY_SECRETS_FILE,
      pidsLimit: e.IMAGEPOD_PIDS_LIMIT,
      stopGraceSeconds: e.IMAGEPOD_STOP_GRACE_SECONDS,
    },
    locks: {
      durationMs: e.IMAGEPOD_LOCK_DURATION_MS,
      stalledIntervalMs: e.IMAGEPOD_STALLED_INTERVAL_MS,
      maxStalledCount: e.IMAGEPOD_MAX_STALLED_COUNT,
      watchdogMs: e.IMAGEPOD_LOCK_WATCHDOG_MS,
    },
    claim: {
      scanLimit: e.IMAGEPOD_CLAIM_SCAN_LIMIT,
      claimBatch: e.IMAGEPOD_CLAIM_BATCH,
      rescanIntervalMs: e.IMAGEPOD_RESCAN_INTERVAL_MS,
      starvationMs: e.IMAGEPOD_STARVATION_MS,
      endAllowanceMs: e.IMAGEPOD_END_ALLOWANCE_MS,
    },
    heartbeatIntervalMs: e.IMAGEPOD_HEARTBEAT_INTERVAL_MS,
    shutdownGraceMs: e.IMAGEPOD_SHUTDOWN_GRACE_MS,
    diskPath: e.IMAGEPOD_DISK_PATH ?? stateDir,
    diskMinFreeMiB: e.IMAGEPOD_DISK_MIN_FREE_MIB,
    workDir: e.IMAGEPOD_WORK_DIR ?? join(stateDir, 'work'),
    outputMaxBytes: e.IMAGEPOD_OUTPUT_MAX_BYTES,
    crashLoop: { threshold: e.IMAGEPOD_CRASH_LOOP_THRESHOLD, backoffMs: e.IMAGEPOD_CRASH_LOOP_BACKOFF_MS },
    gpuMemoryMargin: { percent: e.IMAGEPOD_GPU_MEMORY_MARGIN_PERCENT, mib: e.IMAGEPOD_GPU_MEMORY_MARGIN_MIB },
    allowInsecureApi: e.IMAGEPOD_ALLOW_INSECURE_API,
    metrics:
      e.IMAGEPOD_AGENT_METRICS_PORT === 'off' ? null : { host: e.IMAGEPOD_AGENT_METRICS_HOST, port: Number(e.IMAGEPOD_AGENT_METRICS_PORT) },
    logLevel: e.IMAGEPOD_LOG_LEVEL,
  };
}

/** `http:` to anything but this machine (localhost, 127.0.0.0/8, ::1). */
export function isPlainHttpToAnotherMachine(apiUrl: string): boolean {
  let u: URL;
  try {
    u = new URL(apiUrl);
  } catch {
    return false;
  }
  if (u.protocol !== 'http:') return false;
  const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  const loopback = host === 'localhost' || host === '::1' || (isIPv4(host) && host.startsWith('127.'));
  return !loopback;
}

function checkCaFile(path: string): void {
  try {
    readCaBundle(path, 'IMAGEPOD_API_CA_FILE');
  } catch (err) {
    if (err instanceof TlsFileError) throw new ConfigError([err.message]);
    throw err;
  }
}

export function describeAgentConfig(c: AgentConfig): Record<string, unknown> {
  return {
    ...c,
    registrationToken: mask(c.registrationToken),
    redis: describeRedisTarget(c.redis),
  };
}
