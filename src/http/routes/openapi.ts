import { readFileSync } from 'node:fs';
import { Router } from 'express';
import type { RouteContext } from '../context.js';
import { buildOpenApiDocument } from '../openapi/document.js';
import { renderReferencePage } from '../openapi/html.js';
import { operations } from '../openapi/operations.js';

const DESCRIPTION = [
  "ImagePod turns a fleet of GPU servers into one job queue. Every route under `/gpu-workers` takes and returns snake_case JSON and needs credentials: a person's JWT (or the dashboard session cookie), an agent's API key, or, only to register, the registration token.",
  'Lists take `?limit=` and `?cursor=` and answer `{"items": [...], "next_cursor": "..." | null}`. Errors answer `{"error", "message", "fields"?, "request_id"}`; a thing the caller may not see is a 404.',
].join('\n\n');

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * `GET /openapi.json` and `GET /docs`, without credentials. The document is built once, here,
 * from the same zod schemas the routes validate with; the page is rendered from it.
 */
export function openapiRoutes(ctx: RouteContext, apiBase: string): Router {
  const doc = buildOpenApiDocument(
    operations({ apiBase, pageSizeMax: ctx.config.limits.pageSizeMax, jobWaitMaxSeconds: ctx.config.jobWaitMaxSeconds }),
    {
      title: 'ImagePod API',
      version: packageVersion(),
      description: DESCRIPTION,
    },
  );
  const json = JSON.stringify(doc);
  const page = renderReferencePage(doc);

  const r = Router();
  r.get('/openapi.json', (_req, res) => {
    res.type('application/json').set('Cache-Control', 'no-cache').send(json);
  });
  r.get('/docs', (_req, res) => {
    res.type('html').set('Cache-Control', 'no-cache').send(page);
  });
  return r;
}
