import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError } from './errors.js';

/** What `imagepod login` keeps: where the API is and the token to call it with. */
export interface StoredLogin {
  api_url: string;
  token: string;
}

export interface Settings {
  readonly apiUrl: string | undefined;
  readonly token: string | undefined;
  readonly configPath: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/** `$IMAGEPOD_CONFIG`, else `$XDG_CONFIG_HOME/imagepod/config.json` (`~/.config/...`). */
export function configPath(env: Env): string {
  if (env.IMAGEPOD_CONFIG) return env.IMAGEPOD_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'imagepod', 'config.json');
}

export function readStoredLogin(path: string): Partial<StoredLogin> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new CliError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as Partial<Record<keyof StoredLogin, unknown>>;
    return {
      ...(typeof v.api_url === 'string' && { api_url: v.api_url }),
      ...(typeof v.token === 'string' && { token: v.token }),
    };
  } catch {
    throw new CliError(`${path} is not valid JSON: run imagepod login again, or remove it`);
  }
}

/** Written whole to a temporary file and renamed, readable by its owner only: it holds a token. */
export function writeStoredLogin(path: string, login: StoredLogin): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}

/** The environment (`IMAGEPOD_API_URL`, `IMAGEPOD_TOKEN`) wins over the file. */
export function resolveSettings(env: Env): Settings {
  const path = configPath(env);
  const stored = env.IMAGEPOD_API_URL && env.IMAGEPOD_TOKEN ? {} : readStoredLogin(path);
  return {
    apiUrl: env.IMAGEPOD_API_URL || stored.api_url,
    token: env.IMAGEPOD_TOKEN || stored.token,
    configPath: path,
  };
}

/** `https://host`, without a trailing slash or the `/gpu-workers` prefix people often paste. */
export function normalizeApiUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CliError(`"${url}" is not a URL (e.g. http://localhost:8000)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`the API URL must be http or https, not ${u.protocol}`);
  return `${u.origin}${u.pathname.replace(/\/+$/, '').replace(/\/gpu-workers$/, '')}`;
}
