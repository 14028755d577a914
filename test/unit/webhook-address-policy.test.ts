import { describe, expect, it } from 'vitest';
import { loadApiConfig } from '../../src/config/api-config.js';
import { AddressPolicy, deniedKind, RefusedAddressError } from '../../src/services/webhooks/address-policy.js';

describe('addresses a webhook may not reach', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.255.0.9', 'loopback'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['::', 'unspecified'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['fd00::1', 'private'],
    ['169.254.169.254', 'link-local'],
    ['fe80::1', 'link-local'],
    ['100.64.0.1', 'carrier-grade NAT'],
    ['224.0.0.1', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'reserved'],
    // IPv6 forms that carry an internal IPv4 address.
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['64:ff9b::a9fe:a9fe', 'link-local'],
    ['2002:0a00:0001::1', 'private'],
  ])('%s is %s', (address, kind) => {
    expect(deniedKind(address)).toBe(kind);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])('%s is public', (address) => {
    expect(deniedKind(address)).toBeNull();
  });
});

describe('the policy', () => {
  const resolveTo =
    (...addresses: string[]) =>
    async () =>
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

  it('refuses literal internal addresses at submission, and leaves host names to delivery', () => {
    const p = new AddressPolicy([]);
    expect(p.literalProblem('http://127.0.0.1:8080/hook')).toMatch(/loopback/);
    expect(p.literalProblem('http://169.254.169.254/latest/meta-data/')).toMatch(/link-local/);
    expect(p.literalProblem('http://[::ffff:127.0.0.1]/')).toMatch(/loopback/);
    // The URL parser normalizes other spellings of an address first.
    expect(p.literalProblem('http://2130706433/')).toMatch(/loopback/);
    expect(p.literalProblem('http://0x7f.1/')).toMatch(/loopback/);
    expect(p.literalProblem('https://hooks.example.com/x')).toBeNull();
    expect(p.literalProblem('http://localhost/')).toBeNull();
  });

  it('vets every address a name resolves to, and connects to a vetted one', async () => {
    const mixed = new AddressPolicy([], resolveTo('93.184.216.34', '10.0.0.5'));
    await expect(mixed.vet(new URL('https://rebind.example/'))).rejects.toThrow(RefusedAddressError);
    await expect(mixed.vet(new URL('https://rebind.example/'))).rejects.toThrow(/^rebind.example resolves to a private address/);
    const ok = new AddressPolicy([], resolveTo('93.184.216.34'));
    await expect(ok.vet(new URL('https://hooks.example/'))).resolves.toEqual({ address: '93.184.216.34', family: 4 });
  });

  it('lets an admin allow host names and ranges', async () => {
    const p = new AddressPolicy(['hooks.internal', '10.20.0.0/16', '127.0.0.1'], resolveTo('10.99.0.1'));
    // An allowed name may resolve to anything.
    await expect(p.vet(new URL('http://hooks.internal/'))).resolves.toEqual({ address: '10.99.0.1', family: 4 });
    await expect(p.vet(new URL('http://other.internal/'))).rejects.toThrow(/private/);
    expect(p.literalProblem('http://10.20.3.4/')).toBeNull();
    expect(p.literalProblem('http://10.21.3.4/')).toMatch(/private/);
    expect(p.literalProblem('http://127.0.0.1:9000/')).toBeNull();
    expect(p.literalProblem('http://127.0.0.2:9000/')).toMatch(/loopback/);
  });

  it('says when a name does not resolve', async () => {
    const p = new AddressPolicy([], async () => {
      throw Object.assign(new Error('nope'), { code: 'ENOTFOUND' });
    });
    await expect(p.vet(new URL('http://nowhere.invalid/'))).rejects.toThrow('cannot resolve nowhere.invalid (ENOTFOUND)');
  });
});

describe('IMAGEPOD_WEBHOOK_ALLOW', () => {
  const base = { IMAGEPOD_JWT_SECRET: 'x'.repeat(32), IMAGEPOD_REGISTRATION_TOKEN: 'r'.repeat(16) };
  it('takes host names, addresses and CIDRs', () => {
    const c = loadApiConfig({ ...base, IMAGEPOD_WEBHOOK_ALLOW: 'hooks.internal, 10.0.0.0/8,::1,fd00::/8' });
    expect(c.webhooks.allow).toEqual(['hooks.internal', '10.0.0.0/8', '::1', 'fd00::/8']);
    expect(loadApiConfig(base).webhooks).toMatchObject({ allow: [], attempts: 8, timeoutMs: 10_000 });
  });
  it('refuses anything else, naming it', () => {
    expect(() => loadApiConfig({ ...base, IMAGEPOD_WEBHOOK_ALLOW: 'ok.example,10.0.0.0/33,bad_host!' })).toThrow(
      /IMAGEPOD_WEBHOOK_ALLOW: not a host name, address or CIDR: 10.0.0.0\/33, bad_host!/,
    );
  });
});
