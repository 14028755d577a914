import { z } from 'zod';
import { isoTime } from './common.js';

const BUDGET_PERIODS = ['day', 'week', 'month', 'total'] as const;

/** `PUT /users/{id}/limits`: each field set to a number, cleared with null, or left out to keep. */
export const userLimitsBody = z.strictObject({
  max_running_jobs: z.number().int().min(1).max(1_000_000).nullable().optional().describe('fair share: jobs running at once'),
  money_budget: z.number().min(0).max(1e12).nullable().optional().describe('per period, in the currency of the node prices'),
  gpu_hours_budget: z.number().min(0).max(1e12).nullable().optional().describe('per period'),
  budget_period: z.enum(BUDGET_PERIODS).optional().describe('UTC day, ISO week, calendar month, or all time'),
});
export type UserLimitsBody = z.infer<typeof userLimitsBody>;

export const userLimitsView = z.object({
  user_id: z.string(),
  max_running_jobs: z.number().int().nullable(),
  money_budget: z.number().nullable(),
  gpu_hours_budget: z.number().nullable(),
  budget_period: z.enum(BUDGET_PERIODS),
  running_jobs: z.number().int(),
  spent_money: z.number().describe('in the current period'),
  spent_gpu_hours: z.number(),
  held_money: z.number().describe("unfinished jobs' worst case, held against the budget"),
  held_gpu_hours: z.number(),
});

export const usageQuery = z.strictObject({
  from: z.iso.datetime().optional().describe('default: 30 days ago'),
  to: z.iso.datetime().optional().describe('default: now'),
  group_by: z.enum(['user', 'node']).default('user'),
  user_id: z.string().min(1).max(128).optional().describe('admins: one user; users: only themselves'),
});

const usageGroup = z.object({
  key: z.string().describe('the user id or node id'),
  jobs: z.number().int(),
  gpu_hours: z.number(),
  cost: z.number(),
});

export const usageView = z.object({
  from: isoTime(),
  to: isoTime(),
  group_by: z.enum(['user', 'node']),
  groups: z.array(usageGroup),
  total: usageGroup.omit({ key: true }),
});
