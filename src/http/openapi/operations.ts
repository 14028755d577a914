import { z } from 'zod';
import { usageQuery, usageView, userLimitsBody, userLimitsView } from '../../domain/schemas/accounting.js';
import { agentConfig } from '../../domain/schemas/agent.js';
import { healthView, notReadyView, readyView } from '../../domain/schemas/health.js';
import { meView, tokenCreateBody, tokenCreated } from '../../domain/schemas/identity.js';
import {
  idempotencyKey,
  jobBatchBody,
  jobBatchCreated,
  jobCreateBody,
  jobCreateQuery,
  jobListQuery,
  jobLogAppend,
  jobLogEnd,
  jobLogLine,
  jobLogPage,
  jobLogsAccepted,
  jobLogsQuery,
  jobPage,
  jobStatusBatch,
  jobStatusBatchResults,
  jobStatusReport,
  jobView,
} from '../../domain/schemas/job.js';
import {
  agentRegisterBody,
  agentRegistered,
  agentView,
  availableNodesQuery,
  heartbeatAck,
  heartbeatBody,
  nodeListQuery,
  nodePage,
  nodePatchBody,
  nodeRegisterBody,
  nodeRegistered,
  nodeStats,
  nodeView,
} from '../../domain/schemas/node.js';
import { jobEventView, queueList, tickView, timeline, timelineQuery } from '../../domain/schemas/overview.js';
import { sessionBody } from '../../domain/schemas/session.js';
import { webhookSecretView } from '../../domain/schemas/webhook-secret.js';
import { Caller } from '../auth.js';
import { agentIdParam, jobIdParam, nodeIdParam, userIdParam } from '../ids.js';

/**
 * Every route the API serves, described once: the OpenAPI document and the reference page are
 * built from this list, with the same zod schemas the handlers parse with. A route that is not
 * here fails test/api/openapi.test.ts, which walks the real Express app.
 */

export const Tag = {
  Nodes: 'Nodes',
  Jobs: 'Jobs',
  Agents: 'Agents',
  Accounting: 'Accounting',
  Webhooks: 'Webhooks',
  Identity: 'Identity',
  Overview: 'Overview',
  Health: 'Health',
  Reference: 'Reference',
} as const;
export type Tag = (typeof Tag)[keyof typeof Tag];

export const TAG_DESCRIPTIONS: Record<Tag, string> = {
  Nodes: 'GPU servers: registration, heartbeats, placement, cordon and drain.',
  Jobs: 'Container jobs: submit, list, cancel, logs, and the reports agents send about them.',
  Agents: 'The agent process on each node and what the API tells it.',
  Accounting: 'GPU-hours, cost, budgets and the running-jobs cap.',
  Webhooks: "A job with `webhook_url` is POSTed its final state, signed with its owner's secret.",
  Identity: "Who the API takes the caller to be, tokens for people, and the dashboard's session.",
  Overview: 'The system at a glance: queues per tier, a timeline, and a live feed.',
  Health: 'Liveness and readiness, outside /gpu-workers, without credentials.',
  Reference: 'This document and its reference page.',
};

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface ResponseSpec {
  readonly description: string;
  /** An application/json body. */
  readonly schema?: z.ZodType;
  /** Another content type, described in words (server-sent events, HTML). */
  readonly other?: {
    readonly contentType: string;
    readonly description: string;
    /** Server-sent events: the JSON `data` of each event name. */
    readonly events?: Readonly<Record<string, z.ZodType>>;
  };
}

export interface OperationSpec {
  readonly method: HttpMethod;
  /** The path as Express registers it, mount prefix included: `/gpu-workers/jobs/:jobId`. */
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly tag: Tag;
  /** Who the route's `allow(...)` guard admits; empty for a route that needs no credentials. */
  readonly callers: readonly Caller[];
  /** Said beside the callers when a handler narrows them further ("an agent: its own node"). */
  readonly callersNote?: string;
  readonly query?: z.ZodObject;
  /** Request headers it reads, besides credentials. */
  readonly headers?: readonly HeaderSpec[];
  readonly body?: z.ZodType;
  readonly responses: Readonly<Record<number, ResponseSpec>>;
  /** Error statuses beyond those every operation of its kind can answer (see document.ts). */
  readonly errors?: readonly number[];
}

/** A request header an operation reads (never required). */
export interface HeaderSpec {
  readonly name: string;
  readonly schema: z.ZodType;
  readonly example: string;
}

/** Submissions: a client's retry with the same key never makes a second job. */
const IDEMPOTENCY_KEY: HeaderSpec = { name: 'Idempotency-Key', schema: idempotencyKey, example: '7f8e2b0c-train-run-42' };

/** Express path parameters, by their name in the route, with their name in the document. */
export const PATH_PARAMS: Readonly<Record<string, { name: string; schema: z.ZodType; example: string; description: string }>> = {
  nodeId: { name: 'node_id', schema: nodeIdParam, example: 'gpu-e5be90b5e5d6', description: 'a node id, from registration' },
  jobId: { name: 'job_id', schema: jobIdParam, example: '0f8fad5b-d9cb-469f-a165-70867728950e', description: 'a job id (UUID)' },
  agentId: { name: 'agent_id', schema: agentIdParam, example: 'agent-e5be90b5e5d6', description: 'an agent id, from registration' },
  userId: { name: 'user_id', schema: userIdParam, example: 'alice', description: "a person's id (the JWT subject)" },
};

const people = [Caller.User];
const admins = [Caller.Admin];
const peopleOrAgents = [Caller.User, Caller.Agent];
const agentsOrAdmins = [Caller.Agent, Caller.Admin];
const adminsOrAgents = [Caller.Admin, Caller.Agent];
const registrar = [Caller.Registrar, Caller.Admin];

/** The OpenAPI document itself, loosely: its own schema is the OpenAPI specification. */
const openApiDocumentBody = z.looseObject({ openapi: z.string(), info: z.looseObject({}), paths: z.record(z.string(), z.unknown()) });

export interface OperationsOptions {
  /** Where the authenticated API is mounted (`/gpu-workers`). */
  readonly apiBase: string;
  /** The configured largest page (`IMAGEPOD_PAGE_SIZE_MAX`), part of the list queries. */
  readonly pageSizeMax: number;
  /** The longest `POST /jobs?wait=`. */
  readonly jobWaitMaxSeconds: number;
}

export function operations({ apiBase, pageSizeMax, jobWaitMaxSeconds }: OperationsOptions): OperationSpec[] {
  const api = (path: string) => `${apiBase}${path}`;
  const adminState = (action: 'cordon' | 'uncordon' | 'drain', summary: string): OperationSpec => ({
    method: 'post',
    path: api(`/nodes/:nodeId/${action}`),
    operationId: `${action}Node`,
    summary,
    tag: Tag.Nodes,
    callers: admins,
    responses: { 200: { description: 'the node as it now stands', schema: nodeView } },
  });

  return [
    // Health and reference: no credentials.
    {
      method: 'get',
      path: '/healthz',
      operationId: 'healthz',
      summary: 'The process answers',
      tag: Tag.Health,
      callers: [],
      responses: { 200: { description: 'alive', schema: healthView } },
    },
    {
      method: 'get',
      path: '/readyz',
      operationId: 'readyz',
      summary: 'The process reaches Redis, so it can serve',
      tag: Tag.Health,
      callers: [],
      responses: {
        200: { description: 'ready', schema: readyView },
        503: { description: 'Redis does not answer, or this API process is stopping', schema: notReadyView },
      },
    },
    {
      method: 'get',
      path: '/metrics',
      operationId: 'metrics',
      summary: "The API's Prometheus metrics",
      description: 'Open unless `IMAGEPOD_METRICS_TOKEN` is set; then it needs `Authorization: Bearer <that token>`.',
      tag: Tag.Health,
      callers: [],
      responses: {
        200: { description: 'the metrics', other: { contentType: 'text/plain', description: "Prometheus' text exposition format" } },
      },
      errors: [401],
    },
    {
      method: 'get',
      path: '/openapi.json',
      operationId: 'openapiDocument',
      summary: 'This OpenAPI 3.1 document',
      tag: Tag.Reference,
      callers: [],
      responses: { 200: { description: 'the document, built from the schemas the routes validate with', schema: openApiDocumentBody } },
    },
    {
      method: 'get',
      path: '/docs',
      operationId: 'apiReference',
      summary: 'The API reference page',
      tag: Tag.Reference,
      callers: [],
      responses: {
        200: { description: 'a self-contained HTML page', other: { contentType: 'text/html', description: 'this document, rendered' } },
      },
    },

    // Nodes.
    {
      method: 'post',
      path: api('/nodes/register'),
      operationId: 'registerNode',
      summary: 'Register a GPU node; returns its agent API key once',
      tag: Tag.Nodes,
      callers: registrar,
      body: nodeRegisterBody,
      responses: { 201: { description: 'registered; `api_key` is shown only now', schema: nodeRegistered } },
      errors: [409],
    },
    {
      method: 'get',
      path: api('/nodes'),
      operationId: 'listNodes',
      summary: 'List nodes',
      tag: Tag.Nodes,
      callers: people,
      query: nodeListQuery(pageSizeMax),
      responses: { 200: { description: 'a page of nodes', schema: nodePage } },
    },
    {
      method: 'get',
      path: api('/nodes/:nodeId'),
      operationId: 'getNode',
      summary: 'A node, its GPUs and live figures',
      tag: Tag.Nodes,
      callers: peopleOrAgents,
      callersNote: 'an agent sees only its own node',
      responses: { 200: { description: 'the node', schema: nodeView } },
    },
    {
      method: 'get',
      path: api('/nodes/:nodeId/stats'),
      operationId: 'getNodeStats',
      summary: 'Uptime, jobs run, GPU-hours, utilisation',
      tag: Tag.Nodes,
      callers: peopleOrAgents,
      callersNote: 'an agent sees only its own node',
      responses: { 200: { description: "the node's statistics", schema: nodeStats } },
    },
    {
      method: 'post',
      path: api('/nodes/:nodeId/heartbeat'),
      operationId: 'heartbeat',
      summary: 'Live free resources and health',
      tag: Tag.Nodes,
      callers: agentsOrAdmins,
      callersNote: 'an agent only for its own node',
      body: heartbeatBody,
      responses: { 200: { description: 'what the node should know now', schema: heartbeatAck } },
      errors: [409],
    },
    adminState('cordon', 'No new jobs'),
    adminState('uncordon', 'Take jobs again'),
    adminState('drain', 'No new jobs; running ones finish'),
    {
      method: 'patch',
      path: api('/nodes/:nodeId'),
      operationId: 'patchNode',
      summary: 'Change prices, labels, max_concurrent_jobs',
      tag: Tag.Nodes,
      callers: admins,
      body: nodePatchBody,
      responses: { 200: { description: 'the node as it now stands', schema: nodeView } },
    },
    {
      method: 'delete',
      path: api('/nodes/:nodeId'),
      operationId: 'deleteNode',
      summary: 'Remove the node and revoke its key',
      tag: Tag.Nodes,
      callers: admins,
      responses: { 204: { description: 'removed' } },
    },
    {
      method: 'get',
      path: api('/available-nodes'),
      operationId: 'availableNodes',
      summary: 'Live, healthy, uncordoned nodes that fit, best fit first',
      tag: Tag.Nodes,
      callers: people,
      query: availableNodesQuery(pageSizeMax),
      responses: { 200: { description: 'a page of nodes, the one that would strand the least GPU memory first', schema: nodePage } },
    },

    // Jobs.
    {
      method: 'post',
      path: api('/jobs'),
      operationId: 'createJob',
      summary: 'Submit a job',
      tag: Tag.Jobs,
      callers: people,
      query: jobCreateQuery(jobWaitMaxSeconds),
      headers: [IDEMPOTENCY_KEY],
      body: jobCreateBody,
      responses: {
        200: { description: 'with `wait`: the job ended within the wait', schema: jobView },
        201: { description: 'queued (with `wait`: not ended yet); `worst_case_cost` is what it could cost at most', schema: jobView },
      },
      errors: [402, 409, 422],
    },
    {
      method: 'post',
      path: api('/jobs/batch'),
      operationId: 'createJobs',
      summary: 'Submit up to 1,000 jobs: all valid and within budget, or none',
      tag: Tag.Jobs,
      callers: people,
      headers: [IDEMPOTENCY_KEY],
      body: jobBatchBody,
      responses: { 201: { description: 'all queued, in the order given', schema: jobBatchCreated } },
      errors: [402, 409, 422],
    },
    {
      method: 'get',
      path: api('/jobs'),
      operationId: 'listJobs',
      summary: 'Your jobs, newest first (admins: everyone’s)',
      tag: Tag.Jobs,
      callers: people,
      query: jobListQuery(pageSizeMax),
      responses: { 200: { description: 'a page of jobs', schema: jobPage } },
    },
    {
      method: 'get',
      path: api('/jobs/:jobId'),
      operationId: 'getJob',
      summary: 'A job: spec, status, node, result, cost',
      tag: Tag.Jobs,
      callers: peopleOrAgents,
      callersNote: 'a user: own jobs; an agent: jobs on its node',
      responses: { 200: { description: 'the job', schema: jobView } },
    },
    {
      method: 'post',
      path: api('/jobs/:jobId/cancel'),
      operationId: 'cancelJob',
      summary: 'Cancel a queued or running job',
      tag: Tag.Jobs,
      callers: people,
      callersNote: 'its owner, or an admin',
      responses: { 200: { description: 'the job, cancelled', schema: jobView } },
      errors: [409],
    },
    {
      method: 'get',
      path: api('/jobs/:jobId/logs'),
      operationId: 'getJobLogs',
      summary: 'Log lines; `?follow=true` streams them',
      tag: Tag.Jobs,
      callers: peopleOrAgents,
      callersNote: 'its owner, admins, the agent running it',
      query: jobLogsQuery,
      responses: {
        200: {
          description: 'the lines after `after`, oldest first',
          schema: jobLogPage,
          other: {
            contentType: 'text/event-stream',
            description:
              'with `follow`: `event: line` for each line (its `id:` is the line id), then `event: end` once the job ended; `Last-Event-ID` resumes',
            events: { line: jobLogLine, end: jobLogEnd },
          },
        },
      },
    },
    {
      method: 'post',
      path: api('/jobs/:jobId/logs'),
      operationId: 'appendJobLogs',
      summary: 'Append log lines',
      tag: Tag.Jobs,
      callers: agentsOrAdmins,
      callersNote: 'the agent running it',
      body: jobLogAppend,
      responses: { 202: { description: 'written', schema: jobLogsAccepted } },
    },
    {
      method: 'post',
      path: api('/jobs/:jobId/status'),
      operationId: 'reportJobStatus',
      summary: "Report a job's status",
      description: 'Agents prove each report with the BullMQ lock token of their claim; an admin may end a job.',
      tag: Tag.Jobs,
      callers: agentsOrAdmins,
      callersNote: 'the agent running it, with its lock token',
      body: jobStatusReport,
      responses: { 200: { description: 'the job as it now stands', schema: jobView } },
      errors: [409],
    },
    {
      method: 'post',
      path: api('/jobs/status/batch'),
      operationId: 'reportJobStatuses',
      summary: 'Up to 200 status reports, each answered on its own',
      tag: Tag.Jobs,
      callers: agentsOrAdmins,
      body: jobStatusBatch,
      responses: { 200: { description: 'one result per report, in order', schema: jobStatusBatchResults } },
    },

    // Agents.
    {
      method: 'post',
      path: api('/agents/register'),
      operationId: 'registerAgent',
      summary: 'Register an agent and its node in one call',
      tag: Tag.Agents,
      callers: registrar,
      body: agentRegisterBody,
      responses: { 201: { description: 'registered; `api_key` is shown only now', schema: agentRegistered } },
      errors: [409],
    },
    {
      method: 'get',
      path: api('/agents/:agentId'),
      operationId: 'getAgent',
      summary: 'An agent: version, node, status, running jobs',
      tag: Tag.Agents,
      callers: adminsOrAgents,
      callersNote: 'an agent sees only itself',
      responses: { 200: { description: 'the agent', schema: agentView } },
    },
    {
      method: 'get',
      path: api('/agents/:agentId/config'),
      operationId: 'getAgentConfig',
      summary: 'Heartbeat interval, tiers and their queues, limits',
      tag: Tag.Agents,
      callers: adminsOrAgents,
      callersNote: 'an agent sees only its own',
      responses: { 200: { description: 'what the API tells its agents', schema: agentConfig } },
    },

    // Accounting.
    {
      method: 'get',
      path: api('/usage'),
      operationId: 'getUsage',
      summary: 'GPU-hours and cost from the ledger',
      tag: Tag.Accounting,
      callers: people,
      callersNote: "users: their own; admins: anyone's",
      query: usageQuery,
      responses: { 200: { description: 'usage, grouped', schema: usageView } },
    },
    {
      method: 'get',
      path: api('/users/:userId/limits'),
      operationId: 'getUserLimits',
      summary: 'Running-jobs cap, budgets, what is spent and held this period',
      tag: Tag.Accounting,
      callers: people,
      callersNote: 'the user, or an admin',
      responses: { 200: { description: "the user's limits and standing", schema: userLimitsView } },
    },
    {
      method: 'put',
      path: api('/users/:userId/limits'),
      operationId: 'setUserLimits',
      summary: 'Set the cap and budgets',
      tag: Tag.Accounting,
      callers: admins,
      body: userLimitsBody,
      responses: { 200: { description: "the user's limits and standing", schema: userLimitsView } },
    },
    {
      method: 'get',
      path: api('/users/:userId/webhook-secret'),
      operationId: 'getWebhookSecret',
      summary: "The secret that signs the user's job webhooks (made on first read)",
      tag: Tag.Webhooks,
      callers: people,
      callersNote: 'the user, or an admin',
      responses: { 200: { description: 'the secret', schema: webhookSecretView } },
    },
    {
      method: 'post',
      path: api('/users/:userId/webhook-secret/rotate'),
      operationId: 'rotateWebhookSecret',
      summary: 'A new webhook secret; deliveries from now on are signed with it',
      tag: Tag.Webhooks,
      callers: people,
      callersNote: 'the user, or an admin',
      responses: { 200: { description: 'the new secret', schema: webhookSecretView } },
    },

    // Identity and the dashboard's session.
    {
      method: 'post',
      path: api('/session'),
      operationId: 'createSession',
      summary: "Trade a person's JWT for a session cookie",
      description:
        'Answers `Set-Cookie: imagepod_session=...; HttpOnly; SameSite=Strict; Path=/`, valid for at most an hour and never past the token. Agent keys and the registration token make no session.',
      tag: Tag.Identity,
      callers: [],
      body: sessionBody,
      responses: { 204: { description: 'signed in: the cookie is set' } },
      errors: [401, 429],
    },
    {
      method: 'delete',
      path: api('/session'),
      operationId: 'deleteSession',
      summary: 'Sign out: clear the session cookie',
      tag: Tag.Identity,
      callers: [],
      responses: { 204: { description: 'the cookie is cleared' } },
    },
    {
      method: 'get',
      path: api('/me'),
      operationId: 'me',
      summary: 'Who the API takes the caller to be',
      tag: Tag.Identity,
      callers: [Caller.User, Caller.Agent, Caller.Registrar],
      responses: { 200: { description: 'the caller', schema: meView } },
    },
    {
      method: 'post',
      path: api('/tokens'),
      operationId: 'createToken',
      summary: "Mint a person's token",
      tag: Tag.Identity,
      callers: admins,
      body: tokenCreateBody,
      responses: { 201: { description: 'the token, shown once', schema: tokenCreated } },
      errors: [409],
    },

    // Overview.
    {
      method: 'get',
      path: api('/queues'),
      operationId: 'listQueues',
      summary: 'Queues per tier: counts, and the oldest waiting jobs and why they wait',
      tag: Tag.Overview,
      callers: people,
      callersNote: 'the oldest waiting jobs shown are your own unless you are an admin',
      responses: { 200: { description: 'one summary per tier', schema: queueList } },
    },
    {
      method: 'get',
      path: api('/stats/timeline'),
      operationId: 'timeline',
      summary: 'Jobs started and finished, and fleet GPU memory, per minute',
      tag: Tag.Overview,
      callers: people,
      query: timelineQuery,
      responses: { 200: { description: 'the last `minutes` minutes, oldest first', schema: timeline } },
    },
    {
      method: 'get',
      path: api('/events'),
      operationId: 'events',
      summary: 'Live job status changes, and the queues and fleet every 2 s',
      description: 'Missed events are not replayed: a client that reconnects refetches what it shows.',
      tag: Tag.Overview,
      callers: people,
      callersNote: 'users get their own jobs, admins all',
      responses: {
        200: {
          description: 'a stream that stays open',
          other: {
            contentType: 'text/event-stream',
            description: '`event: job` at each status change, `event: tick` every 2 s, `: keepalive` comments',
            events: { job: jobEventView, tick: tickView },
          },
        },
      },
    },
  ];
}
