import { randomUUID } from 'node:crypto';
import express, { type Express } from 'express';
import { pinoHttp } from 'pino-http';
import { errWithoutStack } from '../logger.js';
import { withLogFields } from '../util/log-context.js';
import { authenticate, personTokenVerifier } from './auth.js';
import { adminsOnly, BULL_BOARD_PATH, bullBoard } from './bull-board.js';
import type { RouteContext } from './context.js';
import { dashboardStatic } from './dashboard-static.js';
import { errorHandler, notFoundHandler } from './errors.js';
import { jsonBodyGuard, refuseInvalidUtf8 } from './json-body.js';
import { operations } from './openapi/operations.js';
import { limitRefusedTokens } from './rate-limit.js';
import { accountingRoutes } from './routes/accounting.js';
import { agentRoutes } from './routes/agents.js';
import { healthRoutes } from './routes/health.js';
import { identityRoutes } from './routes/identity.js';
import { jobRoutes } from './routes/jobs.js';
import { metricsRoutes, requestMetrics } from './routes/metrics.js';
import { nodeRoutes } from './routes/nodes.js';
import { openapiRoutes } from './routes/openapi.js';
import { overviewRoutes } from './routes/overview.js';
import { sessionRoutes } from './routes/session.js';
import { webhookRoutes } from './routes/webhooks.js';
import { refuseUndeclaredInputs } from './strict-inputs.js';

/** Route prefix of the original README's API. */
export const API_BASE = '/gpu-workers';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function createApp(ctx: RouteContext): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');
  // Behind a TLS-terminating proxy, X-Forwarded-Proto makes req.secure (and the cookie's Secure) true.
  const trustProxy = ctx.config.trustProxy;
  app.set('trust proxy', typeof trustProxy === 'object' ? [...trustProxy] : trustProxy);
  app.use(
    pinoHttp({
      logger: ctx.logger,
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'info' : 'debug'),
      serializers: {
        req: (req: { id: unknown; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
        err: errWithoutStack,
      },
    }),
  );
  app.use((req, _res, next) => withLogFields({ reqId: String(req.id) }, next));
  app.use(ctx.shutdown.track);
  app.use(requestMetrics(ctx.metrics));
  app.use(healthRoutes(ctx));
  app.use(metricsRoutes(ctx));
  app.use(openapiRoutes(ctx, API_BASE));
  app.use(express.json({ limit: ctx.config.limits.bodyBytes, strict: true, verify: refuseInvalidUtf8 }));
  app.use(jsonBodyGuard);

  const api = express.Router();
  // A query string or body a route does not take is a 400 naming it (see strict-inputs.ts).
  const ops = operations({
    apiBase: API_BASE,
    pageSizeMax: ctx.config.limits.pageSizeMax,
    jobWaitMaxSeconds: ctx.config.jobWaitMaxSeconds,
  });
  api.use(refuseUndeclaredInputs(ops, 'public'));
  api.use(sessionRoutes(ctx, personTokenVerifier(ctx.config)));
  api.use(limitRefusedTokens(ctx.rateLimits, authenticate(ctx.passport, ctx.sessions)));
  api.use(refuseUndeclaredInputs(ops, 'guarded'));
  api.use(nodeRoutes(ctx));
  api.use(jobRoutes(ctx));
  api.use(agentRoutes(ctx));
  api.use(accountingRoutes(ctx));
  api.use(identityRoutes(ctx));
  api.use(overviewRoutes(ctx));
  api.use(webhookRoutes(ctx));
  app.use(API_BASE, api);
  app.use(
    BULL_BOARD_PATH,
    limitRefusedTokens(ctx.rateLimits, authenticate(ctx.passport, ctx.sessions)),
    adminsOnly,
    bullBoard(ctx.watchQueues),
  );
  app.use(dashboardStatic(ctx.config.dashboardDir));

  app.use(notFoundHandler);
  app.use(errorHandler(ctx.logger));
  return app;
}
