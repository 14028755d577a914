import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cluster, Redis } from 'ioredis';

/**
 * ImagePod's Lua scripts, one file each in `lua/` named `<name>-<number of keys>.lua` (BullMQ's
 * convention). `-- @include x` pulls in `lua/includes/x.lua` once, so shared helpers live in one
 * place.
 */
const LUA_DIR = join(dirname(fileURLToPath(import.meta.url)), 'lua');

export const ScriptName = {
  RegisterNode: 'registerNode',
  Heartbeat: 'heartbeat',
  SetAdminState: 'setAdminState',
  DeleteNode: 'deleteNode',
  AvailableNodes: 'availableNodes',
  CreateJob: 'createJob',
  IndexJobs: 'indexJobs',
  UpdateJobStatus: 'updateJobStatus',
  CancelJob: 'cancelJob',
  JobView: 'jobView',
  AppendJobLog: 'appendJobLog',
  HoldBudget: 'holdBudget',
  RecordCost: 'recordCost',
  TrackRunning: 'trackRunning',
  RecordWebhookAttempt: 'recordWebhookAttempt',
  ReapJob: 'reapJob',
  IdempotencyBegin: 'idempotencyBegin',
  IdempotencyEnd: 'idempotencyEnd',
  RateLimit: 'rateLimit',
} as const;
export type ScriptName = (typeof ScriptName)[keyof typeof ScriptName];

interface LoadedScript {
  readonly lua: string;
  readonly numberOfKeys: number;
  readonly sha: string;
}

let loaded: ReadonlyMap<ScriptName, LoadedScript> | undefined;

function camel(kebab: string): string {
  return kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function expandIncludes(source: string, includesDir: string, seen: Set<string>): string {
  return source.replace(/^-- @include ([a-z-]+)$/gm, (_, name: string) => {
    if (seen.has(name)) return '';
    seen.add(name);
    return expandIncludes(readFileSync(join(includesDir, `${name}.lua`), 'utf8'), includesDir, seen);
  });
}

/** A Lua file with its `-- @include x` lines replaced by `includes/x.lua` beside it, each once. */
export function readLua(path: string): string {
  return expandIncludes(readFileSync(path, 'utf8'), join(dirname(path), 'includes'), new Set());
}

/** Reads every script once; the API calls this at start so that a missing one fails there. */
export function loadScripts(): ReadonlyMap<ScriptName, LoadedScript> {
  loaded ??= loadAll();
  return loaded;
}

function loadAll(): ReadonlyMap<ScriptName, LoadedScript> {
  const known = new Set<string>(Object.values(ScriptName));
  const out = new Map<ScriptName, LoadedScript>();
  for (const file of readdirSync(LUA_DIR)) {
    const m = /^([a-z-]+)-(\d+)\.lua$/.exec(file);
    if (!m?.[1] || !m[2]) continue;
    const name = camel(m[1]);
    if (!known.has(name)) throw new Error(`lua/${file} has no entry in ScriptName`);
    const lua = readLua(join(LUA_DIR, file));
    out.set(name as ScriptName, { lua, numberOfKeys: Number(m[2]), sha: createHash('sha1').update(lua).digest('hex') });
  }
  for (const name of known) if (!out.has(name as ScriptName)) throw new Error(`no Lua file for script ${name}`);
  return out;
}

/**
 * Runs a script by its SHA, sending its text only when Redis does not know it yet (a restart, a
 * failover, SCRIPT FLUSH). Not ioredis' defineCommand: every script defined on a connection is
 * copied into each pipeline the connection makes, and auto-pipelining makes one per tick.
 */
export async function runScript(
  redis: Redis | Cluster,
  name: ScriptName,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  const s = loadScripts().get(name);
  if (s === undefined) throw new Error(`no script ${name}`);
  if (keys.length !== s.numberOfKeys) throw new Error(`script ${name} takes ${s.numberOfKeys} keys, got ${keys.length}`);
  try {
    return await redis.evalsha(s.sha, s.numberOfKeys, ...keys, ...args);
  } catch (err) {
    if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
    return redis.eval(s.lua, s.numberOfKeys, ...keys, ...args);
  }
}
