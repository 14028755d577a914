import type { MeView } from '../../domain/schemas/identity.js';
import { ApiClient } from '../api-client.js';
import type { Command } from '../command.js';
import { ApiError, CliError, UsageError } from '../errors.js';
import { readAll } from '../io.js';
import { configPath, normalizeApiUrl, readStoredLogin, writeStoredLogin } from '../settings.js';

function savedUrl(path: string): string | undefined {
  try {
    return readStoredLogin(path).api_url;
  } catch {
    return undefined;
  }
}

export const login: Command = {
  name: 'login',
  summary: 'Check a token against the API and save both for the other commands',
  usage: ['login --api-url URL --token TOKEN', 'login --api-url URL < token.txt'],
  options: { 'api-url': { type: 'string' }, token: { type: 'string' } },
  optionHelp: [
    ['--api-url URL', 'the API, e.g. http://localhost:8000 (default: IMAGEPOD_API_URL, then the saved one)'],
    ['--token TOKEN', "a person's JWT; '-' or no flag with a pipe reads stdin; default IMAGEPOD_TOKEN"],
  ],
  positionals: { min: 0, max: 0, names: '' },
  examples: [
    'imagepod login --api-url http://localhost:8000 --token "$TOKEN"',
    'npm run -s token -- --sub alice | imagepod login --api-url http://localhost:8000',
  ],
  async run(ctx) {
    const { flags } = ctx.args;
    const { env, stdin } = ctx.io;
    // Not ctx.settings: a damaged file must not stop the login that replaces it.
    const path = configPath(env);
    const url = flags.string('api-url') || env.IMAGEPOD_API_URL || savedUrl(path);
    if (!url) throw new UsageError('--api-url is required, e.g. --api-url http://localhost:8000');
    let token = flags.string('token');
    if (token === '-' || (token === undefined && !env.IMAGEPOD_TOKEN && !stdin.isTTY)) token = (await readAll(stdin)).trim();
    token ||= env.IMAGEPOD_TOKEN;
    if (!token) throw new UsageError('give the token with --token, on stdin, or in IMAGEPOD_TOKEN');

    const apiUrl = normalizeApiUrl(url);
    let me: MeView;
    try {
      me = await new ApiClient(apiUrl, token).get<MeView>('/me');
    } catch (err) {
      if (err instanceof ApiError && err.status === 401)
        throw new CliError(`${apiUrl} refused the token: ${err.message}; nothing was saved`);
      throw err;
    }
    if (me.kind !== 'user') {
      throw new CliError(
        `that is ${me.kind === 'agent' ? "an agent's API key" : 'the registration token'}, not a person's token; nothing was saved`,
      );
    }
    writeStoredLogin(path, { api_url: apiUrl, token });
    ctx.print(
      { ...me, api_url: apiUrl, config_path: path },
      () => `Logged in to ${apiUrl} as ${me.user_id} (${me.role}); saved in ${path}\n`,
    );
    return 0;
  },
};

export const whoami: Command = {
  name: 'whoami',
  summary: 'Who the API takes you to be',
  usage: ['whoami'],
  options: {},
  optionHelp: [],
  positionals: { min: 0, max: 0, names: '' },
  async run(ctx) {
    const client = ctx.client();
    const me = await client.get<MeView>('/me');
    const who =
      me.kind === 'user'
        ? `${me.user_id} (${me.role})`
        : me.kind === 'agent'
          ? `the agent of node ${me.node_id}`
          : 'the registration token';
    ctx.print(me, () => `${who} at ${client.baseUrl}\n`);
    return 0;
  },
};
