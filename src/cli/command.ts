import { ApiClient } from './api-client.js';
import { CliError } from './errors.js';
import type { OptionsConfig, ParsedArgs } from './flags.js';
import type { Io } from './io.js';
import { json } from './output.js';
import { normalizeApiUrl, resolveSettings, type Settings } from './settings.js';

/** What a command runs with. */
export class CommandContext {
  private settingsCache: Settings | undefined;

  constructor(
    readonly io: Io,
    readonly args: ParsedArgs,
  ) {}

  get json(): boolean {
    return this.args.flags.bool('json');
  }

  get settings(): Settings {
    this.settingsCache ??= resolveSettings(this.io.env);
    return this.settingsCache;
  }

  /** A client for the API this person logged in to (or the environment names). */
  client(): ApiClient {
    const { apiUrl, token } = this.settings;
    if (!apiUrl || !token) {
      throw new CliError('not logged in: run imagepod login --api-url URL --token TOKEN, or set IMAGEPOD_API_URL and IMAGEPOD_TOKEN');
    }
    return new ApiClient(normalizeApiUrl(apiUrl), token);
  }

  out(text: string): void {
    this.io.stdout.write(text);
  }

  err(text: string): void {
    this.io.stderr.write(text);
  }

  /** `--json`: the value as JSON; else the text for people. */
  print(value: unknown, forPeople: () => string): void {
    this.out(this.json ? json(value) : forPeople());
  }
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Usage lines, without the leading `imagepod `. */
  readonly usage: string[];
  readonly options: OptionsConfig;
  /** `[flag text, what it does]` for the help. */
  readonly optionHelp: [string, string][];
  /** How many positionals (before `--`) it takes. */
  readonly positionals: { readonly min: number; readonly max: number; readonly names: string };
  /** Whether words after `--` are allowed. */
  readonly rest?: boolean;
  readonly examples?: string[];
  run(ctx: CommandContext): Promise<number>;
}

export function commandHelp(c: Command): string {
  const opts: [string, string][] = [...c.optionHelp, ['--json', 'print JSON for scripts'], ['-h, --help', 'this help']];
  const width = Math.max(...opts.map(([f]) => f.length));
  const lines = [
    `${c.summary}`,
    '',
    'Usage:',
    ...c.usage.map((u) => `  imagepod ${u}`),
    '',
    'Options:',
    ...opts.map(([f, d]) => `  ${f.padEnd(width)}  ${d}`),
  ];
  if (c.examples?.length) lines.push('', 'Examples:', ...c.examples.map((e) => `  ${e}`));
  return `${lines.join('\n')}\n`;
}
