import { createHash, timingSafeEqual } from 'node:crypto';
import { type Request, type RequestHandler, Router } from 'express';
import { UnauthorizedError } from '../../domain/errors.js';
import type { ApiMetrics } from '../../metrics/api-metrics.js';
import type { RouteContext } from '../context.js';

/** The label of requests no route answered (404s, and those refused before routing, such as a 401). */
export const UNMATCHED_ROUTE = 'unmatched';

/**
 * `GET /metrics`, outside /gpu-workers, in Prometheus' text format. Open unless
 * IMAGEPOD_METRICS_TOKEN is set; then it needs `Authorization: Bearer <that token>`.
 */
export function metricsRoutes(ctx: RouteContext): Router {
  const r = Router();
  const token = ctx.config.metricsToken;
  r.get('/metrics', async (req, res) => {
    if (token !== undefined && !bearerMatches(req, token)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="metrics"');
      throw new UnauthorizedError('the metrics need Authorization: Bearer <IMAGEPOD_METRICS_TOKEN>');
    }
    res.setHeader('Content-Type', ctx.metrics.registry.contentType);
    res.setHeader('Cache-Control', 'no-store');
    res.send(await ctx.metrics.registry.metrics());
  });
  return r;
}

function bearerMatches(req: Request, token: string): boolean {
  const m = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
  if (!m?.[1]) return false;
  // Hashes have equal lengths, so the comparison takes the same time whatever was sent.
  const digest = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(m[1]), digest(token));
}

/**
 * Times every request into `imagepod_http_request_duration_seconds`, labelled by the route
 * pattern it matched (`/gpu-workers/jobs/:jobId`), never the raw URL: ids would make a series each.
 */
export function requestMetrics(metrics: ApiMetrics): RequestHandler {
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    const route = matchedRoute(req);
    res.once('finish', () => {
      // A stream (events, followed logs) or a `?wait=` lasts as long as the client wants: its
      // duration says nothing of how fast the API answers, and would swamp the histogram.
      if (String(res.getHeader('content-type') ?? '').startsWith('text/event-stream') || req.query.wait !== undefined) return;
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      metrics.httpRequest(req.method, route() ?? UNMATCHED_ROUTE, res.statusCode, seconds);
    });
    next();
  };
}

/**
 * The pattern of the route a request matched, joined to the base URL of its router. Read when
 * Express sets `req.route`: an error unwinding the routers resets `req.baseUrl` before the
 * response ends, so reading both at the end would lose the prefix.
 */
function matchedRoute(req: Request): () => string | undefined {
  let route: unknown;
  let pattern: string | undefined;
  Object.defineProperty(req, 'route', {
    configurable: true,
    enumerable: true,
    get: () => route,
    set: (value: unknown) => {
      route = value;
      const path = (value as { path?: unknown } | undefined)?.path;
      if (typeof path === 'string') pattern = `${req.baseUrl}${path}`;
    },
  });
  return () => pattern;
}
