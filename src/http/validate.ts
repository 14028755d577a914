import type { z } from 'zod';
import { type FieldProblem, ValidationError } from '../domain/errors.js';

/** Parses with a zod schema; a failure becomes one 400 that names every bad field. */
export function parse<S extends z.ZodType>(schema: S, value: unknown, where: 'body' | 'query' | 'path' = 'body'): z.output<S> {
  const result = schema.safeParse(value, { error: requiredMessage });
  if (result.success) return result.data;
  throw new ValidationError(problemsOf(result.error, where));
}

export function problemsOf(error: z.ZodError, where: string): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ field: path ? `${path}.${key}` : key, message: 'unknown field' });
      }
      continue;
    }
    // A record's key that failed its own check: say why, not only "Invalid key in record".
    const message = issue.code === 'invalid_key' ? (issue.issues[0]?.message ?? issue.message) : issue.message;
    out.push({ field: path || where, message });
  }
  return out;
}

/** "required" reads better than zod's "expected string, received undefined" for a missing field. */
const requiredMessage = (issue: { code?: string; input?: unknown }): string | undefined =>
  issue.code === 'invalid_type' && issue.input === undefined ? 'required' : undefined;
