import { type Request, type Response, Router } from 'express';
import { isFinal } from '../../domain/job-status.js';
import {
  type JobBatchCreated,
  type JobLogsAccepted,
  type JobStatusBatchResults,
  jobBatchBody,
  jobCreateBody,
  jobCreateQuery,
  jobListQuery,
  jobLogAppend,
  jobLogsQuery,
  jobStatusBatch,
  jobStatusReport,
} from '../../domain/schemas/job.js';
import { IDEMPOTENCY_HEADER, parseIdempotencyKey } from '../../services/idempotency.js';
import { toLogLine } from '../../services/job-service.js';
import { allow, Caller, principalOf } from '../auth.js';
import type { RouteContext } from '../context.js';
import { jobIdOf } from '../ids.js';
import { limitSubmissions } from '../rate-limit.js';
import { openEventStream } from '../sse.js';
import { parse } from '../validate.js';
import { waitForJob } from '../wait-for-job.js';

export function jobRoutes(ctx: RouteContext): Router {
  const r = Router();
  const { jobs } = ctx;
  const people = allow(Caller.User);
  const peopleOrAgents = allow(Caller.User, Caller.Agent);
  const agentsOrAdmins = allow(Caller.Agent, Caller.Admin);
  const listQuery = jobListQuery(ctx.config.limits.pageSizeMax);
  const createQuery = jobCreateQuery(ctx.config.jobWaitMaxSeconds);

  r.post('/jobs/batch', people, limitSubmissions(ctx.rateLimits, 'batch'), async (req, res) => {
    const p = principalOf(req);
    if (p.kind !== 'user') return;
    const body = parse(jobBatchBody, req.body);
    const key = parseIdempotencyKey(req.get(IDEMPOTENCY_HEADER));
    const answer = await ctx.idempotency.submit(
      p.userId,
      key,
      { kind: 'batch', body, jobs: body.jobs.length },
      201,
      async (fixed): Promise<JobBatchCreated> => ({ items: await jobs.createBatch(p.userId, body.jobs, fixed) }),
    );
    if (answer.replayed) res.set('Idempotent-Replayed', 'true');
    res.status(answer.status).json(answer.body);
  });

  r.post('/jobs', people, limitSubmissions(ctx.rateLimits, 'one'), async (req, res) => {
    const p = principalOf(req);
    if (p.kind !== 'user') return;
    const q = parse(createQuery, req.query, 'query');
    const body = parse(jobCreateBody, req.body);
    const key = parseIdempotencyKey(req.get(IDEMPOTENCY_HEADER));
    // A repeat answers as the first request did (the job as submitted); with `wait` it waits again.
    const answer = await ctx.idempotency.submit(p.userId, key, { kind: 'job', body, jobs: 1 }, 201, (fixed) =>
      jobs.create(p.userId, body, fixed),
    );
    const job = answer.body;
    if (answer.replayed) res.set('Idempotent-Replayed', 'true');
    res.location(`${req.baseUrl}/jobs/${job.id}`);
    if (q.wait === undefined) {
      res.status(answer.status).json(job);
      return;
    }
    // ?wait=: 200 with the finished job if it ends in time, else 201 with it as it is then.
    const now = await waitForJob(ctx, res, p, job.id, q.wait);
    if (now !== null) res.status(isFinal(now.status) ? 200 : 201).json(now);
  });

  r.get('/jobs', people, async (req, res) => {
    const q = parse(listQuery, req.query, 'query');
    res.json(await jobs.list(principalOf(req), { status: q.status, user_id: q.user_id }, q.limit, q.cursor));
  });

  r.get('/jobs/:jobId', peopleOrAgents, async (req, res) => {
    res.json(await jobs.get(principalOf(req), jobIdOf(req.params)));
  });

  r.post('/jobs/status/batch', agentsOrAdmins, async (req, res) => {
    res.json({
      results: await ctx.reports.reportMany(principalOf(req), parse(jobStatusBatch, req.body).reports),
    } satisfies JobStatusBatchResults);
  });

  r.post('/jobs/:jobId/status', agentsOrAdmins, async (req, res) => {
    const id = jobIdOf(req.params);
    res.json(await ctx.reports.report(principalOf(req), id, parse(jobStatusReport, req.body)));
  });

  r.post('/jobs/:jobId/cancel', people, async (req, res) => {
    res.json(await jobs.cancel(principalOf(req), jobIdOf(req.params)));
  });

  r.post('/jobs/:jobId/logs', agentsOrAdmins, async (req, res) => {
    const n = await ctx.reports.appendLogs(principalOf(req), jobIdOf(req.params), parse(jobLogAppend, req.body));
    res.status(202).json({ accepted: n } satisfies JobLogsAccepted);
  });

  r.get('/jobs/:jobId/logs', peopleOrAgents, async (req, res) => {
    const id = jobIdOf(req.params);
    const q = parse(jobLogsQuery, req.query, 'query');
    const p = principalOf(req);
    if (q.follow === 'true' || q.follow === '1') {
      const after = q.after ?? req.get('last-event-id') ?? undefined;
      const first = await jobs.readLogs(p, id, after, q.limit);
      await followLogs(ctx, req, res, await jobs.logStreamKey(p, id), first, async () => {
        const { job_status } = await jobs.readLogs(p, id, undefined, 1);
        return isFinal(job_status) ? job_status : null;
      });
      return;
    }
    res.json(await jobs.readLogs(p, id, q.after, q.limit));
  });

  return r;
}

/**
 * Server-sent events: every log line as it is written (`event: line`), a comment every few
 * seconds to keep proxies from closing the stream, and `event: end` once the job has ended.
 * Reconnecting with `Last-Event-ID` resumes after the last line seen.
 */
async function followLogs(
  ctx: RouteContext,
  req: Request,
  res: Response,
  streamKey: string,
  first: { items: { id: string }[]; next_cursor: string | null },
  ended: () => Promise<string | null>,
): Promise<void> {
  if (!openEventStream(req, res)) return;
  const send = (event: string, data: unknown, id?: string) =>
    res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  for (const line of first.items) send('line', line, line.id);
  let last = first.next_cursor ?? '0-0';
  const conn = ctx.blockingConnection();
  let open = true;
  // Ends the stream when the client goes, or when this API stops (the client resumes elsewhere
  // with Last-Event-ID).
  const close = () => {
    open = false;
    conn.disconnect();
  };
  req.on('close', close);
  ctx.shutdown.signal.addEventListener('abort', close, { once: true });
  try {
    while (open) {
      const reply = await conn.xread('COUNT', 500, 'BLOCK', 2000, 'STREAMS', streamKey, last);
      const entries = reply?.[0]?.[1] ?? [];
      let sawSystemLine = false;
      for (const [id, kv] of entries) {
        const line = toLogLine(id, kv);
        send('line', line, id);
        sawSystemLine ||= line.stream === 'system';
        last = id;
      }
      // The API writes a system line when a job ends, so that is when to look; else on idle.
      if (entries.length === 0 || sawSystemLine) {
        const status = await ended();
        if (status !== null) {
          send('end', { status });
          break;
        }
        if (entries.length === 0) res.write(': keepalive\n\n');
      }
    }
  } catch (err) {
    if (open) ctx.logger.warn({ err: (err as Error).message, reqId: req.id }, 'log follow ended early');
  } finally {
    ctx.shutdown.signal.removeEventListener('abort', close);
    conn.disconnect();
    res.end();
  }
}
