import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_TIER_BOUNDS_MIB, parseTierBounds } from '../domain/tiers.js';
import { readKeyPair, TlsFileError } from '../util/tls-files.js';
import { ConfigError, type Env, envInt, envString, mask, parseEnv } from './env.js';
import { checkRedisEnv, describeRedisTarget, type RedisTarget, redisEnvShape, redisTargetOf } from './redis-env.js';
import { parseTrustProxy, type TrustProxy } from './trust-proxy.js';

/** Where `npm run build:dashboard` puts the dashboard; IMAGEPOD_DASHBOARD_DIR overrides it. */
export const DEFAULT_DASHBOARD_DIR = resolve(import.meta.dirname, '../../dashboard/dist');

export const KEY_PREFIX_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

const schema = z
  .object({
    ...redisEnvShape,
    IMAGEPOD_KEY_PREFIX: envString()
      .default('imagepod')
      .refine((p) => KEY_PREFIX_PATTERN.test(p), 'letters, digits, _ . - only (1-64 chars)'),
    IMAGEPOD_TIER_BOUNDS_MIB: envString()
      .default(DEFAULT_TIER_BOUNDS_MIB.join(','))
      .transform((s, ctx) => {
        const parsed = parseTierBounds(s);
        if (typeof parsed === 'string') {
          ctx.addIssue({ code: 'custom', message: parsed });
          return z.NEVER;
        }
        return parsed;
      }),
    IMAGEPOD_JWT_SECRET: envString().optional(),
    IMAGEPOD_JWT_PUBLIC_KEY: envString().optional(),
    IMAGEPOD_JWT_PUBLIC_KEY_FILE: envString().optional(),
    IMAGEPOD_JWT_ISSUER: envString().optional(),
    IMAGEPOD_JWT_AUDIENCE: envString().optional(),
    IMAGEPOD_SESSION_SECRET: envString()
      .refine((t) => t.length >= 32, 'must be at least 32 characters')
      .optional(),
    IMAGEPOD_SESSION_TTL_SECONDS: envInt(60, 24 * 3600).default(3600),
    IMAGEPOD_REGISTRATION_TOKEN: envString().refine((t) => t.length >= 16, 'must be at least 16 characters'),
    IMAGEPOD_HEARTBEAT_INTERVAL_MS: envInt(100, 600_000).default(5000),
    IMAGEPOD_HEARTBEAT_TTL_MS: envInt(200, 3_600_000).optional(),
    IMAGEPOD_HOST: envString().default('0.0.0.0'),
    IMAGEPOD_PORT: envInt(0, 65535).default(8000),
    IMAGEPOD_TLS_CERT_FILE: envString().optional(),
    IMAGEPOD_TLS_KEY_FILE: envString().optional(),
    IMAGEPOD_TRUST_PROXY: envString()
      .default('false')
      .transform((s, ctx) => {
        const parsed = parseTrustProxy(s);
        if (typeof parsed === 'string') {
          ctx.addIssue({ code: 'custom', message: parsed });
          return z.NEVER;
        }
        return parsed;
      }),
    IMAGEPOD_BODY_LIMIT_BYTES: envInt(1024, 64 * 1024 * 1024).default(2 * 1024 * 1024),
    IMAGEPOD_INPUT_DATA_MAX_BYTES: envInt(0, 64 * 1024 * 1024).default(256 * 1024),
    IMAGEPOD_RESULT_MAX_BYTES: envInt(0, 64 * 1024 * 1024).default(1024 * 1024),
    IMAGEPOD_JOB_LOG_MAX_LINES: envInt(10, 10_000_000).default(10_000),
    IMAGEPOD_JOB_RETENTION_SECONDS: envInt(60).default(7 * 24 * 3600),
    IMAGEPOD_REAPER_INTERVAL_MS: envInt(100, 3_600_000).default(30_000),
    IMAGEPOD_JOB_TIMEOUT_MAX_SECONDS: envInt(1).default(7 * 24 * 3600),
    IMAGEPOD_PAGE_SIZE_MAX: envInt(1, 10_000).default(500),
    IMAGEPOD_MAX_RUNNING_JOBS_PER_USER: envInt(0, 1_000_000).default(0),
    IMAGEPOD_RATE_LIMIT_WINDOW_MS: envInt(100, 3_600_000).default(60_000),
    IMAGEPOD_RATE_LIMIT_SUBMIT_PER_MIN: envInt(0, 100_000_000).default(6000),
    IMAGEPOD_RATE_LIMIT_REGISTER_PER_MIN: envInt(0, 1_000_000).default(30),
    IMAGEPOD_RATE_LIMIT_SESSION_PER_MIN: envInt(0, 1_000_000).default(20),
    IMAGEPOD_RATE_LIMIT_AUTH_FAILURES_PER_MIN: envInt(0, 1_000_000).default(60),
    IMAGEPOD_WEBHOOK_ALLOW: envString()
      .default('')
      .transform((s, ctx) => {
        const entries = s
          .split(',')
          .map((e) => e.trim())
          .filter((e) => e !== '');
        const bad = entries.filter((e) => !isAllowEntry(e));
        if (bad.length > 0) {
          ctx.addIssue({ code: 'custom', message: `not a host name, address or CIDR: ${bad.join(', ')}` });
          return z.NEVER;
        }
        return entries;
      }),
    IMAGEPOD_WEBHOOK_ATTEMPTS: envInt(1, 20).default(8),
    IMAGEPOD_WEBHOOK_BACKOFF_MS: envInt(10, 3_600_000).default(30_000),
    IMAGEPOD_WEBHOOK_TIMEOUT_MS: envInt(100, 60_000).default(10_000),
    IMAGEPOD_WEBHOOK_CONCURRENCY: envInt(1, 1000).default(16),
    IMAGEPOD_JOB_WAIT_MAX_SECONDS: envInt(1, 3600).default(300),
    IMAGEPOD_IDEMPOTENCY_LEASE_SECONDS: envInt(1, 600).default(10),
    IMAGEPOD_API_SHUTDOWN_DELAY_MS: envInt(0, 600_000).default(0),
    IMAGEPOD_API_SHUTDOWN_TIMEOUT_MS: envInt(0, 600_000).default(15_000),
    IMAGEPOD_METRICS_TOKEN: envString()
      .refine((t) => t.length >= 16, 'must be at least 16 characters')
      .optional(),
    IMAGEPOD_DASHBOARD_DIR: envString().optional(),
    IMAGEPOD_LOG_LEVEL: z
      .preprocess((v) => (v === '' ? undefined : v), z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
      .default('info'),
  })
  .superRefine((env, ctx) => {
    checkRedisEnv(env, ctx);
    const keySources = [env.IMAGEPOD_JWT_SECRET, env.IMAGEPOD_JWT_PUBLIC_KEY, env.IMAGEPOD_JWT_PUBLIC_KEY_FILE];
    if (keySources.filter((v) => v !== undefined).length !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['IMAGEPOD_JWT_SECRET'],
        message: 'set exactly one of IMAGEPOD_JWT_SECRET, IMAGEPOD_JWT_PUBLIC_KEY, IMAGEPOD_JWT_PUBLIC_KEY_FILE',
      });
    }
    if (env.IMAGEPOD_JWT_SECRET !== undefined && env.IMAGEPOD_JWT_SECRET.length < 32) {
      ctx.addIssue({ code: 'custom', path: ['IMAGEPOD_JWT_SECRET'], message: 'must be at least 32 characters' });
    }
    const ttl = env.IMAGEPOD_HEARTBEAT_TTL_MS;
    if (ttl !== undefined && ttl <= env.IMAGEPOD_HEARTBEAT_INTERVAL_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['IMAGEPOD_HEARTBEAT_TTL_MS'],
        message: 'must be longer than IMAGEPOD_HEARTBEAT_INTERVAL_MS, or one late beat marks the node offline',
      });
    }
    if ((env.IMAGEPOD_TLS_CERT_FILE === undefined) !== (env.IMAGEPOD_TLS_KEY_FILE === undefined)) {
      const missing = env.IMAGEPOD_TLS_CERT_FILE === undefined ? 'IMAGEPOD_TLS_CERT_FILE' : 'IMAGEPOD_TLS_KEY_FILE';
      ctx.addIssue({
        code: 'custom',
        path: [missing],
        message: 'set both IMAGEPOD_TLS_CERT_FILE and IMAGEPOD_TLS_KEY_FILE to serve HTTPS, or neither',
      });
    }
    if (env.IMAGEPOD_INPUT_DATA_MAX_BYTES >= env.IMAGEPOD_BODY_LIMIT_BYTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['IMAGEPOD_INPUT_DATA_MAX_BYTES'],
        message: 'must be smaller than IMAGEPOD_BODY_LIMIT_BYTES',
      });
    }
  });

/** How people prove who they are: a shared HMAC secret, or a public key whose private half mints tokens elsewhere. */
export type JwtVerification =
  | { readonly kind: 'secret'; readonly secret: string; readonly algorithms: readonly ['HS256'] }
  | {
      readonly kind: 'public-key';
      readonly publicKey: string;
      readonly algorithms: readonly ['RS256', 'ES256', 'PS256'];
    };

export interface ApiConfig {
  /** One server, Sentinel or Cluster; see redis-env.ts. */
  readonly redis: RedisTarget;
  readonly keyPrefix: string;
  readonly tierBoundsMiB: readonly number[];
  readonly jwt: JwtVerification & { readonly issuer?: string; readonly audience?: string };
  readonly registrationToken: string;
  /** Signs dashboard session cookies; unset: derived from the JWT secret, or random per process. */
  readonly session: { readonly secret: string | null; readonly ttlSeconds: number };
  readonly heartbeatIntervalMs: number;
  readonly heartbeatTtlMs: number;
  readonly host: string;
  readonly port: number;
  /** Serve HTTPS with this certificate chain and key (re-read when the files change); null: plain HTTP. */
  readonly tls: { readonly certFile: string; readonly keyFile: string } | null;
  /** Express's `trust proxy`: which hops' X-Forwarded-* headers to believe (false: none). */
  readonly trustProxy: TrustProxy;
  readonly limits: {
    readonly bodyBytes: number;
    readonly inputDataBytes: number;
    readonly resultBytes: number;
    readonly jobLogLines: number;
    readonly jobTimeoutMaxSeconds: number;
    readonly pageSizeMax: number;
  };
  readonly jobRetentionSeconds: number;
  /** How often one API replica sweeps for jobs no agent can end any more (see job-reaper.ts). */
  readonly reaperIntervalMs: number;
  /** Fair share: how many jobs one user may have running at once, unless an admin set theirs (0: no cap). */
  readonly maxRunningJobsPerUser: number;
  /**
   * Requests per window (0: no limit), counted in Redis so all replicas share them: jobs submitted
   * per user, registrations and sign-ins per client address, refused tokens per client address.
   */
  readonly rateLimits: {
    readonly windowMs: number;
    readonly submit: number;
    readonly register: number;
    readonly session: number;
    readonly authFailures: number;
  };
  /** Job webhooks: who may be reached (besides public addresses) and how deliveries are retried. */
  readonly webhooks: {
    readonly allow: readonly string[];
    readonly attempts: number;
    readonly backoffMs: number;
    readonly timeoutMs: number;
    readonly concurrency: number;
  };
  /** The longest `POST /jobs?wait=` may hold a request. */
  readonly jobWaitMaxSeconds: number;
  /** How long a submission with an Idempotency-Key owns the key before a retry may take it over. */
  readonly idempotencyLeaseSeconds: number;
  /** On SIGTERM: serve this long while not ready, then give open requests this long (see Shutdown). */
  readonly shutdown: ShutdownTimes;
  /** When set, `GET /metrics` needs `Authorization: Bearer <it>`; else it is open. */
  readonly metricsToken: string | undefined;
  readonly logLevel: string;
  /** The built dashboard served at `/`. */
  readonly dashboardDir: string;
}

export interface ShutdownTimes {
  /** How long to keep serving after readiness fails, while a load balancer stops sending. */
  readonly delayMs: number;
  /** How long requests already in progress get to finish before their connections are cut. */
  readonly timeoutMs: number;
}

/** A pure function of the environment (and, for a key file, the file it names). */
export function loadApiConfig(env: Env): ApiConfig {
  const e = parseEnv(schema, env);
  let jwt: JwtVerification;
  if (e.IMAGEPOD_JWT_SECRET !== undefined) {
    jwt = { kind: 'secret', secret: e.IMAGEPOD_JWT_SECRET, algorithms: ['HS256'] };
  } else {
    const publicKey = e.IMAGEPOD_JWT_PUBLIC_KEY ?? readKeyFile(e.IMAGEPOD_JWT_PUBLIC_KEY_FILE ?? '');
    jwt = { kind: 'public-key', publicKey, algorithms: ['RS256', 'ES256', 'PS256'] };
  }
  const tls =
    e.IMAGEPOD_TLS_CERT_FILE !== undefined && e.IMAGEPOD_TLS_KEY_FILE !== undefined
      ? { certFile: e.IMAGEPOD_TLS_CERT_FILE, keyFile: e.IMAGEPOD_TLS_KEY_FILE }
      : null;
  if (tls !== null) checkKeyPair(tls);
  return {
    redis: redisTargetOf(e),
    keyPrefix: e.IMAGEPOD_KEY_PREFIX,
    tierBoundsMiB: e.IMAGEPOD_TIER_BOUNDS_MIB,
    jwt: { ...jwt, issuer: e.IMAGEPOD_JWT_ISSUER, audience: e.IMAGEPOD_JWT_AUDIENCE },
    registrationToken: e.IMAGEPOD_REGISTRATION_TOKEN,
    session: { secret: e.IMAGEPOD_SESSION_SECRET ?? null, ttlSeconds: e.IMAGEPOD_SESSION_TTL_SECONDS },
    heartbeatIntervalMs: e.IMAGEPOD_HEARTBEAT_INTERVAL_MS,
    heartbeatTtlMs: e.IMAGEPOD_HEARTBEAT_TTL_MS ?? 3 * e.IMAGEPOD_HEARTBEAT_INTERVAL_MS,
    host: e.IMAGEPOD_HOST,
    port: e.IMAGEPOD_PORT,
    tls,
    trustProxy: e.IMAGEPOD_TRUST_PROXY,
    limits: {
      bodyBytes: e.IMAGEPOD_BODY_LIMIT_BYTES,
      inputDataBytes: e.IMAGEPOD_INPUT_DATA_MAX_BYTES,
      resultBytes: e.IMAGEPOD_RESULT_MAX_BYTES,
      jobLogLines: e.IMAGEPOD_JOB_LOG_MAX_LINES,
      jobTimeoutMaxSeconds: e.IMAGEPOD_JOB_TIMEOUT_MAX_SECONDS,
      pageSizeMax: e.IMAGEPOD_PAGE_SIZE_MAX,
    },
    jobRetentionSeconds: e.IMAGEPOD_JOB_RETENTION_SECONDS,
    reaperIntervalMs: e.IMAGEPOD_REAPER_INTERVAL_MS,
    maxRunningJobsPerUser: e.IMAGEPOD_MAX_RUNNING_JOBS_PER_USER,
    rateLimits: {
      windowMs: e.IMAGEPOD_RATE_LIMIT_WINDOW_MS,
      submit: e.IMAGEPOD_RATE_LIMIT_SUBMIT_PER_MIN,
      register: e.IMAGEPOD_RATE_LIMIT_REGISTER_PER_MIN,
      session: e.IMAGEPOD_RATE_LIMIT_SESSION_PER_MIN,
      authFailures: e.IMAGEPOD_RATE_LIMIT_AUTH_FAILURES_PER_MIN,
    },
    webhooks: {
      allow: e.IMAGEPOD_WEBHOOK_ALLOW,
      attempts: e.IMAGEPOD_WEBHOOK_ATTEMPTS,
      backoffMs: e.IMAGEPOD_WEBHOOK_BACKOFF_MS,
      timeoutMs: e.IMAGEPOD_WEBHOOK_TIMEOUT_MS,
      concurrency: e.IMAGEPOD_WEBHOOK_CONCURRENCY,
    },
    jobWaitMaxSeconds: e.IMAGEPOD_JOB_WAIT_MAX_SECONDS,
    idempotencyLeaseSeconds: e.IMAGEPOD_IDEMPOTENCY_LEASE_SECONDS,
    shutdown: { delayMs: e.IMAGEPOD_API_SHUTDOWN_DELAY_MS, timeoutMs: e.IMAGEPOD_API_SHUTDOWN_TIMEOUT_MS },
    metricsToken: e.IMAGEPOD_METRICS_TOKEN,
    logLevel: e.IMAGEPOD_LOG_LEVEL,
    dashboardDir: e.IMAGEPOD_DASHBOARD_DIR ?? DEFAULT_DASHBOARD_DIR,
  };
}

/** An `IMAGEPOD_WEBHOOK_ALLOW` entry: a host name, an address, or a CIDR. */
function isAllowEntry(entry: string): boolean {
  const [addr = '', bits, extra] = entry.split('/');
  const family = isIP(addr);
  if (family !== 0) {
    if (extra !== undefined) return false;
    if (bits === undefined) return true;
    const n = Number(bits);
    return /^\d{1,3}$/.test(bits) && n <= (family === 4 ? 32 : 128);
  }
  return bits === undefined && /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i.test(entry);
}

function readKeyFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new Error(`IMAGEPOD_JWT_PUBLIC_KEY_FILE: cannot read ${path} (${code})`);
  }
}

/** A certificate and key that cannot be served stop the start, naming the variable at fault. */
function checkKeyPair(files: { certFile: string; keyFile: string }): void {
  try {
    readKeyPair(files);
  } catch (err) {
    if (err instanceof TlsFileError) throw new ConfigError([err.message]);
    throw err;
  }
}

/** The effective configuration, safe to log: secrets masked. */
export function describeApiConfig(c: ApiConfig): Record<string, unknown> {
  return {
    redis: describeRedisTarget(c.redis),
    keyPrefix: c.keyPrefix,
    tierBoundsMiB: c.tierBoundsMiB,
    jwt:
      c.jwt.kind === 'secret'
        ? { kind: 'secret', secret: mask(c.jwt.secret), issuer: c.jwt.issuer, audience: c.jwt.audience }
        : { kind: 'public-key', issuer: c.jwt.issuer, audience: c.jwt.audience },
    registrationToken: mask(c.registrationToken),
    session: { secret: c.session.secret === null ? null : mask(c.session.secret), ttlSeconds: c.session.ttlSeconds },
    heartbeatIntervalMs: c.heartbeatIntervalMs,
    heartbeatTtlMs: c.heartbeatTtlMs,
    host: c.host,
    port: c.port,
    tls: c.tls,
    trustProxy: c.trustProxy,
    limits: c.limits,
    jobRetentionSeconds: c.jobRetentionSeconds,
    reaperIntervalMs: c.reaperIntervalMs,
    maxRunningJobsPerUser: c.maxRunningJobsPerUser,
    rateLimits: c.rateLimits,
    webhooks: c.webhooks,
    jobWaitMaxSeconds: c.jobWaitMaxSeconds,
    idempotencyLeaseSeconds: c.idempotencyLeaseSeconds,
    shutdown: c.shutdown,
    metricsToken: c.metricsToken === undefined ? '(unset: /metrics is open)' : mask(c.metricsToken),
    logLevel: c.logLevel,
    dashboardDir: c.dashboardDir,
  };
}
