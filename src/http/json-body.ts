import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
import type { RequestHandler } from 'express';
import { ValidationError } from '../domain/errors.js';

/**
 * Checks on a JSON body before any schema sees it. The schemas (and JSON.stringify, which sizes
 * and stores `input_data` and `result`) recurse, so a body nested 10,000 deep would overflow the
 * stack: nothing a request carries may be nested deeper than MAX_JSON_DEPTH. A key named
 * `__proto__` is refused wherever it is, rather than left to each parser to drop or honour.
 */
export const MAX_JSON_DEPTH = 64;

/** body-parser's `verify`: bytes that are not UTF-8 are refused, not decoded into U+FFFD. */
export function refuseInvalidUtf8(req: IncomingMessage, _res: unknown, buf: Buffer): void {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase();
  if ((charset === undefined || charset === 'utf-8' || charset === 'utf8') && !isUtf8(buf)) {
    throw ValidationError.field('body', 'not valid UTF-8');
  }
}

/** The first problem with a parsed body's shape, walked without recursion; null when none. */
export function jsonShapeProblem(body: unknown): { field: string; message: string } | null {
  const stack: { value: unknown; depth: number; path: string }[] = [{ value: body, depth: 0, path: '' }];
  while (stack.length > 0) {
    const { value, depth, path } = stack.pop() as (typeof stack)[number];
    if (value === null || typeof value !== 'object') continue;
    if (depth >= MAX_JSON_DEPTH) {
      // Named by the top-level field it is under (the body itself when that is an array).
      const field = Array.isArray(body) ? 'body' : path.split('.')[0] || 'body';
      return { field, message: `nested deeper than ${MAX_JSON_DEPTH} levels` };
    }
    const entries: [string, unknown][] = Array.isArray(value) ? value.map((v, i) => [String(i), v]) : Object.entries(value);
    for (const [key, v] of entries) {
      const at = path === '' ? key : `${path}.${key}`;
      if (key === '__proto__') return { field: at, message: 'a key named __proto__ is not accepted' };
      stack.push({ value: v, depth: depth + 1, path: at });
    }
  }
  return null;
}

/** After the JSON parser: refuses a body that is too deep or carries `__proto__` keys (400 naming where). */
export const jsonBodyGuard: RequestHandler = (req, _res, next) => {
  const problem = jsonShapeProblem(req.body);
  next(problem === null ? undefined : new ValidationError([problem]));
};
