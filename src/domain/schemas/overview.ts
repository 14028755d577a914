import { z } from 'zod';
import { JOB_STATUSES } from '../job-status.js';
import { isoTime } from './common.js';

/** A queued job among the oldest of its tier, and why it waits. */
export const waitingJob = z.object({
  job_id: z.uuid(),
  user_id: z.string(),
  job_name: z.string(),
  waited_seconds: z.number(),
  gpu_count: z.number().int(),
  gpu_memory_mib: z.number().int(),
  wait_reason: z.string().nullable(),
});

/** One tier's queues (the tier's and its GPU families') added up. */
export const queueSummary = z.object({
  tier: z.string(),
  min_gpu_memory_mib: z.number().int().describe('jobs asking more than this per GPU (MiB) land here'),
  max_gpu_memory_mib: z.number().int().describe('and at most this'),
  waiting: z.number().int().describe('waiting and prioritized'),
  active: z.number().int(),
  delayed: z.number().int(),
  failed: z.number().int(),
  completed: z.number().int(),
  pending_jobs: z.number().int().describe('queued jobs, as the status changes count them'),
  pending_gpu_memory_mib: z.number().int().describe('GPU memory the queued jobs ask for, over all their GPUs'),
  oldest_waiting: z.array(waitingJob).describe('up to 5; people other than admins see only their own jobs here'),
});
export type QueueSummary = z.infer<typeof queueSummary>;
export const queueList = z.object({ items: z.array(queueSummary) });

export const fleetSummary = z.object({
  nodes_by_status: z.record(z.string(), z.number().int()),
  gpus_total: z.number().int(),
  gpu_memory_total_mib: z.number().int().describe('over live nodes'),
  gpu_memory_free_mib: z.number().int().describe('over live nodes'),
});
export type FleetSummary = z.infer<typeof fleetSummary>;

export const timelineQuery = z.strictObject({
  minutes: z.coerce.number().int().min(1).max(120).default(60),
});

export const timelinePoint = z.object({
  at: isoTime().describe('the start of the minute'),
  jobs_started: z.number().int(),
  jobs_finished: z.number().int(),
  gpu_memory_used_mib: z.number().int().nullable().describe('null where no sample was taken'),
  gpu_memory_total_mib: z.number().int().nullable(),
});
export const timeline = z.object({
  step_seconds: z.literal(60),
  points: z.array(timelinePoint).describe('oldest first'),
});
export type Timeline = z.infer<typeof timeline>;

/** What `GET /events` sends. */
export const jobEventView = z.object({
  job_id: z.uuid(),
  user_id: z.string(),
  status: z.enum(JOB_STATUSES),
  previous: z.enum(JOB_STATUSES).nullable(),
  node_id: z.string().nullable(),
  progress: z.number().nullable(),
  final: z.boolean(),
  at: isoTime(),
});
export const tickView = z.object({
  at: isoTime(),
  queues: z.array(queueSummary),
  fleet: fleetSummary,
});
