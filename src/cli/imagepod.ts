/**
 * `imagepod`: the command line for people. Submit and follow jobs, read logs, see nodes and
 * usage, mint tokens. Run through bin/imagepod.mjs; `main` answers the exit code.
 */
import { type Command, CommandContext, commandHelp } from './command.js';
import { nodes, usage } from './commands/fleet.js';
import { cancel, jobs, logs, status } from './commands/jobs.js';
import { login, whoami } from './commands/login.js';
import { submit } from './commands/submit.js';
import { token } from './commands/token.js';
import { ApiError, CliError, ExitCode, UsageError } from './errors.js';
import { parseCommandArgs } from './flags.js';
import type { Io } from './io.js';

const COMMANDS: readonly Command[] = [login, whoami, submit, status, jobs, logs, cancel, nodes, usage, token];

function mainHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'imagepod: submit and follow GPU jobs on an ImagePod fleet',
    '',
    'Usage: imagepod <command> [options]     imagepod <command> --help',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Every command takes --json (JSON for scripts) and --help.',
    'Settings: imagepod login saves the API URL and token in $IMAGEPOD_CONFIG',
    '(default ~/.config/imagepod/config.json); IMAGEPOD_API_URL and IMAGEPOD_TOKEN override it.',
    "Exit codes: 0 ok, 1 failed (the API's message), 2 bad usage; submit --wait: the job's exit code.",
    '',
  ].join('\n');
}

function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    const hint = err.status === 401 ? '\n(log in again: imagepod login --api-url URL --token TOKEN)' : '';
    // A 400's message lists its fields on one line; one per line reads better.
    if (err.fields.length > 0) return `error: invalid request\n${err.fields.map((f) => `  ${f.field}: ${f.message}\n`).join('')}`;
    return `error: ${err.message}${hint}\n`;
  }
  if (err instanceof CliError) return `error: ${err.message}\n`;
  return `error: ${(err as Error)?.message ?? String(err)}\n`;
}

export async function main(argv: string[], io: Io): Promise<number> {
  // `imagepod --json jobs` reads as `imagepod jobs --json`.
  const args = [...argv];
  const leadingJson = args[0] === '--json' ? args.shift() : undefined;
  const name = args.shift();
  if (name === undefined) {
    io.stderr.write(mainHelp());
    return ExitCode.Usage;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const topic = COMMANDS.find((c) => c.name === args[0]);
    io.stdout.write(topic ? commandHelp(topic) : mainHelp());
    return ExitCode.Ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.stderr.write(`error: unknown command "${name}"\n\n${mainHelp()}`);
    return ExitCode.Usage;
  }
  try {
    const parsed = parseCommandArgs(leadingJson ? [...args, leadingJson] : args, command.options);
    if (parsed.flags.bool('help')) {
      io.stdout.write(commandHelp(command));
      return ExitCode.Ok;
    }
    const { min, max, names } = command.positionals;
    if (parsed.positionals.length < min) throw new UsageError(`${names} is required`);
    if (parsed.positionals.length > max) throw new UsageError(`unexpected argument "${parsed.positionals[max]}"`);
    if (parsed.rest.length > 0 && !command.rest) throw new UsageError(`unexpected arguments after --: ${parsed.rest.join(' ')}`);
    return await command.run(new CommandContext(io, parsed));
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr.write(`error: ${err.message}\n\n${commandHelp(command)}`);
      return ExitCode.Usage;
    }
    io.stderr.write(describeError(err));
    if (!(err instanceof CliError) && io.env.IMAGEPOD_DEBUG) io.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    return ExitCode.Failed;
  }
}
