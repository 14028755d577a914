import { describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../agent/config.js';
import { describeApiConfig, loadApiConfig } from '../../src/config/api-config.js';
import { ConfigError } from '../../src/config/env.js';
import { parseHostPorts } from '../../src/config/redis-env.js';
import { redisSpec } from '../../src/redis/connection.js';
import { groupByHashTag, hashTagOf } from '../../src/redis/slots.js';
import { makeTestCa } from '../support/test-ca.js';

const base = { IMAGEPOD_JWT_SECRET: 's'.repeat(40), IMAGEPOD_REGISTRATION_TOKEN: 'r'.repeat(20) };

function problems(env: Record<string, string>): string[] {
  try {
    loadApiConfig({ ...base, ...env });
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe('Redis configuration', () => {
  it('refuses an ACL user without its password (Redis would answer a puzzling WRONGPASS)', () => {
    expect(problems({ IMAGEPOD_REDIS_USERNAME: 'imagepod-agent' })).toEqual([
      'IMAGEPOD_REDIS_USERNAME: needs IMAGEPOD_REDIS_PASSWORD: an ACL user signs in with both',
    ]);
    expect(problems({ IMAGEPOD_REDIS_USERNAME: 'imagepod-agent', IMAGEPOD_REDIS_PASSWORD: 'p'.repeat(20) })).toEqual([]);
    expect(problems({ IMAGEPOD_REDIS_USERNAME: '', IMAGEPOD_REDIS_PASSWORD: '' })).toEqual([]);
  });

  it('is one server at redis://127.0.0.1:6379 unless told otherwise', () => {
    expect(loadApiConfig(base).redis).toEqual({ kind: 'server', url: 'redis://127.0.0.1:6379', tls: null });
  });

  it('reads a Cluster from its seed nodes, and Sentinel from its sentinels and primary name', () => {
    const cluster = loadApiConfig({ ...base, IMAGEPOD_REDIS_CLUSTER_NODES: 'redis-0:6379, redis-1:6379,[::1]:7000' }).redis;
    expect(cluster).toMatchObject({
      kind: 'cluster',
      nodes: [
        { host: 'redis-0', port: 6379 },
        { host: 'redis-1', port: 6379 },
        { host: '::1', port: 7000 },
      ],
    });
    const sentinel = loadApiConfig({
      ...base,
      IMAGEPOD_REDIS_SENTINELS: 's1:26379,s2:26379',
      IMAGEPOD_REDIS_SENTINEL_MASTER: 'imagepod',
      IMAGEPOD_REDIS_PASSWORD: 'data-pass',
      IMAGEPOD_REDIS_SENTINEL_PASSWORD: 'sentinel-pass',
    }).redis;
    expect(sentinel).toMatchObject({ kind: 'sentinel', master: 'imagepod', password: 'data-pass', sentinelPassword: 'sentinel-pass' });
  });

  it('the agent reads the same variables', () => {
    const agent = loadAgentConfig({
      IMAGEPOD_API_URL: 'http://127.0.0.1:8000',
      IMAGEPOD_REDIS_CLUSTER_NODES: '10.0.0.1:6379',
      IMAGEPOD_REDIS_PASSWORD: 'pw',
    });
    expect(agent.redis).toMatchObject({ kind: 'cluster', nodes: [{ host: '10.0.0.1', port: 6379 }], password: 'pw' });
  });

  it('refuses two ways at once, a Sentinel without its primary name, and a bad node list', () => {
    expect(problems({ IMAGEPOD_REDIS_URL: 'redis://a:6379', IMAGEPOD_REDIS_CLUSTER_NODES: 'b:6379' }).join()).toContain('set only one of');
    expect(problems({ IMAGEPOD_REDIS_SENTINELS: 's:26379' })[0]).toMatch(/^IMAGEPOD_REDIS_SENTINEL_MASTER: required/);
    expect(problems({ IMAGEPOD_REDIS_SENTINEL_MASTER: 'm' })[0]).toMatch(/^IMAGEPOD_REDIS_SENTINEL_MASTER: only with/);
    expect(problems({ IMAGEPOD_REDIS_CLUSTER_NODES: 'redis-0' })[0]).toMatch(/^IMAGEPOD_REDIS_CLUSTER_NODES: "redis-0" is not host:port/);
    expect(parseHostPorts('a:0')).toMatch(/not host:port/);
    expect(parseHostPorts(' , ')).toBe('at least one host:port');
  });

  it('keeps TLS settings for TLS, and one place for credentials', () => {
    expect(problems({ IMAGEPOD_REDIS_TLS_CA_FILE: '/ca.pem' })[0]).toMatch(/^IMAGEPOD_REDIS_TLS_CA_FILE: TLS is off/);
    expect(problems({ IMAGEPOD_REDIS_URL: 'redis://r:6379', IMAGEPOD_REDIS_TLS: 'true' })[0]).toMatch(/the scheme decides/);
    expect(problems({ IMAGEPOD_REDIS_URL: 'redis://:pw@r:6379', IMAGEPOD_REDIS_PASSWORD: 'other' })[0]).toMatch(
      /carries credentials already/,
    );
    expect(problems({ IMAGEPOD_REDIS_URL: 'rediss://r:6380', IMAGEPOD_REDIS_TLS_CERT_FILE: '/c.pem' }).join()).toContain(
      'set both IMAGEPOD_REDIS_TLS_CERT_FILE and IMAGEPOD_REDIS_TLS_KEY_FILE',
    );
    expect(problems({ IMAGEPOD_REDIS_URL: 'rediss://r:6380', IMAGEPOD_REDIS_TLS_CA_FILE: '/nonexistent/ca.pem' })).toEqual([
      expect.stringMatching(/^IMAGEPOD_REDIS_TLS_CA_FILE: .*\/nonexistent\/ca\.pem/),
    ]);
  });

  it('reads the CA once, verifies with it, and never logs it or a password', () => {
    const ca = makeTestCa();
    const c = loadApiConfig({
      ...base,
      IMAGEPOD_REDIS_CLUSTER_NODES: 'redis-0:6380',
      IMAGEPOD_REDIS_TLS: 'true',
      IMAGEPOD_REDIS_TLS_CA_FILE: ca.certFile,
      IMAGEPOD_REDIS_USERNAME: 'imagepod',
      IMAGEPOD_REDIS_PASSWORD: 'hunter2hunter2',
    });
    expect(c.redis.tls?.ca).toContain('BEGIN CERTIFICATE');
    const spec = redisSpec(c.redis, 'api', 'imagepod-api');
    expect(spec.kind).toBe('cluster');
    if (spec.kind !== 'cluster') return;
    // Certificates are always verified: no rejectUnauthorized: false anywhere.
    expect(spec.options.redisOptions?.tls).toEqual({ ca: c.redis.tls?.ca });
    expect(spec.options.redisOptions).toMatchObject({ username: 'imagepod', password: 'hunter2hunter2', maxRetriesPerRequest: 2 });
    const shown = JSON.stringify(describeApiConfig(c));
    expect(shown).not.toContain('hunter2');
    expect(shown).not.toContain('BEGIN CERTIFICATE');
    expect(shown).toContain(ca.certFile);
  });

  it('gives BullMQ workers and blocking readers no per-command retry limit, on every kind', () => {
    for (const env of [
      {},
      { IMAGEPOD_REDIS_CLUSTER_NODES: 'r:6379' },
      { IMAGEPOD_REDIS_SENTINELS: 's:1', IMAGEPOD_REDIS_SENTINEL_MASTER: 'm' },
    ]) {
      const target = loadApiConfig({ ...base, ...env }).redis;
      for (const role of ['worker', 'blocking'] as const) {
        const spec = redisSpec(target, role, 'x');
        const options = spec.kind === 'cluster' ? spec.options.redisOptions : spec.options;
        expect(options?.maxRetriesPerRequest).toBeNull();
      }
    }
  });
});

describe('hash tags', () => {
  it('are what Redis Cluster places a key by', () => {
    expect(hashTagOf('imagepod:{gpu-24g}:gpu-24g:events')).toBe('gpu-24g');
    expect(hashTagOf('imagepod:{}:x')).toBe('imagepod:{}:x');
    expect(hashTagOf('no-tag')).toBe('no-tag');
    expect(groupByHashTag(['p:{cpu}:cpu:events', 'p:{gpu-8g}:gpu-8g:events', 'p:{gpu-8g}:gpu-8g.a100:events'])).toEqual([
      ['p:{cpu}:cpu:events'],
      ['p:{gpu-8g}:gpu-8g:events', 'p:{gpu-8g}:gpu-8g.a100:events'],
    ]);
  });
});
