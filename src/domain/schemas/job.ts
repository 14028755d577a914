import { z } from 'zod';
import { JOB_STATUSES } from '../job-status.js';
import { WEBHOOK_STATUSES } from '../webhooks.js';
import { isoTime, labels, mib, pageOf, paginationQuery } from './common.js';

/** A registry host (with optional port), then lowercase path components, as Docker's reference grammar. */
const IMAGE_NAME =
  /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?\/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Environment variables that are the node's to set, never a job's. NVIDIA_* are the NVIDIA
 * container runtime's switches: NVIDIA_VISIBLE_DEVICES=all hands a container every GPU where
 * that runtime is the engine's default, and NVIDIA_GDS, _MOFED, _NVSWITCH, _GDRCOPY add device
 * nodes. CUDA_VISIBLE_DEVICES is set for the devices a job was given. LD_* steer the dynamic
 * loader, and the runtime's hooks run on the host with the container's environment
 * (CVE-2025-23266): set them in the image or the command, where they reach only the job. IMAGEPOD_*
 * are the job's paths and input, set by the agent.
 */
export function reservedEnvProblem(name: string): string | null {
  if (name.startsWith('NVIDIA_')) return "NVIDIA_* variables are the container runtime's: the node sets them for the GPUs a job is given";
  if (name === 'CUDA_VISIBLE_DEVICES') return 'set by the node for the GPUs a job is given';
  if (name.startsWith('LD_')) return "LD_* variables would reach the runtime's hooks on the host: set them in the image or the command";
  if (name.startsWith('IMAGEPOD_')) return 'IMAGEPOD_* variables are set by the agent';
  return null;
}

/** A NUL cannot be passed to a process (execve refuses it): the container would fail to start, blamed on the node. */
const withoutNul = (max: number, what: string) =>
  z
    .string()
    .max(max)
    .refine((s) => !s.includes('\u0000'), `${what} may not contain NUL characters`);
const argument = () => withoutNul(8192, 'an argument');

const envName = () =>
  z
    .string()
    .regex(ENV_NAME, 'environment variable names are [A-Za-z_][A-Za-z0-9_]*')
    .superRefine((name, ctx) => {
      const problem = reservedEnvProblem(name);
      if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
    });

/**
 * What a job's command, arguments and environment may add up to: the kernel refuses more than
 * about 2 MiB to execve (E2BIG), which would fail the container at start and be blamed on the node.
 */
export const MAX_ARGV_ENV_BYTES = 1024 * 1024;

export const MAX_GPUS_PER_JOB = 16;
/** The last millisecond of year 9999: a later time has no ISO-8601 form with a four-digit year. */
const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** The body of `POST /jobs/`. Unknown fields are refused, so a misspelt requirement is not silently dropped. */
const jobCreateFields = z.strictObject({
  job_name: z.string().trim().min(1).max(200).optional(),
  docker_image: z.string().min(1).max(512).describe('image reference; may carry :tag or @sha256:digest, then docker_tag must be omitted'),
  docker_tag: z.string().regex(TAG, 'a Docker tag: letters, digits, _ . - (max 128)').optional(),
  command: z.array(argument()).max(256).optional().describe('replaces the image entrypoint'),
  args: z.array(argument()).max(1024).optional().describe('replaces the image CMD'),
  env: z
    .record(envName(), withoutNul(32768, 'a value'))
    .refine((r) => Object.keys(r).length <= 256, 'at most 256 variables')
    .optional()
    .describe("environment variables; NVIDIA_*, CUDA_VISIBLE_DEVICES, LD_* and IMAGEPOD_* are the node's to set"),
  input_data: z.json().optional().describe('delivered to the container as /imagepod/input.json'),
  gpu_memory_required: mib().default(0).describe('MiB on each GPU'),
  gpu_count: z
    .number()
    .int()
    .min(0)
    .max(MAX_GPUS_PER_JOB)
    .optional()
    .describe('GPUs on one node; default 1 when gpu_memory_required > 0, else 0 (CPU-only)'),
  gpu_type: z.string().trim().min(1).max(200).optional().describe('a model ("RTX 4090", "H200") or a class ("H100|H200")'),
  cpu_cores_required: z.number().positive().max(1024).default(1),
  memory_required: mib().default(1024).describe('RAM in MiB'),
  timeout_seconds: z.number().int().min(1).optional().describe('default 86400; the configured maximum applies'),
  max_retries: z.number().int().min(0).max(20).default(0),
  priority: z.number().int().min(0).max(1000).default(0).describe('higher runs first'),
  registry_secret: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'the name of a registry credential configured on the nodes')
    .optional()
    .describe('pull the image with this named credential from the node configuration; never shown back'),
  node_selector: labels().optional().describe('run only on nodes with all these labels'),
  node_name: z
    .string()
    .regex(/^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/, 'a node name')
    .optional()
    .describe('run only on the node of this name'),
  max_price_per_hour: z
    .number()
    .min(0)
    .max(1_000_000)
    .optional()
    .describe("the most this job may cost per hour on a node (its share of the node's prices)"),
  webhook_url: z
    .url({ protocol: /^https?$/, error: 'an http or https URL' })
    .max(2048)
    .optional()
    .describe("POSTed the job's final state, signed with the owner's webhook secret"),
});
/** The body of `POST /jobs/`, with the checks that span fields. */
export const jobCreateBody = jobCreateFields.superRefine((b, ctx) => {
  const bytes = (list: readonly string[] | undefined) => (list ?? []).reduce((n, s) => n + Buffer.byteLength(s) + 1, 0);
  const env = Object.entries(b.env ?? {}).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v) + 2, 0);
  if (bytes(b.command) + bytes(b.args) + env > MAX_ARGV_ENV_BYTES) {
    ctx.addIssue({ code: 'custom', path: ['env'], message: `command, args and env together may not exceed ${MAX_ARGV_ENV_BYTES} bytes` });
  }
});
export type JobCreateBody = z.infer<typeof jobCreateBody>;

/** `POST /jobs/batch`: up to 1,000 jobs at once; all valid and within budget, or none submitted. */
export const MAX_BATCH_JOBS = 1000;
export const jobBatchBody = z.strictObject({
  jobs: z.array(jobCreateBody).min(1).max(MAX_BATCH_JOBS),
});

export const DEFAULT_JOB_TIMEOUT_SECONDS = 86_400;

/** A job's requirements, normalized: what the scheduler and the agent compare with a node. */
export const jobRequirements = z.object({
  gpu_count: z.number().int().min(0),
  gpu_memory_mib: z.number().int().min(0),
  gpu_type: z.string().nullable(),
  cpu_cores: z.number().positive(),
  memory_mib: z.number().int().min(0),
  node_selector: z.record(z.string(), z.string()),
  node_name: z.string().nullable(),
  max_price_per_hour: z.number().nullable(),
});
export type JobRequirements = z.infer<typeof jobRequirements>;

/** A job's full spec as it is stored, enqueued and run. */
export const jobSpec = z.object({
  job_name: z.string(),
  image: z.string().describe('full reference: name:tag or name@digest'),
  docker_image: z.string(),
  docker_tag: z.string().nullable(),
  docker_digest: z.string().nullable(),
  command: z.array(z.string()).nullable(),
  args: z.array(z.string()).nullable(),
  env: z.record(z.string(), z.string()),
  input_data: z.json().nullable(),
  requirements: jobRequirements,
  timeout_seconds: z.number().int().positive(),
  max_retries: z.number().int().min(0),
  priority: z.number().int().min(0),
  registry_secret: z.string().nullable(),
  /** Absent in specs stored before webhooks existed. */
  webhook_url: z.string().nullable().optional(),
});
export type JobSpec = z.infer<typeof jobSpec>;

/**
 * What travels in a BullMQ job: what is needed to choose it, versioned so an agent can refuse a
 * payload it does not understand. The spec itself lives once, in the job's record; the agent
 * gets it in the API's answer to its `assigned` report.
 */
export const JOB_PAYLOAD_VERSION = 2;
export const jobPayload = z.object({
  v: z.literal(JOB_PAYLOAD_VERSION),
  /** Must stay the second key: the claim script matches `{"v":2,"req":"..."` at the start. */
  req: z.string(),
  job_id: z.uuid(),
  owner: z.string(),
  tier: z.string(),
});
export type JobPayload = z.infer<typeof jobPayload>;

/**
 * Whether an image's registry is the node itself or link-local (where cloud metadata answers):
 * Docker talks plain HTTP to a loopback registry, so such a name would turn pulls into requests
 * to the node's own ports. A cache on each node belongs in the engine's `registry-mirrors`.
 */
function nodeLocalRegistry(name: string): boolean {
  const first = name.split('/')[0] ?? '';
  if (!name.includes('/') || !/[.:]|^localhost$/.test(first)) return false;
  const host = first.replace(/:\d+$/, '').toLowerCase();
  const v4 = /^(\d+)\.(\d+)\.\d+\.\d+$/.exec(host);
  return (
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    (v4 !== null && (v4[1] === '127' || v4[1] === '0' || (v4[1] === '169' && v4[2] === '254')))
  );
}

export function splitImageReference(
  image: string,
  tag: string | undefined,
): { name: string; tag: string | null; digest: string | null } | { error: string; field: string } {
  let name = image;
  let digest: string | null = null;
  const at = name.indexOf('@');
  if (at >= 0) {
    digest = name.slice(at + 1);
    name = name.slice(0, at);
    if (!DIGEST.test(digest)) return { field: 'docker_image', error: 'a digest looks like @sha256:<64 hex>' };
  }
  let embeddedTag: string | null = null;
  const colon = name.lastIndexOf(':');
  if (colon > name.lastIndexOf('/')) {
    embeddedTag = name.slice(colon + 1);
    name = name.slice(0, colon);
    if (!TAG.test(embeddedTag)) return { field: 'docker_image', error: `"${embeddedTag}" is not a valid tag` };
  }
  if (!IMAGE_NAME.test(name)) {
    return { field: 'docker_image', error: 'not a valid image name (e.g. pytorch/pytorch, ghcr.io/org/app)' };
  }
  if (nodeLocalRegistry(name)) {
    return { field: 'docker_image', error: 'a registry on the node itself or on the link-local network may not be pulled from' };
  }
  if (tag !== undefined && (embeddedTag !== null || digest !== null)) {
    return { field: 'docker_tag', error: 'docker_image already carries a tag or digest' };
  }
  const finalTag = tag ?? embeddedTag ?? (digest === null ? 'latest' : null);
  return { name, tag: finalTag, digest };
}

/** Body of `POST /jobs/{id}/status`: what an agent reports about a job it holds. */
export const jobStatusReport = z.strictObject({
  status: z.enum(JOB_STATUSES),
  gpu_indices: z.array(z.number().int().min(0).max(63)).max(64).optional().describe('with assigned: the devices the job got'),
  lock_token: z.string().min(1).max(200).optional().describe('the BullMQ lock token of the claim; required from agents'),
  progress: z.number().min(0).max(100).optional(),
  message: z.string().max(2000).optional(),
  exit_code: z.number().int().min(-1024).max(1024).optional(),
  reason: z
    .string()
    .regex(/^[a-z0-9_]{1,64}$/)
    .optional(),
  error_message: z.string().max(4000).optional(),
  result: z.json().optional(),
  ran_ms: z
    .number()
    .int()
    .min(0)
    .max(366 * 86_400_000)
    .optional()
    .describe('with a final status: how long the job ran, for one that ended before its running report was sent'),
});
export type JobStatusReport = z.infer<typeof jobStatusReport>;

/** `POST /jobs/status/batch`: several reports in one request; each is answered on its own. */
export const MAX_BATCH_REPORTS = 200;
export const jobStatusBatch = z.strictObject({
  reports: z
    .array(jobStatusReport.extend({ job_id: z.uuid() }))
    .min(1)
    .max(MAX_BATCH_REPORTS),
});

/** Body of `POST /jobs/{id}/logs`: lines an agent collected from the job's stdout and stderr. */
export const jobLogAppend = z.strictObject({
  lock_token: z.string().min(1).max(200).optional(),
  lines: z
    .array(
      z.strictObject({
        stream: z.enum(['stdout', 'stderr', 'system']),
        text: z.string().max(16384),
        time: z.number().int().positive().max(MAX_TIME_MS).optional().describe('ms since the epoch; default now'),
      }),
    )
    .min(1)
    .max(1000),
});
export type JobLogAppend = z.infer<typeof jobLogAppend>;

export const jobView = z.object({
  id: z.uuid(),
  job_id: z.uuid(),
  job_name: z.string(),
  user_id: z.string(),
  status: z.enum(JOB_STATUSES),
  status_reason: z.string().nullable(),
  status_message: z.string().nullable(),
  wait_reason: z.string().nullable().describe('why a queued job is not running yet; only on GET /jobs/{id}'),
  tier: z.string(),
  queue: z.string(),
  docker_image: z.string(),
  docker_tag: z.string().nullable(),
  image: z.string(),
  command: z.array(z.string()).nullable(),
  args: z.array(z.string()).nullable(),
  env: z.record(z.string(), z.string()),
  input_data: z.json().nullable(),
  gpu_memory_required: z.number().int(),
  gpu_count: z.number().int(),
  gpu_type: z.string().nullable(),
  cpu_cores_required: z.number(),
  memory_required: z.number().int(),
  timeout_seconds: z.number().int(),
  max_retries: z.number().int(),
  priority: z.number().int(),
  registry_secret: z.string().nullable(),
  node_selector: z.record(z.string(), z.string()),
  node_name: z.string().nullable().describe('the node this job must run on, if the submitter pinned one'),
  max_price_per_hour: z.number().nullable(),
  webhook_url: z.string().nullable(),
  webhook_status: z
    .enum(WEBHOOK_STATUSES)
    .nullable()
    .describe('pending until a delivery is answered 2xx (delivered) or every attempt failed (failed); null without webhook_url'),
  webhook_deliveries: z
    .array(
      z.object({
        attempt: z.number().int().min(1),
        at: isoTime(),
        status_code: z.number().int().nullable().describe("the receiver's HTTP status; null when there was no answer"),
        error: z.string().nullable(),
        duration_ms: z.number().int().min(0),
      }),
    )
    .describe('every delivery attempt of the webhook, oldest first'),
  node_id: z.string().nullable().describe('the node running (or that ran) this job'),
  gpu_indices: z.array(z.number().int()).nullable(),
  attempts: z.number().int(),
  progress: z.number().nullable(),
  exit_code: z.number().int().nullable(),
  error_message: z.string().nullable(),
  result: z.json().nullable(),
  worst_case_cost: z.number().nullable().describe('timeout times the highest hourly price the job would accept'),
  hourly_rate: z.number().nullable().describe('what it costs per hour on the node it got'),
  cost: z.number().nullable().describe('what it cost: run time from container start to end, times the hourly rate'),
  gpu_hours: z.number().nullable(),
  created_at: isoTime(),
  assigned_at: isoTime().nullable(),
  started_at: isoTime().nullable(),
  completed_at: isoTime().nullable(),
  cancel_requested_at: isoTime().nullable(),
});
export type JobView = z.infer<typeof jobView>;
export const jobPage = pageOf(jobView);

export const jobLogLine = z.object({
  id: z.string().describe('stream id; pass as ?after= to read only newer lines'),
  time: isoTime(),
  stream: z.enum(['stdout', 'stderr', 'system']),
  text: z.string(),
});
export type JobLogLine = z.infer<typeof jobLogLine>;

/** `GET /jobs/`: a page of jobs, newest first. */
export const jobListQuery = (pageSizeMax: number) =>
  z.strictObject({
    ...paginationQuery(pageSizeMax),
    status: z.enum(JOB_STATUSES).optional(),
    user_id: z.string().min(1).max(128).optional().describe("admins: one user's jobs"),
  });

/** `GET /jobs/{id}/logs`. */
export const jobLogsQuery = z.strictObject({
  after: z.string().max(64).optional().describe('a line id: return only lines after it'),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
  follow: z.enum(['true', 'false', '1', '0']).optional().describe('stream the lines as server-sent events until the job ends'),
});

export const jobLogPage = pageOf(jobLogLine).extend({ job_status: z.enum(JOB_STATUSES) });
export type JobLogPage = z.infer<typeof jobLogPage>;

/** `POST /jobs/batch`: the jobs submitted, in the order given. */
export const jobBatchCreated = z.object({ items: z.array(jobView) });
export type JobBatchCreated = z.infer<typeof jobBatchCreated>;

/** `POST /jobs/status/batch`: each report answered on its own, as its own request would have been. */
export const jobStatusBatchResults = z.object({
  results: z.array(
    z.discriminatedUnion('ok', [
      z.object({ job_id: z.string(), ok: z.literal(true), job: jobView }),
      z.object({
        job_id: z.string(),
        ok: z.literal(false),
        status: z.number().int().describe('the HTTP status this report alone would have got'),
        error: z.string(),
        message: z.string(),
      }),
    ]),
  ),
});
export type JobStatusBatchResults = z.infer<typeof jobStatusBatchResults>;

/** `POST /jobs/{id}/logs`. */
export const jobLogsAccepted = z.object({ accepted: z.number().int().describe('lines written') });
export type JobLogsAccepted = z.infer<typeof jobLogsAccepted>;

/** The last event of `GET /jobs/{id}/logs?follow=true`: the job ended, so the stream does. */
export const jobLogEnd = z.object({ status: z.enum(JOB_STATUSES) });

/** `POST /jobs/`: `?wait=` holds the request until the job ends, up to that many seconds (as RunPod's runsync). */
export const jobCreateQuery = (waitMaxSeconds: number) =>
  z.strictObject({
    wait: z.coerce
      .number({ error: 'a number of seconds' })
      .positive('more than 0 seconds')
      .max(waitMaxSeconds, `at most ${waitMaxSeconds} seconds`)
      .optional()
      .describe('answer 200 with the finished job if it ends within this many seconds, else 201 with the job as it is then'),
  });

/** The `Idempotency-Key` header of `POST /jobs/` and `POST /jobs/batch` (see services/idempotency.ts). */
export const idempotencyKey = z
  .string()
  .regex(/^[\x20-\x7e]{1,255}$/, '1-255 printable ASCII characters')
  .describe(
    'a repeat within 24 hours from the same user with the same key and body answers as the first request did (header ' +
      '`Idempotent-Replayed: true`) and submits nothing; the same key with another body is a 422 (`idempotency_key_reused`), ' +
      'one whose first request is still in progress a 409 (`idempotency_in_progress`, with `Retry-After`)',
  );
