import { ACTIVE_JOB_STATUSES, isFinal, JobEndReason, JobStatus, parseJobStatus } from '../domain/job-status.js';
import { tierOfQueue } from '../domain/queues.js';
import type { JobSpec, JobView } from '../domain/schemas/job.js';
import { iso, isoOrNull } from '../util/time.js';
import { webhookViewOf } from './webhooks/record-fields.js';

/**
 * A job's record in Redis (a hash of strings) and how the user-facing view is derived from it
 * and from what BullMQ knows.
 */

export interface JobRecord {
  readonly id: string;
  readonly owner: string;
  readonly tier: string;
  /** The BullMQ queue: the tier's, or the tier's for one GPU family. */
  readonly queue: string;
  readonly spec: JobSpec;
  readonly status: JobStatus;
  readonly fields: Readonly<Record<string, string>>;
}

/** What BullMQ knows of a job that can overrule the record (see job-view.lua). */
export interface BullFacts {
  readonly exists: boolean;
  readonly locked: boolean;
  readonly inFailed: boolean;
  readonly inCompleted: boolean;
  readonly failedReason: string;
}

/** A record written but whose BullMQ job never appeared is only judged lost after this long. */
export const ENQUEUE_GRACE_MS = 30_000;

export function newRecordFields(
  id: string,
  owner: string,
  queue: string,
  spec: JobSpec,
  worstCaseCost: number | null,
  now: number,
): Record<string, string> {
  return {
    id,
    owner,
    tier: tierOfQueue(queue),
    queue,
    spec: JSON.stringify(spec),
    worst_case_cost: worstCaseCost === null ? '' : String(worstCaseCost),
    status: JobStatus.Queued,
    gpu_count: String(spec.requirements.gpu_count),
    gpu_memory_mib: String(spec.requirements.gpu_memory_mib),
    max_retries: String(spec.max_retries),
    has_webhook: spec.webhook_url ? '1' : '0',
    attempts: '0',
    failures: '0',
    created_at: String(now),
    updated_at: String(now),
  };
}

export function parseJobRecord(h: Record<string, string>): JobRecord | null {
  const status = parseJobStatus(h.status);
  if (h.id === undefined || h.owner === undefined || h.tier === undefined || h.spec === undefined || !status) return null;
  return { id: h.id, owner: h.owner, tier: h.tier, queue: h.queue ?? h.tier, spec: JSON.parse(h.spec) as JobSpec, status, fields: h };
}

export interface DerivedStatus {
  readonly status: JobStatus;
  readonly reason: string | null;
}

/**
 * The status a user sees. The record is the truth once final; before that BullMQ may know more:
 * an agent that died leaves the record 'running' with its lock gone, and BullMQ either puts the
 * job back in the queue (stalled) or fails it (stalled too often).
 */
export function deriveStatus(rec: JobRecord, facts: BullFacts, now: number): DerivedStatus {
  const reason = rec.fields.status_reason || null;
  if (isFinal(rec.status)) return { status: rec.status, reason };
  if (facts.inFailed) return { status: JobStatus.Failed, reason: JobEndReason.Stalled };
  if (!facts.exists) {
    const age = now - Number(rec.fields.created_at ?? now);
    if (rec.status === JobStatus.Queued && age < ENQUEUE_GRACE_MS) return { status: rec.status, reason };
    return { status: JobStatus.Failed, reason: JobEndReason.EnqueueInterrupted };
  }
  if (ACTIVE_JOB_STATUSES.has(rec.status) && !facts.locked) {
    return facts.inCompleted
      ? { status: JobStatus.Failed, reason: JobEndReason.AgentError }
      : { status: JobStatus.Queued, reason: JobEndReason.Stalled };
  }
  return { status: rec.status, reason };
}

const json = (s: string | undefined): unknown => {
  if (s === undefined || s === '') return null;
  try {
    return JSON.parse(s);
  } catch {
    return null;
  }
};
const numOrNull = (s: string | undefined): number | null => (s === undefined || s === '' ? null : Number(s));

export function toJobView(rec: JobRecord, derived: DerivedStatus, waitReason: string | null = null): JobView {
  const f = rec.fields;
  const s = rec.spec;
  const stillHeld = ACTIVE_JOB_STATUSES.has(derived.status) || (isFinal(derived.status) && Boolean(f.node_id));
  return {
    id: rec.id,
    job_id: rec.id,
    job_name: s.job_name,
    user_id: rec.owner,
    status: derived.status,
    status_reason: derived.reason,
    status_message: f.status_message || null,
    wait_reason: derived.status === JobStatus.Queued ? waitReason : null,
    tier: rec.tier,
    queue: rec.queue,
    docker_image: s.docker_image,
    docker_tag: s.docker_tag,
    image: s.image,
    command: s.command,
    args: s.args,
    env: s.env,
    input_data: s.input_data as JobView['input_data'],
    gpu_memory_required: s.requirements.gpu_memory_mib,
    gpu_count: s.requirements.gpu_count,
    gpu_type: s.requirements.gpu_type,
    cpu_cores_required: s.requirements.cpu_cores,
    memory_required: s.requirements.memory_mib,
    timeout_seconds: s.timeout_seconds,
    max_retries: s.max_retries,
    priority: s.priority,
    registry_secret: s.registry_secret ?? null,
    node_selector: s.requirements.node_selector ?? {},
    node_name: s.requirements.node_name ?? null,
    max_price_per_hour: s.requirements.max_price_per_hour ?? null,
    webhook_url: s.webhook_url ?? null,
    ...webhookViewOf(f, Boolean(s.webhook_url)),
    node_id: stillHeld ? f.node_id || null : null,
    gpu_indices: stillHeld ? (json(f.gpu_indices) as number[] | null) : null,
    attempts: Number(f.attempts ?? 0),
    progress: numOrNull(f.progress),
    exit_code: numOrNull(f.exit_code),
    error_message: f.error_message || null,
    result: json(f.result) as JobView['result'],
    worst_case_cost: numOrNull(f.worst_case_cost),
    hourly_rate: stillHeld ? numOrNull(f.hourly_rate) : null,
    cost: numOrNull(f.cost),
    gpu_hours: numOrNull(f.gpu_hours),
    created_at: iso(f.created_at),
    assigned_at: stillHeld ? isoOrNull(f.assigned_at) : null,
    started_at: stillHeld ? isoOrNull(f.started_at) : null,
    completed_at: isoOrNull(f.finished_at),
    cancel_requested_at: isoOrNull(f.cancel_requested_at),
  };
}

/**
 * What an agent sees of a job it runs: everything but where its owner wants to hear about it. A
 * webhook URL often carries a secret of its own (a chat hook's path, a `?token=`), and a node
 * operator is not the job's owner.
 */
export function agentJobView(view: JobView): JobView {
  return { ...view, webhook_url: null, webhook_status: null, webhook_deliveries: [] };
}
