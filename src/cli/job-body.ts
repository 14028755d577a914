import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { CliError, UsageError } from './errors.js';
import type { Flags } from './flags.js';

const MIB_PER_UNIT: Record<string, number> = {
  '': 1,
  m: 1,
  mb: 1,
  mib: 1,
  g: 1024,
  gb: 1024,
  gib: 1024,
  t: 1024 * 1024,
  tb: 1024 * 1024,
  tib: 1024 * 1024,
};

/** `24GiB`, `24G`, `512MiB`, `1.5 GiB`, or a bare number of MiB. Units are binary: GB means GiB, as GPU memory is sold. */
export function parseMemoryMiB(text: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  const per = m?.[2] === undefined ? undefined : MIB_PER_UNIT[m[2].toLowerCase()];
  if (m?.[1] === undefined || per === undefined) throw new UsageError(`--${flag} takes MiB or a size like 24GiB, 512MiB, not "${text}"`);
  return Math.round(Number(m[1]) * per);
}

/** Repeated `--flag K=V` into a record. */
export function parseKeyValues(items: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new UsageError(`--${flag} takes KEY=VALUE, not "${item}"`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** A job file: the body of POST /jobs/ as YAML or JSON (`-` reads stdin). */
export function parseJobFile(name: string, text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = name.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    throw new CliError(`${name}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new CliError(`${name}: expected the fields of a job (a mapping), as POST /jobs/ takes them`);
  }
  return value as Record<string, unknown>;
}

export async function readJobFile(path: string, stdin: () => Promise<string>): Promise<Record<string, unknown>> {
  if (path === '-') return parseJobFile('stdin', await stdin());
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseJobFile(path, text);
}

function parseInput(text: string): unknown {
  const source = text.startsWith('@') ? text.slice(1) : null;
  let raw = text;
  if (source !== null) {
    try {
      raw = readFileSync(source, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read ${source}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  try {
    return JSON.parse(raw);
  } catch {
    throw new UsageError(`--input takes JSON or @file.json; ${source ?? 'the value'} is not JSON`);
  }
}

/**
 * The body of POST /jobs/: the file's fields, then the flags over them. `--env` and `--selector`
 * add to the file's maps. The command is `--command 'a shell line'` (run with sh -c) or the words
 * after `--`, as given. The API checks the result and names any bad field.
 */
export function jobBodyFrom(file: Record<string, unknown>, flags: Flags, argv: string[]): Record<string, unknown> {
  const body: Record<string, unknown> = { ...file };
  const set = (field: string, value: unknown) => {
    if (value !== undefined) body[field] = value;
  };
  set('docker_image', flags.string('image'));
  set('job_name', flags.string('name'));
  set('gpu_count', flags.int('gpus', 0));
  const gpuMemory = flags.string('gpu-memory');
  set('gpu_memory_required', gpuMemory === undefined ? undefined : parseMemoryMiB(gpuMemory, 'gpu-memory'));
  set('gpu_type', flags.string('gpu-type'));
  set('cpu_cores_required', flags.number('cpu'));
  const memory = flags.string('memory');
  set('memory_required', memory === undefined ? undefined : parseMemoryMiB(memory, 'memory'));
  set('timeout_seconds', flags.seconds('timeout'));
  set('priority', flags.int('priority', 0));
  set('max_retries', flags.int('max-retries', 0));
  set('node_name', flags.string('node'));
  set('max_price_per_hour', flags.number('max-price'));
  set('webhook_url', flags.string('webhook-url'));
  const input = flags.string('input');
  if (input !== undefined) body.input_data = parseInput(input);

  const env = parseKeyValues(flags.strings('env'), 'env');
  if (Object.keys(env).length > 0) body.env = { ...asRecord(file.env), ...env };
  const selector = parseKeyValues(flags.strings('selector'), 'selector');
  if (Object.keys(selector).length > 0) body.node_selector = { ...asRecord(file.node_selector), ...selector };

  const command = flags.string('command');
  if (command !== undefined && argv.length > 0) throw new UsageError('give the command either with --command or after --, not both');
  if (command !== undefined || argv.length > 0) {
    body.command = command !== undefined ? ['sh', '-c', command] : argv;
    delete body.args;
  }
  if (body.docker_image === undefined) throw new UsageError('--image is required (or docker_image in the -f file)');
  return body;
}

const asRecord = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
