/**
 * Mints a JWT for a person from the configured HS256 secret, for development and for admins
 * who script against the API:
 *   npm run token -- --sub alice [--role admin] [--ttl 12h]
 * Reads IMAGEPOD_JWT_SECRET (and IMAGEPOD_JWT_ISSUER / _AUDIENCE) from the environment or
 * from .imagepod/local.env, which `npm run local` writes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import jwt from 'jsonwebtoken';
import { ROLES, type Role } from '../domain/roles.js';

export function mintToken(secret: string, sub: string, role: Role, ttl: string, issuer?: string, audience?: string): string {
  return jwt.sign({ role }, secret, {
    algorithm: 'HS256',
    subject: sub,
    expiresIn: ttl as jwt.SignOptions['expiresIn'],
    ...(issuer !== undefined && { issuer }),
    ...(audience !== undefined && { audience }),
  });
}

function envFromFile(path: string): Record<string, string> {
  if (!existsSync(path)) return {};
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m?.[1] !== undefined && m[2] !== undefined) out[m[1]] = m[2];
  }
  return out;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      sub: { type: 'string' },
      role: { type: 'string', default: 'user' },
      ttl: { type: 'string', default: '12h' },
      'env-file': { type: 'string', default: '.imagepod/local.env' },
    },
  });
  const env = { ...envFromFile(values['env-file'] ?? ''), ...process.env };
  const secret = env.IMAGEPOD_JWT_SECRET;
  const role = ROLES.find((r) => r === values.role);
  const problems: string[] = [];
  if (!values.sub) problems.push('--sub <user id> is required');
  if (role === undefined) problems.push(`--role must be one of ${ROLES.join(', ')}`);
  if (!secret) problems.push('IMAGEPOD_JWT_SECRET is not set (and not in .imagepod/local.env)');
  if (problems.length > 0 || !values.sub || role === undefined || !secret) {
    process.stderr.write(`${problems.join('\n')}\nusage: npm run token -- --sub alice [--role admin] [--ttl 12h]\n`);
    process.exit(2);
  }
  process.stdout.write(
    `${mintToken(secret, values.sub, role, values.ttl ?? '12h', env.IMAGEPOD_JWT_ISSUER || undefined, env.IMAGEPOD_JWT_AUDIENCE || undefined)}\n`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) main();
