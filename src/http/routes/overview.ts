import { Router } from 'express';
import { isAdmin } from '../../domain/roles.js';
import { timelineQuery } from '../../domain/schemas/overview.js';
import { SHARED_SUMMARY_MS } from '../../services/fleet-overview.js';
import type { JobEvent } from '../../services/job-events.js';
import { allow, Caller, principalOf } from '../auth.js';
import type { RouteContext } from '../context.js';
import { openEventStream } from '../sse.js';
import { parse } from '../validate.js';

/** How often `GET /events` sends the queues and the fleet. */
export const TICK_MS = 2_000;
/** Events a slow client may fall behind by before it is cut off (it reconnects and refetches). */
const MAX_BUFFERED_BYTES = 1 << 20;

/** The system at a glance: queues per tier, the last hour, and a live feed of both and of jobs. */
export function overviewRoutes(ctx: RouteContext): Router {
  const r = Router();
  const people = allow(Caller.User);

  r.get('/queues', people, async (req, res) => {
    res.json({ items: await ctx.overview.queueSummaries(principalOf(req)) });
  });

  r.get('/stats/timeline', people, async (req, res) => {
    const q = parse(timelineQuery, req.query, 'query');
    res.json(await ctx.overview.timeline(q.minutes));
  });

  /**
   * Server-sent events: `job` for each status change of a job the caller may see (admins: all),
   * `tick` every two seconds with the queues and the fleet. Missed events are not replayed: a
   * client that reconnects refetches what it shows.
   */
  r.get('/events', people, async (req, res) => {
    const p = principalOf(req);
    const admin = isAdmin(p);
    const own = p.kind === 'user' ? p.userId : '';
    if (!openEventStream(req, res)) return;
    res.write('retry: 3000\n\n');
    let open = true;
    const send = (event: string, data: unknown) => {
      if (!open) return;
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        res.end();
        return;
      }
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    const unsubscribe = ctx.events.subscribe((e: JobEvent) => {
      if (admin || e.user_id === own) send('job', eventView(e));
    });
    const tick = async () => {
      try {
        const [queues, fleet] = await Promise.all([
          ctx.overview.queueSummaries(p, SHARED_SUMMARY_MS),
          ctx.overview.fleet(SHARED_SUMMARY_MS),
        ]);
        send('tick', { at: new Date().toISOString(), queues, fleet });
      } catch (err) {
        ctx.logger.warn({ err: (err as Error).message, reqId: req.id }, 'events: tick failed');
        if (open) res.write(': keepalive\n\n');
      }
    };
    const timer = setInterval(tick, TICK_MS);
    void tick();
    // A stopping API ends the stream; the browser's EventSource reconnects (to another replica).
    const end = () => res.end();
    ctx.shutdown.signal.addEventListener('abort', end, { once: true });
    req.on('close', () => {
      open = false;
      clearInterval(timer);
      unsubscribe();
      ctx.shutdown.signal.removeEventListener('abort', end);
    });
  });

  return r;
}

function eventView(e: JobEvent) {
  return {
    job_id: e.job_id,
    user_id: e.user_id,
    status: e.status,
    previous: e.previous,
    node_id: e.node_id,
    progress: e.progress,
    final: e.final,
    at: new Date(e.at).toISOString(),
  };
}
