import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { type FieldProblem, ValidationError } from '../domain/errors.js';
import { admits, type Caller } from './auth.js';
import type { OperationSpec } from './openapi/operations.js';

/**
 * Unknown fields are refused everywhere, not only where a schema says so: a route that takes no
 * query string refuses one, and a route that takes no body refuses a JSON body with fields in it
 * (an empty one, `{}`, is no input). So `POST /jobs/{id}/cancel {"force": true}` is a 400 naming
 * `force`, not a cancel that silently ignored what was asked. The routes' own schemas, all strict
 * objects, do the same for the routes that take input. A body that is not JSON is refused too.
 * Headers are not inputs: unknown ones are ignored. Which routes take what comes from the
 * operations registry, the same list the OpenAPI document is built from.
 */

interface Matcher {
  readonly method: string;
  readonly pattern: RegExp;
  readonly callers: readonly Caller[];
  readonly query: boolean;
  readonly body: boolean;
}

/** Express' own matching for these paths: parameters are one segment, a trailing slash is allowed, case does not matter. */
function patternOf(path: string): RegExp {
  const escaped = path
    .split(/(:\w+)/)
    .map((part) => (part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('');
  return new RegExp(`^${escaped}/?$`, 'i');
}

/** A body was sent (body-parser's test), whether or not it was read as JSON. */
const sentBody = (req: IncomingMessage): boolean =>
  req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');

const hasFields = (body: unknown): boolean =>
  body !== undefined && !(body !== null && typeof body === 'object' && !Array.isArray(body) && Object.keys(body).length === 0);

/**
 * `public`: for the routes that need no credentials, mounted before authentication. `guarded`:
 * for the rest, mounted after it; a caller the route's guard will refuse is left to that 403, so
 * who may ask is answered before what was asked.
 */
export function refuseUndeclaredInputs(ops: readonly OperationSpec[], which: 'public' | 'guarded'): RequestHandler {
  const matchers: Matcher[] = ops
    .filter((op) => (op.callers.length === 0) === (which === 'public'))
    .map((op) => ({
      method: op.method.toUpperCase(),
      pattern: patternOf(op.path),
      callers: op.callers,
      query: op.query !== undefined,
      body: op.body !== undefined,
    }));
  return (req, _res, next) => {
    const path = `${req.baseUrl}${req.path}`;
    const p = req.principal;
    const matching = matchers.filter(
      (m) =>
        m.method === req.method &&
        m.pattern.test(path) &&
        (m.callers.length === 0 || (p !== undefined && m.callers.some((c) => admits(p, c)))),
    );
    // An unknown route is the router's 404 to give, a caller it refuses the guard's 403.
    if (matching.length === 0) return next();
    const problems: FieldProblem[] = [];
    // Only JSON is read: another Content-Type would otherwise be a body that silently is not there.
    if (req.body === undefined && sentBody(req))
      problems.push({ field: 'body', message: 'send JSON, with Content-Type: application/json' });
    if (!matching.some((m) => m.query)) for (const key of Object.keys(req.query)) problems.push({ field: key, message: 'unknown field' });
    if (!matching.some((m) => m.body) && hasFields(req.body)) {
      const body = req.body as unknown;
      if (body !== null && typeof body === 'object' && !Array.isArray(body)) {
        for (const key of Object.keys(body)) problems.push({ field: key, message: 'unknown field: this route takes no body' });
      } else {
        problems.push({ field: 'body', message: 'this route takes no body' });
      }
    }
    next(problems.length > 0 ? new ValidationError(problems) : undefined);
  };
}
