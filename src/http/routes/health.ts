import { Router } from 'express';
import type { HealthView, NotReadyView, ReadyView } from '../../domain/schemas/health.js';
import type { RouteContext } from '../context.js';

/** /healthz: the process answers. /readyz: and it can reach Redis, so it can serve. */
export function healthRoutes(ctx: RouteContext): Router {
  const r = Router();
  r.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' } satisfies HealthView);
  });
  r.get('/readyz', async (_req, res) => {
    // A stopping process is not ready whatever Redis says, so that traffic moves away first.
    const stopping = ctx.shutdown.stopping ? { stopping: true } : {};
    try {
      await Promise.race([ctx.ping(), new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref())]);
      if (ctx.shutdown.stopping) res.status(503).json({ status: 'not_ready', redis: 'ok', ...stopping } satisfies NotReadyView);
      else res.json({ status: 'ready', redis: 'ok' } satisfies ReadyView);
    } catch {
      res.status(503).json({ status: 'not_ready', redis: 'unreachable', ...stopping } satisfies NotReadyView);
    }
  });
  return r;
}
