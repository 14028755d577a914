import { generateKeyPairSync } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerNode, startTestApi, type TestApi } from '../support/api.js';

let t: TestApi;

beforeAll(async () => {
  t = await startTestApi('identity');
});
afterAll(async () => t.close());

describe('GET /me', () => {
  it('says who the caller is, for every kind of credential', async () => {
    expect((await t.req('GET', '/me')).status).toBe(401);
    expect((await t.req('GET', '/me', { token: 'not-a-token' })).status).toBe(401);
    expect((await t.req('GET', '/me', { token: t.tokens.alice })).body).toEqual({ kind: 'user', user_id: 'alice', role: 'user' });
    expect((await t.req('GET', '/me', { token: t.tokens.admin })).body).toEqual({ kind: 'user', user_id: 'root', role: 'admin' });
    const node = await registerNode(t);
    expect((await t.req('GET', '/me', { token: node.apiKey })).body).toEqual({ kind: 'agent', node_id: node.nodeId });
    expect((await t.req('GET', '/me', { token: t.registrationToken })).body).toEqual({ kind: 'registrar' });
  });
});

describe('POST /tokens', () => {
  it('is for admins only', async () => {
    expect((await t.req('POST', '/tokens', { body: { user_id: 'carol' } })).status).toBe(401);
    const r = await t.req('POST', '/tokens', { token: t.tokens.alice, body: { user_id: 'carol' } });
    expect(r.status).toBe(403);
    expect(r.body).toMatchObject({ error: 'forbidden', message: 'this route requires an admin (JWT with role admin)' });
  });

  it('names each bad field', async () => {
    const r = await t.req('POST', '/tokens', { token: t.tokens.admin, body: { role: 'root', ttl: '40d', extra: 1 } });
    expect(r.status).toBe(400);
    expect(r.body.fields.map((f: { field: string }) => f.field).sort()).toEqual(['extra', 'role', 'ttl', 'user_id']);
    const tooShort = await t.req('POST', '/tokens', { token: t.tokens.admin, body: { user_id: 'carol', ttl: 'soon' } });
    expect(tooShort.body.fields).toEqual([{ field: 'ttl', message: expect.stringContaining('30 days') }]);
  });

  it('mints a token that works, with the lifetime asked for (default a day)', async () => {
    const r = await t.req('POST', '/tokens', { token: t.tokens.admin, body: { user_id: 'carol', role: 'admin', ttl: '1h' } });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ user_id: 'carol', role: 'admin', token: expect.any(String) });
    const left = Date.parse(r.body.expires_at) - Date.now();
    expect(left).toBeGreaterThan(3500_000);
    expect(left).toBeLessThanOrEqual(3600_000);
    expect((await t.req('GET', '/me', { token: r.body.token })).body).toEqual({ kind: 'user', user_id: 'carol', role: 'admin' });

    const plain = await t.req('POST', '/tokens', { token: t.tokens.admin, body: { user_id: 'dave' } });
    expect(plain.body.role).toBe('user');
    expect(Date.parse(plain.body.expires_at) - Date.now()).toBeGreaterThan(23 * 3600_000);
    const asSeconds = await t.req('POST', '/tokens', { token: t.tokens.admin, body: { user_id: 'dave', ttl: 600 } });
    expect(Date.parse(asSeconds.body.expires_at) - Date.now()).toBeLessThanOrEqual(600_000);
    expect((await t.req('GET', '/jobs/', { token: plain.body.token })).status).toBe(200);
    expect((await t.req('GET', '/agents/agent-000000000000', { token: plain.body.token })).status).toBe(403);
  });
});

describe('an API whose tokens come from an identity provider', () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  let idp: TestApi;

  beforeAll(async () => {
    idp = await startTestApi('identity-idp', {
      IMAGEPOD_JWT_SECRET: '',
      IMAGEPOD_JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    });
  });
  afterAll(async () => idp.close());

  it('cannot mint tokens, and says so', async () => {
    const admin = jwt.sign({ role: 'admin' }, privateKey, { algorithm: 'RS256', subject: 'ops', expiresIn: '1h' });
    expect((await idp.req('GET', '/me', { token: admin })).body).toEqual({ kind: 'user', user_id: 'ops', role: 'admin' });
    const r = await idp.req('POST', '/tokens', { token: admin, body: { user_id: 'carol' } });
    expect(r.status).toBe(409);
    expect(r.body).toMatchObject({ error: 'minting_unavailable', message: expect.stringContaining('identity provider') });
  });
});
