import { parseDurationSeconds } from '../../domain/duration.js';
import type { Page } from '../../domain/schemas/common.js';
import type { NodeView } from '../../domain/schemas/node.js';
import type { Command } from '../command.js';
import { UsageError } from '../errors.js';
import { shortTime } from '../output.js';
import { nodeTable, type UsageAnswer, usageTable } from '../views.js';

export const nodes: Command = {
  name: 'nodes',
  summary: 'The GPU nodes: status, GPUs, free resources, jobs',
  usage: ['nodes [--status STATUS]'],
  options: { status: { type: 'string' }, limit: { type: 'string' }, cursor: { type: 'string' } },
  optionHelp: [
    ['--status STATUS', 'online, offline, unhealthy, cordoned, draining or drained'],
    ['--limit N', 'how many (default 50)'],
    ['--cursor C', 'the next page, from a previous answer'],
  ],
  positionals: { min: 0, max: 0, names: '' },
  async run(ctx) {
    const { flags } = ctx.args;
    const page = await ctx.client().get<Page<NodeView>>('/nodes/', {
      status: flags.string('status'),
      limit: flags.int('limit', 1),
      cursor: flags.string('cursor'),
    });
    ctx.print(page, () => (page.items.length === 0 ? 'No nodes.\n' : nodeTable(page.items)));
    if (!ctx.json && page.next_cursor !== null) ctx.err(`more: imagepod nodes --cursor ${page.next_cursor}\n`);
    return 0;
  },
};

/** An ISO date or time, or a duration meaning that long ago (`7d`). */
export function timeArg(value: string | undefined, flag: string, now = Date.now()): string | undefined {
  if (value === undefined) return undefined;
  const ago = parseDurationSeconds(value);
  if (ago !== null && /[smhd]$/i.test(value.trim())) return new Date(now - ago * 1000).toISOString();
  const t = Date.parse(value);
  if (Number.isNaN(t))
    throw new UsageError(`--${flag} takes a date or time (2026-11-01, 2026-11-01T12:00:00Z) or a time ago (7d, 12h), not "${value}"`);
  return new Date(t).toISOString();
}

export const usage: Command = {
  name: 'usage',
  summary: 'GPU-hours and cost from the ledger (default: the last 30 days)',
  usage: ['usage [--group-by user|node] [--from TIME] [--to TIME] [--user USER]'],
  options: { 'group-by': { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, user: { type: 'string' } },
  optionHelp: [
    ['--group-by KEY', 'user (default) or node'],
    ['--from TIME', 'a date, a time, or how long ago: 2026-11-01, 7d'],
    ['--to TIME', 'the same; default now'],
    ['--user USER', "admins: one user's usage"],
  ],
  positionals: { min: 0, max: 0, names: '' },
  examples: ['imagepod usage --from 7d', 'imagepod usage --group-by node --from 2026-11-01 --to 2026-12-01'],
  async run(ctx) {
    const { flags } = ctx.args;
    const u = await ctx.client().get<UsageAnswer>('/usage/', {
      group_by: flags.string('group-by'),
      from: timeArg(flags.string('from'), 'from'),
      to: timeArg(flags.string('to'), 'to'),
      user_id: flags.string('user'),
    });
    ctx.print(u, () => `From ${shortTime(u.from)} to ${shortTime(u.to)}\n\n${usageTable(u)}`);
    return 0;
  },
};
