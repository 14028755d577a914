import { isIP } from 'node:net';
import { z } from 'zod';
import { readCaBundle, readKeyPair, TlsFileError } from '../util/tls-files.js';
import { ConfigError, envBool, envString, mask, maskUrl } from './env.js';

/**
 * Where Redis is, shared by the API and the agent (they read the same variables): one server
 * (`IMAGEPOD_REDIS_URL`, `redis://` or `rediss://`), a primary found through Sentinel, or a Redis
 * Cluster; with TLS verified against a CA file when asked.
 */

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** TLS towards Redis. Certificates are always verified; there is no switch to skip that. */
export interface RedisTls {
  /** PEM CA bundle to verify the server with; absent: the system's trusted CAs. */
  readonly ca?: string;
  /** A client certificate and key, for servers that ask for one (`tls-auth-clients yes`). */
  readonly cert?: string;
  readonly key?: string;
  /** The name the server's certificate must carry, when Redis is reached by address. */
  readonly servername?: string;
  /** Where the PEM came from, for the logged configuration. */
  readonly files: { readonly ca?: string; readonly cert?: string; readonly key?: string };
}

interface RedisAuth {
  readonly username?: string;
  readonly password?: string;
  readonly tls: RedisTls | null;
}

export type RedisTarget =
  | (RedisAuth & { readonly kind: 'server'; readonly url: string })
  | (RedisAuth & {
      readonly kind: 'sentinel';
      readonly sentinels: readonly HostPort[];
      /** The monitored primary's name (`sentinel monitor <name> ...`). */
      readonly master: string;
      readonly sentinelPassword?: string;
    })
  | (RedisAuth & { readonly kind: 'cluster'; readonly nodes: readonly HostPort[] });

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** `host:port,host:port` (IPv6 as `[::1]:7000`). */
export function parseHostPorts(list: string): HostPort[] | string {
  const out: HostPort[] = [];
  for (const raw of list.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(item);
    const host = m?.[1] ?? m?.[2];
    const port = Number(m?.[3]);
    if (host === undefined || !(port >= 1 && port <= 65535) || (m?.[1] !== undefined && isIP(host) !== 6)) {
      return `"${item}" is not host:port (IPv6 as [addr]:port)`;
    }
    out.push({ host, port });
  }
  return out.length > 0 ? out : 'at least one host:port';
}

const hostPorts = () =>
  envString().transform((s, ctx) => {
    const parsed = parseHostPorts(s);
    if (typeof parsed === 'string') {
      ctx.addIssue({ code: 'custom', message: parsed });
      return z.NEVER;
    }
    return parsed;
  });

/** The Redis variables; spread into the API's and the agent's environment schemas. */
export const redisEnvShape = {
  IMAGEPOD_REDIS_URL: envString()
    .refine((u) => /^rediss?:\/\/[^/]/.test(u), 'must be a redis:// or rediss:// URL')
    .optional(),
  IMAGEPOD_REDIS_CLUSTER_NODES: hostPorts().optional(),
  IMAGEPOD_REDIS_SENTINELS: hostPorts().optional(),
  IMAGEPOD_REDIS_SENTINEL_MASTER: envString().optional(),
  IMAGEPOD_REDIS_SENTINEL_PASSWORD: envString().optional(),
  IMAGEPOD_REDIS_USERNAME: envString().optional(),
  IMAGEPOD_REDIS_PASSWORD: envString().optional(),
  IMAGEPOD_REDIS_TLS: envBool().optional(),
  IMAGEPOD_REDIS_TLS_CA_FILE: envString().optional(),
  IMAGEPOD_REDIS_TLS_CERT_FILE: envString().optional(),
  IMAGEPOD_REDIS_TLS_KEY_FILE: envString().optional(),
  IMAGEPOD_REDIS_TLS_SERVERNAME: envString().optional(),
};

const redisEnvObject = z.object(redisEnvShape);
type RedisEnv = z.output<typeof redisEnvObject>;

function urlHasCredentials(url: string): boolean {
  try {
    const u = new URL(url);
    return u.username !== '' || u.password !== '';
  } catch {
    return false;
  }
}

/** Whether TLS is on: the URL's scheme for one server, IMAGEPOD_REDIS_TLS otherwise. */
function tlsWanted(e: RedisEnv): boolean {
  if (e.IMAGEPOD_REDIS_CLUSTER_NODES === undefined && e.IMAGEPOD_REDIS_SENTINELS === undefined) {
    return (e.IMAGEPOD_REDIS_URL ?? DEFAULT_REDIS_URL).startsWith('rediss://');
  }
  return e.IMAGEPOD_REDIS_TLS === true;
}

/** The checks across variables; call from the schema's superRefine. */
export function checkRedisEnv(e: RedisEnv, ctx: z.RefinementCtx): void {
  const issue = (path: keyof RedisEnv, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  const ways = [e.IMAGEPOD_REDIS_URL, e.IMAGEPOD_REDIS_CLUSTER_NODES, e.IMAGEPOD_REDIS_SENTINELS].filter((v) => v !== undefined);
  if (ways.length > 1) {
    issue('IMAGEPOD_REDIS_URL', 'set only one of IMAGEPOD_REDIS_URL, IMAGEPOD_REDIS_CLUSTER_NODES, IMAGEPOD_REDIS_SENTINELS');
  }
  if (e.IMAGEPOD_REDIS_SENTINELS !== undefined && e.IMAGEPOD_REDIS_SENTINEL_MASTER === undefined) {
    issue('IMAGEPOD_REDIS_SENTINEL_MASTER', 'required with IMAGEPOD_REDIS_SENTINELS: the name the sentinels monitor the primary by');
  }
  if (e.IMAGEPOD_REDIS_SENTINELS === undefined) {
    if (e.IMAGEPOD_REDIS_SENTINEL_MASTER !== undefined) issue('IMAGEPOD_REDIS_SENTINEL_MASTER', 'only with IMAGEPOD_REDIS_SENTINELS');
    if (e.IMAGEPOD_REDIS_SENTINEL_PASSWORD !== undefined) issue('IMAGEPOD_REDIS_SENTINEL_PASSWORD', 'only with IMAGEPOD_REDIS_SENTINELS');
  }
  const single = e.IMAGEPOD_REDIS_CLUSTER_NODES === undefined && e.IMAGEPOD_REDIS_SENTINELS === undefined;
  if (single && e.IMAGEPOD_REDIS_TLS !== undefined && e.IMAGEPOD_REDIS_TLS !== tlsWanted(e)) {
    issue('IMAGEPOD_REDIS_TLS', 'with IMAGEPOD_REDIS_URL the scheme decides: rediss:// for TLS, redis:// without');
  }
  if (single && e.IMAGEPOD_REDIS_URL !== undefined && urlHasCredentials(e.IMAGEPOD_REDIS_URL)) {
    for (const name of ['IMAGEPOD_REDIS_USERNAME', 'IMAGEPOD_REDIS_PASSWORD'] as const) {
      if (e[name] !== undefined) issue(name, 'IMAGEPOD_REDIS_URL carries credentials already: set them in one place');
    }
  }
  if (e.IMAGEPOD_REDIS_USERNAME !== undefined && e.IMAGEPOD_REDIS_PASSWORD === undefined) {
    // ioredis would sign in with no password and Redis answer with a puzzling WRONGPASS.
    issue('IMAGEPOD_REDIS_USERNAME', 'needs IMAGEPOD_REDIS_PASSWORD: an ACL user signs in with both');
  }
  if (!tlsWanted(e)) {
    for (const name of [
      'IMAGEPOD_REDIS_TLS_CA_FILE',
      'IMAGEPOD_REDIS_TLS_CERT_FILE',
      'IMAGEPOD_REDIS_TLS_KEY_FILE',
      'IMAGEPOD_REDIS_TLS_SERVERNAME',
    ] as const) {
      if (e[name] !== undefined) issue(name, 'TLS is off: use a rediss:// URL, or IMAGEPOD_REDIS_TLS=true with Cluster or Sentinel');
    }
  }
  if ((e.IMAGEPOD_REDIS_TLS_CERT_FILE === undefined) !== (e.IMAGEPOD_REDIS_TLS_KEY_FILE === undefined)) {
    issue('IMAGEPOD_REDIS_TLS_CERT_FILE', 'set both IMAGEPOD_REDIS_TLS_CERT_FILE and IMAGEPOD_REDIS_TLS_KEY_FILE, or neither');
  }
}

/** Reads and checks the PEM files TLS names; a bad one stops the start, naming its variable. */
function readTlsFiles(e: RedisEnv): Pick<RedisTls, 'ca' | 'cert' | 'key'> {
  try {
    const ca =
      e.IMAGEPOD_REDIS_TLS_CA_FILE === undefined ? undefined : readCaBundle(e.IMAGEPOD_REDIS_TLS_CA_FILE, 'IMAGEPOD_REDIS_TLS_CA_FILE');
    if (e.IMAGEPOD_REDIS_TLS_CERT_FILE === undefined || e.IMAGEPOD_REDIS_TLS_KEY_FILE === undefined) return { ca };
    const pair = readKeyPair(
      { certFile: e.IMAGEPOD_REDIS_TLS_CERT_FILE, keyFile: e.IMAGEPOD_REDIS_TLS_KEY_FILE },
      { cert: 'IMAGEPOD_REDIS_TLS_CERT_FILE', key: 'IMAGEPOD_REDIS_TLS_KEY_FILE' },
    );
    return { ca, cert: pair.cert.toString('utf8'), key: pair.key.toString('utf8') };
  } catch (err) {
    if (err instanceof TlsFileError) throw new ConfigError([err.message]);
    throw err;
  }
}

/** Builds the target from checked variables; reads the PEM files they name. */
export function redisTargetOf(e: RedisEnv): RedisTarget {
  const tls: RedisTls | null = tlsWanted(e)
    ? {
        ...readTlsFiles(e),
        servername: e.IMAGEPOD_REDIS_TLS_SERVERNAME,
        files: { ca: e.IMAGEPOD_REDIS_TLS_CA_FILE, cert: e.IMAGEPOD_REDIS_TLS_CERT_FILE, key: e.IMAGEPOD_REDIS_TLS_KEY_FILE },
      }
    : null;
  const auth = { username: e.IMAGEPOD_REDIS_USERNAME, password: e.IMAGEPOD_REDIS_PASSWORD, tls };
  if (e.IMAGEPOD_REDIS_CLUSTER_NODES !== undefined) return { kind: 'cluster', nodes: e.IMAGEPOD_REDIS_CLUSTER_NODES, ...auth };
  if (e.IMAGEPOD_REDIS_SENTINELS !== undefined) {
    return {
      kind: 'sentinel',
      sentinels: e.IMAGEPOD_REDIS_SENTINELS,
      master: e.IMAGEPOD_REDIS_SENTINEL_MASTER ?? '',
      sentinelPassword: e.IMAGEPOD_REDIS_SENTINEL_PASSWORD,
      ...auth,
    };
  }
  return { kind: 'server', url: e.IMAGEPOD_REDIS_URL ?? DEFAULT_REDIS_URL, ...auth };
}

/** The target as the configuration log shows it: no password, no key, no PEM. */
export function describeRedisTarget(t: RedisTarget): Record<string, unknown> {
  const common = {
    username: t.username,
    password: t.password === undefined ? undefined : mask(t.password),
    tls:
      t.tls === null
        ? false
        : {
            caFile: t.tls.files.ca ?? '(system CAs)',
            certFile: t.tls.files.cert,
            keyFile: t.tls.files.key,
            servername: t.tls.servername,
          },
  };
  const where = (list: readonly HostPort[]) => list.map((n) => `${n.host}:${n.port}`);
  switch (t.kind) {
    case 'server':
      return { kind: t.kind, url: maskUrl(t.url), ...common };
    case 'sentinel':
      return {
        kind: t.kind,
        sentinels: where(t.sentinels),
        master: t.master,
        sentinelPassword: t.sentinelPassword === undefined ? undefined : mask(t.sentinelPassword),
        ...common,
      };
    case 'cluster':
      return { kind: t.kind, nodes: where(t.nodes), ...common };
  }
}
