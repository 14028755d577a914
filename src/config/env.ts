import { z } from 'zod';

/**
 * Helpers shared by the API's and the agent's configuration: both parse the process
 * environment with zod, fail fast naming every bad variable, and print themselves masked.
 */

export type Env = Readonly<Record<string, string | undefined>>;

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export const envString = () => z.string();

export const envInt = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

export const envNumber = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().min(min).max(max);

export const envBool = () => z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');

/** `a=b,c=d` into a record; used for labels and the like. */
export const envKeyValues = () =>
  z.string().transform((s, ctx) => {
    const out: Record<string, string> = {};
    for (const part of s.split(',')) {
      const item = part.trim();
      if (item === '') continue;
      const eq = item.indexOf('=');
      if (eq <= 0) {
        ctx.addIssue({ code: 'custom', message: `expected key=value, got "${item}"` });
        return z.NEVER;
      }
      out[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
    }
    return out;
  });

/** Parses `env` with `schema`; on failure throws one ConfigError that names every bad variable. */
export function parseEnv<S extends z.ZodType>(schema: S, env: Env): z.output<S> {
  // An unset or blank variable is absent, so `FOO=` in an env file means "use the default".
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v.trim() !== ''));
  const result = schema.safeParse(present);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.map(String).join('.') || '(environment)';
    return `${name}: ${issue.message}`;
  });
  throw new ConfigError(problems);
}

/** Shows that a secret is set without showing any of it. */
export function mask(secret: string | undefined): string {
  if (secret === undefined) return '(unset)';
  return `***(${secret.length} chars)`;
}

/** Hides the password of a redis:// or rediss:// URL. */
export function maskUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}
