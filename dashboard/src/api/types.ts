/**
 * The API's response types, inferred from its zod schemas: the dashboard never re-declares them,
 * so a change to a schema is a type error here.
 */
import type { z } from 'zod';
import type { usageView, userLimitsView } from '../../../src/domain/schemas/accounting';
import type { Page } from '../../../src/domain/schemas/common';
import type { MeView } from '../../../src/domain/schemas/identity';
import type { JobView, jobLogLine } from '../../../src/domain/schemas/job';
import type { NodeView } from '../../../src/domain/schemas/node';
import type { FleetSummary, jobEventView, QueueSummary, Timeline, tickView } from '../../../src/domain/schemas/overview';

export type { JobStatus } from '../../../src/domain/job-status';
export type { NodeStatus } from '../../../src/domain/node-status';
export type { FleetSummary, JobView, NodeView, Page, QueueSummary, Timeline };
export type Me = MeView;
export type GpuView = NodeView['gpus'][number];
export type UsageView = z.infer<typeof usageView>;
export type UserLimitsView = z.infer<typeof userLimitsView>;
export type JobLogLine = z.infer<typeof jobLogLine>;
/** `GET /events`: `tick` every 2 s, `job` on each status change. */
export type Tick = z.infer<typeof tickView>;
export type JobEventMessage = z.infer<typeof jobEventView>;
