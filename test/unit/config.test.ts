import { describe, expect, it } from 'vitest';
import { describeApiConfig, loadApiConfig } from '../../src/config/api-config.js';
import { ConfigError } from '../../src/config/env.js';

const base = { IMAGEPOD_JWT_SECRET: 's'.repeat(40), IMAGEPOD_REGISTRATION_TOKEN: 'r'.repeat(20) };

function problems(env: Record<string, string>): string[] {
  try {
    loadApiConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('API configuration', () => {
  it('has sensible defaults', () => {
    const c = loadApiConfig(base);
    expect(c).toMatchObject({
      redis: { kind: 'server', url: 'redis://127.0.0.1:6379', tls: null },
      keyPrefix: 'imagepod',
      tierBoundsMiB: [8192, 16384, 24576, 49152, 81920, 144384],
      heartbeatIntervalMs: 5000,
      heartbeatTtlMs: 15000,
      port: 8000,
    });
  });

  it('treats blank variables as unset', () => {
    expect(loadApiConfig({ ...base, IMAGEPOD_PORT: '', IMAGEPOD_KEY_PREFIX: ' ' }).port).toBe(8000);
  });

  it('names every bad variable at once', () => {
    const p = problems({
      IMAGEPOD_REDIS_URL: 'http://x',
      IMAGEPOD_TIER_BOUNDS_MIB: '8192,4096',
      IMAGEPOD_PORT: 'eighty',
      IMAGEPOD_HEARTBEAT_INTERVAL_MS: '5000',
      IMAGEPOD_HEARTBEAT_TTL_MS: '4000',
      IMAGEPOD_KEY_PREFIX: 'has{brace}',
    });
    const names = p.map((s) => s.split(':')[0]);
    expect(names).toEqual(
      expect.arrayContaining([
        'IMAGEPOD_REDIS_URL',
        'IMAGEPOD_TIER_BOUNDS_MIB',
        'IMAGEPOD_PORT',
        'IMAGEPOD_REGISTRATION_TOKEN',
        'IMAGEPOD_KEY_PREFIX',
      ]),
    );
    expect(p.join('\n')).toContain('strictly ascending');
  });

  it('needs exactly one way to verify JWTs, and a long enough secret', () => {
    expect(problems({ IMAGEPOD_REGISTRATION_TOKEN: 'r'.repeat(20) }).join()).toContain('set exactly one of');
    expect(problems({ ...base, IMAGEPOD_JWT_PUBLIC_KEY: 'pem' }).join()).toContain('set exactly one of');
    expect(problems({ ...base, IMAGEPOD_JWT_SECRET: 'short' }).join()).toContain('at least 32');
  });

  it('refuses a heartbeat TTL that one late beat would outlive', () => {
    expect(problems({ ...base, IMAGEPOD_HEARTBEAT_INTERVAL_MS: '5000', IMAGEPOD_HEARTBEAT_TTL_MS: '5000' })[0]).toMatch(
      /^IMAGEPOD_HEARTBEAT_TTL_MS/,
    );
  });

  it('prints itself with secrets masked', () => {
    const c = loadApiConfig({ ...base, IMAGEPOD_REDIS_URL: 'redis://:hunter2@redis:6379/0' });
    const text = JSON.stringify(describeApiConfig(c));
    expect(text).not.toContain('hunter2');
    expect(text).not.toContain(base.IMAGEPOD_JWT_SECRET);
    expect(text).not.toContain(base.IMAGEPOD_REGISTRATION_TOKEN);
    expect(text).toContain('redis://:***@redis:6379/0');
  });
});
