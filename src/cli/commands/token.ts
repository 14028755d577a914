import { ROLES } from '../../domain/roles.js';
import type { TokenCreated } from '../../domain/schemas/identity.js';
import type { Command } from '../command.js';
import { UsageError } from '../errors.js';
import { shortTime } from '../output.js';

export const token: Command = {
  name: 'token',
  summary: "Mint a person's token (admins; the API must hold the JWT secret)",
  usage: ['token --user USER [--role user|admin] [--ttl 24h]'],
  options: { user: { type: 'string' }, role: { type: 'string' }, ttl: { type: 'string' } },
  optionHelp: [
    ['--user USER', "the token's subject (user id)"],
    ['--role ROLE', `one of ${ROLES.join(', ')} (default user)`],
    ['--ttl TTL', 'how long it is valid: seconds, or like 90m, 12h, 7d (default 24h, at most 30 days)'],
  ],
  positionals: { min: 0, max: 0, names: '' },
  examples: ['imagepod token --user alice', 'imagepod token --user ops --role admin --ttl 1h'],
  async run(ctx) {
    const { flags } = ctx.args;
    const user = flags.string('user');
    if (!user) throw new UsageError('--user is required');
    const ttl = flags.string('ttl');
    const body = {
      user_id: user,
      role: flags.string('role') ?? 'user',
      ...(ttl !== undefined && { ttl: /^\d+$/.test(ttl) ? Number(ttl) : ttl }),
    };
    const created = await ctx.client().post<TokenCreated>('/tokens', body);
    if (ctx.json) {
      ctx.print(created, () => '');
    } else {
      // The token alone on stdout, so TOKEN=$(imagepod token --user alice) works.
      ctx.out(`${created.token}\n`);
      ctx.err(`token for ${created.user_id} (${created.role}), valid until ${shortTime(created.expires_at)}\n`);
    }
    return 0;
  },
};
