import { execFile } from 'node:child_process';

// The fixture files in test/fixtures/nvidia-smi were recorded with exactly these fields, in this order;
// parseGpuCsv reads cells by position, so the two must change together.
export const GPU_QUERY_FIELDS = [
  'index',
  'uuid',
  'name',
  'memory.total',
  'memory.used',
  'memory.free',
  'utilization.gpu',
  'temperature.gpu',
] as const;

export const COMPUTE_APP_QUERY_FIELDS = ['gpu_uuid', 'pid', 'used_memory'] as const;

// nounits keeps "MiB" and "%" out of the cells; noheader saves skipping a line.
const CSV_FORMAT = '--format=csv,noheader,nounits';
const CELL_SEPARATOR = ', ';
// Cells after the name: memory.total, memory.used, memory.free, utilization.gpu, temperature.gpu.
const CELLS_AFTER_NAME = GPU_QUERY_FIELDS.length - 3;

export const DEFAULT_TIMEOUT_MS = 5000;
// A box with 8 GPUs prints well under 2 KiB; the cap only guards against a runaway binary.
const MAX_OUTPUT_BYTES = 1024 * 1024;
const MAX_REASON_CHARS = 300;

/** One GPU as nvidia-smi reports it. Memory figures are MiB. */
export interface DiscoveredGpu {
  index: number;
  uuid: string | null;
  name: string;
  memory_total: number;
  memory_used: number | null;
  memory_free: number;
  utilization: number | null;
  temperature: number | null;
  healthy: boolean;
  error: string | null;
}

export interface ComputeApp {
  gpu_uuid: string;
  pid: number;
  /** MiB; 0 where the driver does not say (e.g. "[N/A]"). */
  used_memory: number;
}

export type GpuQuery = { kind: 'ok'; gpus: DiscoveredGpu[] } | { kind: 'absent' } | { kind: 'error'; reason: string };
export type ComputeAppsQuery = { kind: 'ok'; apps: ComputeApp[] } | { kind: 'absent' } | { kind: 'error'; reason: string };

export interface QueryOptions {
  /** Give up (and SIGKILL the child) after this long. Default 5000. */
  timeoutMs?: number;
  /** Environment for the child; defaults to this process's. */
  env?: NodeJS.ProcessEnv;
}

/**
 * How one cell reads. "[N/A]" and "[Not Supported]" mean the GPU does not offer the figure (vGPU, MIG,
 * some consumer cards) and say nothing about its health; any other bracketed text ("[Unknown Error]",
 * "[GPU requires reset]", "[GPU is lost]"), "ERR!" or an empty cell means the driver could not read it.
 */
type Cell = { kind: 'value'; value: number } | { kind: 'na' } | { kind: 'fault'; text: string };

const NOT_OFFERED = new Set(['[N/A]', '[Not Supported]']);
const NUMBER = /^-?\d+(?:\.\d+)?$/;

function isFaultMarker(text: string): boolean {
  return text === '' || text === 'ERR!' || (text.startsWith('[') && text.endsWith(']') && !NOT_OFFERED.has(text));
}

function readCell(raw: string | undefined): Cell {
  const text = (raw ?? '').trim();
  if (text === '') return { kind: 'fault', text: 'missing' };
  if (NOT_OFFERED.has(text)) return { kind: 'na' };
  if (NUMBER.test(text)) return { kind: 'value', value: Number(text) };
  return { kind: 'fault', text };
}

function readIndex(raw: string | undefined): number | null {
  const text = (raw ?? '').trim();
  return /^\d+$/.test(text) ? Number(text) : null;
}

function unhealthyGpu(index: number, error: string): DiscoveredGpu {
  return {
    index,
    uuid: null,
    name: '',
    memory_total: 0,
    memory_used: null,
    memory_free: 0,
    utilization: null,
    temperature: null,
    healthy: false,
    error,
  };
}

function parseGpuLine(line: string, lineNo: number): DiscoveredGpu {
  const cells = line.split(CELL_SEPARATOR);
  const index = readIndex(cells[0]);
  if (index === null) {
    // Without an index the line cannot even be pinned to a GPU (nvidia-smi prints e.g. "Unable to determine
    // the device handle for gpu 0000:CB:00.0: Unknown Error" in place of a row), so the whole answer is suspect.
    throw new Error(`nvidia-smi --query-gpu line ${lineNo}: no GPU index in "${line.slice(0, 200)}"`);
  }
  if (cells.length < GPU_QUERY_FIELDS.length) {
    return unhealthyGpu(index, `unreadable nvidia-smi row (${cells.length} of ${GPU_QUERY_FIELDS.length} fields): ${line.slice(0, 200)}`);
  }

  // Names have spaces but no ", " today; should one ever carry a comma, the extra cells belong to the name
  // because every other field is a fixed position from either end.
  const name = cells.slice(2, cells.length - CELLS_AFTER_NAME).join(CELL_SEPARATOR);
  const [total, used, free, utilization, temperature] = cells.slice(cells.length - CELLS_AFTER_NAME).map(readCell);
  const uuidCell = (cells[1] ?? '').trim();

  const problems: string[] = [];
  const note = (field: (typeof GPU_QUERY_FIELDS)[number], text: string) => problems.push(`${field}: ${text}`);

  let uuid: string | null = null;
  if (isFaultMarker(uuidCell)) note('uuid', uuidCell || 'missing');
  else if (!NOT_OFFERED.has(uuidCell)) uuid = uuidCell;

  // Total and free are what the scheduler places work by, so a GPU without them cannot be offered at all.
  const required = (field: 'memory.total' | 'memory.free', cell: Cell | undefined): number => {
    if (cell?.kind === 'value') return cell.value;
    note(field, cell?.kind === 'fault' ? cell.text : '[N/A]');
    return 0;
  };
  // The rest are informative: "not offered" is fine, a read failure marks the GPU unhealthy.
  const optional = (field: (typeof GPU_QUERY_FIELDS)[number], cell: Cell | undefined): number | null => {
    if (cell?.kind === 'value') return cell.value;
    if (cell?.kind === 'fault') note(field, cell.text);
    return null;
  };

  const gpu: DiscoveredGpu = {
    index,
    uuid,
    name: name.trim(),
    memory_total: required('memory.total', total),
    memory_used: optional('memory.used', used),
    memory_free: required('memory.free', free),
    utilization: optional('utilization.gpu', utilization),
    temperature: optional('temperature.gpu', temperature),
    healthy: true,
    error: null,
  };
  if (problems.length > 0) {
    gpu.healthy = false;
    gpu.error = problems.join('; ');
    gpu.memory_free = 0;
  }
  return gpu;
}

function lines(stdout: string): Array<{ line: string; lineNo: number }> {
  return stdout
    .split(/\r?\n/)
    .map((line, i) => ({ line: line.trim(), lineNo: i + 1 }))
    .filter(({ line }) => line !== '');
}

/**
 * Parses `nvidia-smi --query-gpu=<GPU_QUERY_FIELDS> --format=csv,noheader,nounits`.
 * A GPU whose figures cannot be read comes back `healthy: false` with `error` naming the fields;
 * throws only when a line does not even carry a GPU index.
 */
export function parseGpuCsv(stdout: string): DiscoveredGpu[] {
  return lines(stdout).map(({ line, lineNo }) => parseGpuLine(line, lineNo));
}

/** Parses `nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory --format=csv,noheader,nounits`; empty output is no apps. */
export function parseComputeAppsCsv(stdout: string): ComputeApp[] {
  return lines(stdout).map(({ line, lineNo }) => {
    const cells = line.split(CELL_SEPARATOR).map((c) => c.trim());
    const [gpuUuid, pidText, memoryText] = cells;
    if (cells.length !== COMPUTE_APP_QUERY_FIELDS.length || !gpuUuid || !pidText || memoryText === undefined || !/^\d+$/.test(pidText)) {
      throw new Error(`nvidia-smi --query-compute-apps line ${lineNo}: cannot read "${line.slice(0, 200)}"`);
    }
    const memory = readCell(memoryText);
    if (memory.kind === 'fault' && !isFaultMarker(memoryText)) {
      throw new Error(`nvidia-smi --query-compute-apps line ${lineNo}: used_memory "${memoryText}" is not a number`);
    }
    // A marker ("[N/A]" under WDDM or in containers, "[Unknown Error]") only hides this process's figure;
    // which GPU the process sits on is still worth knowing.
    return { gpu_uuid: gpuUuid, pid: Number(pidText), used_memory: memory.kind === 'value' ? memory.value : 0 };
  });
}

type RunResult = { kind: 'ok'; stdout: string } | { kind: 'absent' } | { kind: 'error'; reason: string };

function firstLine(...outputs: string[]): string | null {
  for (const output of outputs) {
    const line = output.split(/\r?\n/).find((l) => l.trim() !== '');
    if (line !== undefined) return line.trim().slice(0, MAX_REASON_CHARS);
  }
  return null;
}

function runNvidiaSmi(nvidiaSmiPath: string, args: readonly string[], options: QueryOptions): Promise<RunResult> {
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  return new Promise((resolve) => {
    let settled = false;
    const settle = (result: RunResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };

    const child = execFile(
      nvidiaSmiPath,
      args,
      { env: options.env ?? process.env, encoding: 'utf8', maxBuffer: MAX_OUTPUT_BYTES, windowsHide: true },
      (err, stdout, stderr) => {
        if (!err) return settle({ kind: 'ok', stdout });
        if (err.code === 'ENOENT') return settle({ kind: 'absent' });
        if (typeof err.code === 'number') {
          // The driver's complaint ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA
          // driver...") goes to stdout, other failures to stderr; the first line is the useful one.
          return settle({ kind: 'error', reason: firstLine(stdout, stderr) ?? `nvidia-smi exited with code ${err.code}` });
        }
        if (err.signal) return settle({ kind: 'error', reason: `nvidia-smi was killed by ${err.signal}` });
        settle({ kind: 'error', reason: `cannot run ${nvidiaSmiPath}: ${err.message}`.slice(0, MAX_REASON_CHARS) });
      },
    );

    // execFile's own timeout answers only once the child has exited, and an nvidia-smi stuck in the kernel
    // on a sick GPU may never exit; so answer now, and let the killed child go without holding the agent up.
    const timer = setTimeout(() => {
      settle({ kind: 'error', reason: `nvidia-smi did not answer within ${timeoutMs}ms` });
      child.stdout?.destroy();
      child.stderr?.destroy();
      child.kill('SIGKILL');
      child.unref();
    }, timeoutMs);
  });
}

/** Runs nvidia-smi (no shell) for the GPU list. `absent` means the binary is not installed. */
export async function queryGpus(nvidiaSmiPath: string, options: QueryOptions = {}): Promise<GpuQuery> {
  const run = await runNvidiaSmi(nvidiaSmiPath, [`--query-gpu=${GPU_QUERY_FIELDS.join(',')}`, CSV_FORMAT], options);
  if (run.kind !== 'ok') return run;
  try {
    return { kind: 'ok', gpus: parseGpuCsv(run.stdout) };
  } catch (err) {
    return { kind: 'error', reason: (err as Error).message };
  }
}

/** Runs nvidia-smi (no shell) for the processes holding GPU memory. */
export async function queryComputeApps(nvidiaSmiPath: string, options: QueryOptions = {}): Promise<ComputeAppsQuery> {
  const run = await runNvidiaSmi(nvidiaSmiPath, [`--query-compute-apps=${COMPUTE_APP_QUERY_FIELDS.join(',')}`, CSV_FORMAT], options);
  if (run.kind !== 'ok') return run;
  try {
    return { kind: 'ok', apps: parseComputeAppsCsv(run.stdout) };
  } catch (err) {
    return { kind: 'error', reason: (err as Error).message };
  }
}
