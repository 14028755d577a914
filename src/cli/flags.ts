import { type ParseArgsConfig, parseArgs } from 'node:util';
import { parseDurationSeconds } from '../domain/duration.js';
import { UsageError } from './errors.js';

export type OptionsConfig = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** Options every command takes. */
export const COMMON_OPTIONS = {
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionsConfig;

export interface ParsedArgs {
  readonly flags: Flags;
  /** Positionals before `--`. */
  readonly positionals: string[];
  /** Everything after `--`, as given. */
  readonly rest: string[];
}

/** node:util parseArgs, strict, with its errors turned into usage errors. */
export function parseCommandArgs(argv: string[], options: OptionsConfig): ParsedArgs {
  let parsed: ReturnType<typeof parseArgs<{ options: OptionsConfig; allowPositionals: true; strict: true; tokens: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const terminator = parsed.tokens.find((t) => t.kind === 'option-terminator');
  const positionals: string[] = [];
  const rest: string[] = [];
  for (const t of parsed.tokens) {
    if (t.kind !== 'positional') continue;
    (terminator !== undefined && t.index > terminator.index ? rest : positionals).push(t.value);
  }
  return { flags: new Flags(parsed.values as Values), positionals, rest };
}

/** Typed reads of parsed options, with usage errors that name the flag. */
export class Flags {
  constructor(private readonly values: Values) {}

  bool(name: string): boolean {
    return this.values[name] === true;
  }

  string(name: string): string | undefined {
    const v = this.values[name];
    return typeof v === 'string' ? v : undefined;
  }

  strings(name: string): string[] {
    const v = this.values[name];
    if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
    return typeof v === 'string' ? [v] : [];
  }

  int(name: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new UsageError(`--${name} takes a whole number from ${min} to ${max}, not "${v}"`);
    return n;
  }

  number(name: string): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} takes a number, not "${v}"`);
    return n;
  }

  /** Seconds, or 90m, 12h, 7d. */
  seconds(name: string): number | undefined {
    const v = this.string(name);
    if (v === undefined) return undefined;
    const s = parseDurationSeconds(v);
    if (s === null) throw new UsageError(`--${name} takes seconds or a duration like 90m, 12h, 7d, not "${v}"`);
    return s;
  }
}
