/** Exit codes the CLI uses besides a waited-for job's own. */
export const ExitCode = {
  Ok: 0,
  Failed: 1,
  Usage: 2,
  /** A `--wait`ed job that ran past its time limit, as GNU timeout reports it. */
  TimedOut: 124,
  /** Ctrl-C: the job keeps running; we only stopped watching. */
  Interrupted: 130,
} as const;

/** The command line itself is wrong: the command's help is shown, exit 2. */
export class UsageError extends Error {}

/** Something failed that the person can act on: the message is shown, exit 1. */
export class CliError extends Error {}

export interface FieldProblem {
  field: string;
  message: string;
}

/** An error answer from the API, as its body says (see the README's Errors section). */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly fields: readonly FieldProblem[] = [],
    readonly requestId?: string,
  ) {
    super(message);
  }
}
