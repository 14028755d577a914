import type { Page } from '../../domain/schemas/common.js';
import type { JobLogLine, JobView } from '../../domain/schemas/job.js';
import type { Command, CommandContext } from '../command.js';
import { ExitCode } from '../errors.js';
import { streamLogs } from '../follow.js';
import { jobDetails, jobTable } from '../views.js';
import { onInterrupt } from './interrupt.js';

const jobIdOf = (ctx: CommandContext) => ctx.args.positionals[0] ?? '';

export const status: Command = {
  name: 'status',
  summary: 'A job: its status, why it waits, where it runs, how it ended',
  usage: ['status JOB_ID'],
  options: {},
  optionHelp: [],
  positionals: { min: 1, max: 1, names: 'JOB_ID' },
  async run(ctx) {
    const job = await ctx.client().get<JobView>(`/jobs/${jobIdOf(ctx)}`);
    ctx.print(job, () => jobDetails(job));
    return 0;
  },
};

export const jobs: Command = {
  name: 'jobs',
  summary: 'Your jobs, newest first (admins: everyone’s)',
  usage: ['jobs [--status STATUS] [--user USER] [--limit N]'],
  options: { status: { type: 'string' }, user: { type: 'string' }, limit: { type: 'string' }, cursor: { type: 'string' } },
  optionHelp: [
    ['--status STATUS', 'queued, assigned, pulling, running, succeeded, failed, cancelled or timed_out'],
    ['--user USER', "admins: one user's jobs"],
    ['--limit N', 'how many (default 50)'],
    ['--cursor C', 'the next page, from a previous answer'],
  ],
  positionals: { min: 0, max: 0, names: '' },
  async run(ctx) {
    const { flags } = ctx.args;
    const page = await ctx.client().get<Page<JobView>>('/jobs/', {
      status: flags.string('status'),
      user_id: flags.string('user'),
      limit: flags.int('limit', 1),
      cursor: flags.string('cursor'),
    });
    ctx.print(page, () => (page.items.length === 0 ? 'No jobs.\n' : jobTable(page.items)));
    if (!ctx.json && page.next_cursor !== null) ctx.err(`more: imagepod jobs --cursor ${page.next_cursor}\n`);
    return 0;
  },
};

/** One log line for people (its text) or for scripts (one JSON object per line). */
export function logLineWriter(ctx: CommandContext): (line: JobLogLine) => void {
  return (line) => ctx.out(ctx.json ? `${JSON.stringify(line)}\n` : `${line.text}\n`);
}

export const logs: Command = {
  name: 'logs',
  summary: "A job's log lines; --follow streams them until the job ends",
  usage: ['logs JOB_ID [--follow]'],
  options: { follow: { type: 'boolean', short: 'f' } },
  optionHelp: [['-f, --follow', 'keep streaming new lines until the job ends']],
  positionals: { min: 1, max: 1, names: 'JOB_ID' },
  examples: ['imagepod logs 1b4e28ba-2fa1-11d2-883f-0016d3cca427 --follow', 'imagepod logs JOB_ID --json | jq -r .text'],
  async run(ctx) {
    const client = ctx.client();
    const id = jobIdOf(ctx);
    const write = logLineWriter(ctx);
    if (ctx.args.flags.bool('follow')) {
      const controller = new AbortController();
      const interrupted = onInterrupt(() => controller.abort());
      try {
        await streamLogs(client, id, write, controller.signal);
      } catch (err) {
        if (interrupted.happened) return ExitCode.Interrupted;
        throw err;
      } finally {
        interrupted.dispose();
      }
      return 0;
    }
    let after: string | undefined;
    for (;;) {
      const page = await client.get<Page<JobLogLine>>(`/jobs/${id}/logs`, { limit: 1000, after });
      for (const line of page.items) write(line);
      if (page.items.length < 1000 || page.next_cursor === null) return 0;
      after = page.next_cursor;
    }
  },
};

export const cancel: Command = {
  name: 'cancel',
  summary: 'Cancel a queued or running job',
  usage: ['cancel JOB_ID'],
  options: {},
  optionHelp: [],
  positionals: { min: 1, max: 1, names: 'JOB_ID' },
  async run(ctx) {
    const job = await ctx.client().post<JobView>(`/jobs/${jobIdOf(ctx)}/cancel`);
    const note = job.completed_at === null && job.node_id !== null ? ` (node ${job.node_id} is stopping it)` : '';
    ctx.print(job, () => `${job.id}  ${job.status}${note}\n`);
    return 0;
  },
};
