import { existsSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Router } from 'express';

/** The dashboard loads only its own scripts and talks only to this origin; no framing. */
const CSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/** Paths that belong to the API, never to the dashboard's client-side routes. */
const NOT_DASHBOARD = /^\/(gpu-workers|admin|metrics|openapi\.json|docs|healthz|readyz)(\/|$)/;

/**
 * The dashboard's static files at `/`, with index.html for any other GET that is not the
 * API's, so a deep link works. Hashed assets are cached for good; index.html never is.
 */
export function dashboardStatic(dir: string): Router {
  const router = express.Router();
  const index = join(dir, 'index.html');
  if (!existsSync(index)) {
    router.get('/', (_req, res) => {
      res
        .status(503)
        .type('html')
        .send('<!doctype html><title>ImagePod</title><p>The dashboard is not built. Run <code>npm run build:dashboard</code>.</p>');
    });
    return router;
  }
  router.use(
    express.static(dir, {
      index: false,
      setHeaders: (res, path) => {
        res.setHeader('Content-Security-Policy', CSP);
        res.setHeader('Cache-Control', path.includes('/assets/') ? 'public, max-age=31536000, immutable' : 'no-cache');
      },
    }),
  );
  router.get(/.*/, (req, res, next) => {
    // Only a browser's page load (it names text/html); API clients sending */* get the JSON 404.
    if (NOT_DASHBOARD.test(req.path) || !(req.get('accept') ?? '').includes('text/html')) return next();
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Content-Security-Policy', CSP);
    res.sendFile(index);
  });
  return router;
}
