import type { JobView } from '../domain/schemas/job.js';
import type { NodeView } from '../domain/schemas/node.js';
import { ago, amount, keyValues, mib, progressBar, table, when } from './output.js';

/** "2x 8 GiB RTX 4090", or "cpu" for a CPU-only job. */
export function jobGpus(job: Pick<JobView, 'gpu_count' | 'gpu_memory_required' | 'gpu_type'>): string {
  if (job.gpu_count === 0) return 'cpu';
  const memory = job.gpu_memory_required > 0 ? ` ${mib(job.gpu_memory_required)}` : ' (whole)';
  return `${job.gpu_count}x${memory}${job.gpu_type ? ` ${job.gpu_type}` : ''}`;
}

function statusWithReason(job: JobView): string {
  const extra = [job.status_reason, job.exit_code !== null && job.exit_code !== 0 ? `exit code ${job.exit_code}` : null].filter(Boolean);
  return extra.length > 0 ? `${job.status} (${extra.join(', ')})` : job.status;
}

function resultSummary(result: unknown): string | null {
  if (result === null || typeof result !== 'object') return result === null ? null : JSON.stringify(result);
  const r = result as { data?: unknown; files?: unknown[] };
  const parts: string[] = [];
  if (r.data !== undefined && r.data !== null) parts.push(JSON.stringify(r.data).slice(0, 200));
  if (Array.isArray(r.files) && r.files.length > 0) parts.push(`${r.files.length} file(s)`);
  return parts.join(', ') || null;
}

/** `imagepod status`: one job, field by field; empty fields are left out. */
export function jobDetails(job: JobView): string {
  const command = [...(job.command ?? []), ...(job.args ?? [])];
  const spent = job.cost !== null ? `${amount(job.cost)} (${amount(job.gpu_hours)} GPU-hours)` : null;
  return keyValues([
    ['ID', job.id],
    ['Name', job.job_name],
    ['User', job.user_id],
    ['Status', statusWithReason(job)],
    ['Waiting', job.status === 'queued' ? job.wait_reason : null],
    ['Progress', job.status === 'pulling' && job.progress !== null ? progressBar(job.progress) : null],
    ['Message', job.status_message],
    ['Error', job.error_message],
    ['Image', job.image],
    ['Command', command.length > 0 ? command.join(' ') : null],
    ['GPUs', jobGpus(job)],
    ['CPU, RAM', `${job.cpu_cores_required} ${job.cpu_cores_required === 1 ? 'core' : 'cores'}, ${mib(job.memory_required)}`],
    ['Tier', `${job.tier} (queue ${job.queue})`],
    ['Priority', String(job.priority)],
    ['Attempts', `${job.attempts} (retries allowed: ${job.max_retries})`],
    ['Timeout', `${job.timeout_seconds}s`],
    ['Node', job.node_id ? `${job.node_id}${job.gpu_indices?.length ? ` (GPUs ${job.gpu_indices.join(', ')})` : ''}` : null],
    ['Created', when(job.created_at)],
    ['Started', when(job.started_at)],
    ['Completed', when(job.completed_at)],
    ['Exit code', job.exit_code === null ? null : String(job.exit_code)],
    ['Rate', job.hourly_rate !== null ? `${amount(job.hourly_rate)}/h` : null],
    ['Cost', spent],
    ['Worst case', job.worst_case_cost !== null ? amount(job.worst_case_cost) : null],
    ['Result', resultSummary(job.result)],
  ]);
}

export function jobTable(jobs: JobView[], now = Date.now()): string {
  return table(
    ['ID', 'NAME', 'STATUS', 'GPUS', 'NODE', 'CREATED'],
    jobs.map((j) => [
      j.id,
      j.job_name,
      j.status === 'failed' && j.exit_code !== null ? `failed (exit ${j.exit_code})` : j.status,
      jobGpus(j),
      j.node_id ?? '-',
      ago(j.created_at, now),
    ]),
  );
}

function nodeGpus(n: NodeView): string {
  if (n.gpu_count === 0) return '-';
  return `${n.gpu_count}x ${n.gpu_type ?? 'GPU'} ${mib(n.gpu_memory_total)}${n.simulated_gpus ? ' (simulated)' : ''}`;
}

export function nodeTable(nodes: NodeView[]): string {
  return table(
    ['NAME', 'ID', 'STATUS', 'GPUS', 'GPU FREE', 'CPU FREE', 'MEMORY FREE', 'JOBS', 'LAST BEAT'],
    nodes.map((n) => [
      n.node_name,
      n.node_id,
      n.health_status && n.health_status !== 'healthy' && n.status === 'online' ? `${n.status} (${n.health_status})` : n.status,
      nodeGpus(n),
      n.gpu_count === 0 ? '-' : mib(n.gpu_memory_available),
      `${amount(n.cpu_cores_available)}/${n.cpu_cores}`,
      `${mib(n.memory_available)}/${mib(n.memory_total)}`,
      `${n.current_jobs}/${n.max_concurrent_jobs}`,
      ago(n.last_heartbeat),
    ]),
    ['left', 'left', 'left', 'left', 'right', 'right', 'right', 'right', 'left'],
  );
}

export interface UsageAnswer {
  from: string;
  to: string;
  group_by: 'user' | 'node';
  groups: { key: string; jobs: number; gpu_hours: number; cost: number }[];
  total: { jobs: number; gpu_hours: number; cost: number };
}

export function usageTable(u: UsageAnswer): string {
  const rows = u.groups.map((g) => [g.key, String(g.jobs), amount(g.gpu_hours), amount(g.cost)]);
  rows.push(['TOTAL', String(u.total.jobs), amount(u.total.gpu_hours), amount(u.total.cost)]);
  return table([u.group_by.toUpperCase(), 'JOBS', 'GPU-HOURS', 'COST'], rows, ['left', 'right', 'right', 'right']);
}
