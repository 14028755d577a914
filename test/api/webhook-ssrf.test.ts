import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { type AddressInfo, createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AddressPolicy, deniedKind, RefusedAddressError, type Resolver } from '../../src/services/webhooks/address-policy.js';
import { WebhookSender } from '../../src/services/webhooks/sender.js';
import { startTestApi, type TestApi } from '../support/api.js';

/**
 * Webhook URLs turned against the platform's own network, beyond test/unit/webhook-address-policy
 * and test/api/webhooks: other spellings of internal addresses, userinfo tricks, a name that
 * answers a vetted address and then an internal one (DNS rebinding: the real TCP connections are
 * watched), redirects to internal addresses, and how the admin's allow-list takes precedence.
 */

let t: TestApi;
beforeAll(async () => {
  t = await startTestApi('webhook-ssrf');
});
/** Figures for the README: URL spellings refused at submission, deliveries watched at the TCP level. */
const figures = { urls_refused_at_submission: 0, forbidden_connections: 0 };
afterAll(async () => {
  await t?.close();
  mkdirSync('test/artifacts', { recursive: true });
  writeFileSync('test/artifacts/webhook-ssrf.json', `${JSON.stringify(figures, null, 2)}\n`);
  console.log(
    `webhook SSRF: ${figures.urls_refused_at_submission} internal-address spellings refused at submission, ${figures.forbidden_connections} connections to a refused address`,
  );
});

describe('internal addresses however they are spelt are refused at submission, naming webhook_url', () => {
  it.each([
    'http://2130706433/', // decimal
    'http://017700000001/', // octal
    'http://0177.0.0.1/',
    'http://0x7f.1/', // hex, shortened
    'http://0x7f000001/',
    'http://127.1/',
    'http://0/',
    'https://0177.1:8443/x',
    'http://①②⑦.⓪.⓪.①/', // full-width digits, mapped by IDNA
    'http://127。0。0。1/', // ideographic full stops
    'http://169.254.169.254./', // trailing dot
    'HTTP://169.254.169.254/latest/meta-data/',
    'http://[::ffff:127.0.0.1]/', // IPv4-mapped
    'http://[0:0:0:0:0:ffff:169.254.169.254]/',
    'http://[::ffff:0:7f00:1]/', // IPv4-translated (SIIT)
    'http://[::127.0.0.1]/', // IPv4-compatible
    'http://[::0.1.2.3]/',
    'http://[64:ff9b::a9fe:a9fe]/', // NAT64
    'http://[2002:a9fe:a9fe::]/', // 6to4
    'http://[::]/',
    'http://[::1]:6379/',
    'http://[fd00:ec2::254]/', // AWS' IPv6 metadata address
    'http://[fe80::1%25eth0]/', // a zone id: not a URL
    'http://[fe80::1%eth0]/',
    'http://good.example@127.0.0.1/', // userinfo: the host is what follows @
    'http://good.example:80@169.254.169.254/',
    'http://1.1.1.1 &@127.0.0.1# @2.2.2.2/',
    'http://100.100.100.200/', // Alibaba's metadata, carrier-grade NAT
    'http://192.0.0.192/', // Oracle's metadata, IETF protocol assignments
    'http:/\\127.0.0.1/',
    'file:///etc/passwd',
    'gopher://127.0.0.1:6379/_INFO',
  ])('%s', async (url) => {
    const r = await t.req('POST', '/jobs/', { token: t.tokens.alice, body: { docker_image: 'busybox', webhook_url: url } });
    expect(r.status, r.text).toBe(400);
    expect(r.body.fields.map((f: { field: string }) => f.field)).toEqual(['webhook_url']);
    figures.urls_refused_at_submission++;
  });

  it('a name is left to delivery, where it is resolved (a public-looking userinfo changes nothing)', async () => {
    const r = await t.req('POST', '/jobs/', {
      token: t.tokens.alice,
      body: { docker_image: 'busybox', webhook_url: 'http://127.0.0.1@hooks.example.com/x', node_name: 'nowhere' },
    });
    expect(r.status).toBe(201);
  });

  it.each([
    ['::ffff:0:7f00:1', 'loopback'],
    ['::ffff:0:a00:1', 'private'],
    ['::102:3', 'reserved'],
    ['::8.8.8.8', 'reserved'],
    ['::ffff:0:808:808', 'reserved'],
  ])('%s is %s', (address, kind) => {
    expect(deniedKind(address)).toBe(kind);
  });
});

/** A TCP listener that only counts connections: what must never be reached. */
async function listen(server: Server | TcpServer, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}

describe('delivery connects only to the address it vetted', () => {
  // The vetted receiver is on 127.0.0.1 (allow-listed, standing in for a public address); the one
  // that must never be reached is on 127.0.0.2, the same port: loopback, and not allow-listed.
  let receiver: Server;
  let forbidden: TcpServer;
  let port = 0;
  const received: string[] = [];
  let forbiddenConnections = 0;
  let redirectTo = '';

  beforeAll(async () => {
    forbidden = createTcpServer((socket) => {
      forbiddenConnections++;
      figures.forbidden_connections++;
      socket.destroy();
    });
    receiver = createHttpServer((req, res) => {
      received.push(req.url ?? '');
      req.resume();
      req.on('end', () => {
        if (req.url === '/redirect') {
          res.writeHead(302, { Location: redirectTo }).end();
          return;
        }
        res.end('ok');
      });
    });
    for (let tries = 0; port === 0 && tries < 20; tries++) {
      const p = await listen(forbidden, '127.0.0.2', 0);
      try {
        port = await listen(receiver, '127.0.0.1', p);
      } catch {
        await new Promise<void>((resolve) => forbidden.close(() => resolve()));
      }
    }
    expect(port).toBeGreaterThan(0);
  });
  afterAll(async () => {
    receiver?.closeAllConnections();
    await Promise.all([new Promise((r) => receiver?.close(r)), new Promise((r) => forbidden?.close(r))]);
  });

  /** A resolver that answers each call with the next of `answers` (then the last one again). */
  function rebinding(...answers: string[]): Resolver & { calls: number } {
    const resolver = Object.assign(
      async () => {
        const address = answers[Math.min(resolver.calls, answers.length - 1)] as string;
        resolver.calls++;
        return [{ address, family: 4 }];
      },
      { calls: 0 },
    );
    return resolver;
  }

  it('a name that answers a vetted address, then an internal one: the first delivery goes to the vetted one, the next is refused', async () => {
    const resolver = rebinding('127.0.0.1', '127.0.0.2');
    const sender = new WebhookSender(new AddressPolicy(['127.0.0.1'], resolver), 2000);
    const url = `http://rebind.example:${port}/hook`;

    const first = await sender.send(url, 'whsec_x', '{}', 'd1');
    expect(first).toMatchObject({ delivered: true, statusCode: 200 });
    // Resolved once, by the check: the connection did not look the name up again.
    expect(resolver.calls).toBe(1);
    expect(received).toEqual(['/hook']);

    // Every delivery is checked again: the name now answers an internal address.
    const second = await sender.send(url, 'whsec_x', '{}', 'd1');
    expect(second).toMatchObject({ delivered: false, refused: true, statusCode: null });
    expect(second.error).toMatch(/^rebind\.example resolves to a loopback address/);
    expect(received).toEqual(['/hook']);
    expect(forbiddenConnections).toBe(0);
  });

  it('a name with a vetted and an internal address is refused whole, and nothing is connected to', async () => {
    const resolver: Resolver = async () => [
      { address: '127.0.0.1', family: 4 },
      { address: '127.0.0.2', family: 4 },
    ];
    const sender = new WebhookSender(new AddressPolicy(['127.0.0.1'], resolver), 2000);
    const before = received.length;
    const outcome = await sender.send(`http://mixed.example:${port}/mixed`, 'whsec_x', '{}', 'd2');
    expect(outcome).toMatchObject({ delivered: false, refused: true });
    expect(received.length).toBe(before);
    expect(forbiddenConnections).toBe(0);
  });

  it.each([
    ['an internal address', () => `http://127.0.0.2:${port}/stolen`],
    ['the metadata service', () => 'http://169.254.169.254/latest/meta-data/iam/security-credentials/'],
    ['a name', () => `http://localhost:${port}/stolen`],
  ])('a redirect to %s is not followed', async (_what, target) => {
    redirectTo = target();
    const sender = new WebhookSender(new AddressPolicy(['127.0.0.1']), 2000);
    const outcome = await sender.send(`http://127.0.0.1:${port}/redirect`, 'whsec_x', '{}', 'd3');
    expect(outcome).toMatchObject({ delivered: false, refused: false, statusCode: 302, error: 'redirects are not followed' });
    expect(received.filter((p) => p === '/stolen')).toEqual([]);
    expect(forbiddenConnections).toBe(0);
  });
});

describe("the admin's allow-list", () => {
  const resolveTo =
    (...addresses: string[]): Resolver =>
    async () =>
      addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

  it('a listed range allows its addresses in every spelling, and nothing next to it', async () => {
    const p = new AddressPolicy(['10.20.0.0/16'], resolveTo('10.20.9.9'));
    for (const ok of ['http://10.20.1.1/', 'http://[::ffff:10.20.1.1]/', 'http://169090817/']) expect(p.literalProblem(ok), ok).toBeNull();
    for (const no of ['http://10.21.0.1/', 'http://10.19.255.255/', 'http://127.0.0.1/']) expect(p.literalProblem(no), no).not.toBeNull();
    await expect(p.vet(new URL('http://any-name.example/'))).resolves.toEqual({ address: '10.20.9.9', family: 4 });
  });

  it('a listed name allows whatever it resolves to, and only that exact name', async () => {
    const p = new AddressPolicy(['hooks.internal'], resolveTo('169.254.169.254'));
    await expect(p.vet(new URL('http://hooks.internal/'))).resolves.toEqual({ address: '169.254.169.254', family: 4 });
    await expect(p.vet(new URL('http://HOOKS.INTERNAL./'))).resolves.toMatchObject({ address: '169.254.169.254' });
    for (const other of ['http://sub.hooks.internal/', 'http://hooks.internal.evil.example/', 'http://hooks.internal@evil.example/']) {
      await expect(p.vet(new URL(other)), other).rejects.toThrow(RefusedAddressError);
    }
    // Listing the name does not list its address.
    expect(p.literalProblem('http://169.254.169.254/')).toMatch(/link-local/);
    expect(p.literalProblem('http://hooks.internal@169.254.169.254/')).toMatch(/link-local/);
  });

  it('without a list, nothing internal passes, whatever the name says', async () => {
    const p = new AddressPolicy([], resolveTo('10.0.0.5'));
    await expect(p.vet(new URL('http://hooks.internal/'))).rejects.toThrow(/hooks\.internal resolves to a private address/);
  });
});
