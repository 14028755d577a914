import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { ApiCertificateError, ApiClient, ApiError } from '../../agent/api-client.js';
import { loadAgentConfig } from '../../agent/config.js';
import { loadApiConfig } from '../../src/config/api-config.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { httpsCall, servedSerial } from '../support/https.js';
import { jobsOf } from '../support/jobs.js';
import { type IssuedCert, issueServerCert, makeTestCa, opensslVersion } from '../support/test-ca.js';

/**
 * The API serving HTTPS from certificate files it re-reads when they change, and a real agent
 * that trusts it through IMAGEPOD_API_CA_FILE. The certificates come from a CA made here with
 * openssl; the files are laid out as a Kubernetes secret volume lays them out (`tls.crt` ->
 * `..data/tls.crt`, `..data` -> a timestamped directory swapped in one rename).
 */

opensslVersion();
const ca = makeTestCa();
const caPem = readFileSync(ca.certFile, 'utf8');
const otherCa = makeTestCa('Somebody Else CA');
const volume = mkdtempSync(join(tmpdir(), 'imagepod-tls-volume-'));
const certFile = join(volume, 'tls.crt');
const keyFile = join(volume, 'tls.key');

/** What kubelet does when the Secret changes: a new directory, then `..data` renamed onto it. */
function installPair(cert: string, key: string): void {
  const gen = `..${Date.now()}_${Math.random().toString(36).slice(2, 8)}`;
  mkdirSync(join(volume, gen));
  writeFileSync(join(volume, gen, 'tls.crt'), cert);
  writeFileSync(join(volume, gen, 'tls.key'), key);
  symlinkSync(gen, join(volume, '..data_tmp'));
  renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
}

const pem = (c: IssuedCert) => ({ cert: readFileSync(c.certFile, 'utf8'), key: readFileSync(c.keyFile, 'utf8') });

const first = issueServerCert(ca);
installPair(pem(first).cert, pem(first).key);
symlinkSync('..data/tls.crt', certFile);
symlinkSync('..data/tls.key', keyFile);

const logLines: string[] = [];
const logger = pino(
  { level: 'info' },
  new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(chunk.toString());
      done();
    },
  }),
);
const logged = (msg: string) => logLines.filter((l) => (JSON.parse(l) as { msg: string }).msg === msg).length;

let t: TestApi;
/** The test API, called over HTTPS with the test CA. */
let st: TestApi;

beforeAll(async () => {
  t = await startTestApi(
    'tls',
    { IMAGEPOD_TLS_CERT_FILE: certFile, IMAGEPOD_TLS_KEY_FILE: keyFile, IMAGEPOD_HEARTBEAT_INTERVAL_MS: '200' },
    logger,
  );
  st = { ...t, req: (method, path, opts) => httpsCall(t.url, method, `/gpu-workers${path}`, { ...opts, ca: caPem }) };
});
afterAll(async () => t?.close());

const baseEnv = {
  IMAGEPOD_JWT_SECRET: 'x'.repeat(32),
  IMAGEPOD_REGISTRATION_TOKEN: 'r'.repeat(16),
};

describe('the API configuration for HTTPS', () => {
  it('needs both the certificate and the key, and names what is wrong with them', () => {
    expect(() => loadApiConfig({ ...baseEnv, IMAGEPOD_TLS_CERT_FILE: certFile })).toThrow(
      /IMAGEPOD_TLS_KEY_FILE: set both IMAGEPOD_TLS_CERT_FILE and IMAGEPOD_TLS_KEY_FILE/,
    );
    expect(() => loadApiConfig({ ...baseEnv, IMAGEPOD_TLS_CERT_FILE: '/nonexistent/tls.crt', IMAGEPOD_TLS_KEY_FILE: keyFile })).toThrow(
      'IMAGEPOD_TLS_CERT_FILE: cannot read /nonexistent/tls.crt (ENOENT)',
    );
    const stranger = issueServerCert(otherCa);
    expect(() => loadApiConfig({ ...baseEnv, IMAGEPOD_TLS_CERT_FILE: certFile, IMAGEPOD_TLS_KEY_FILE: stranger.keyFile })).toThrow(
      /IMAGEPOD_TLS_KEY_FILE: the key in .* does not belong to the certificate/,
    );
    expect(() => loadApiConfig({ ...baseEnv, IMAGEPOD_TLS_CERT_FILE: keyFile, IMAGEPOD_TLS_KEY_FILE: keyFile })).toThrow(
      /IMAGEPOD_TLS_CERT_FILE: .* holds no PEM certificate/,
    );
    expect(loadApiConfig({ ...baseEnv, IMAGEPOD_TLS_CERT_FILE: certFile, IMAGEPOD_TLS_KEY_FILE: keyFile }).tls).toEqual({
      certFile,
      keyFile,
    });
    expect(() => loadApiConfig({ ...baseEnv, IMAGEPOD_TRUST_PROXY: '10.0.0.0/33' })).toThrow(/IMAGEPOD_TRUST_PROXY/);
  });
});

describe('the API over HTTPS', () => {
  it('answers clients that trust its CA, and only those', async () => {
    expect(t.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const health = await httpsCall(t.url, 'GET', '/healthz', { ca: caPem });
    expect(health.status).toBe(200);
    await expect(httpsCall(t.url, 'GET', '/healthz')).rejects.toMatchObject({ code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });
    await expect(httpsCall(t.url, 'GET', '/healthz', { ca: readFileSync(otherCa.certFile, 'utf8') })).rejects.toMatchObject({
      code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    });
    expect(await servedSerial(t.url, caPem)).toBe(first.serialNumber);
  });

  it('marks the session cookie Secure', async () => {
    const r = await st.req('POST', '/session', { body: { token: t.tokens.alice } });
    expect(r.status).toBe(204);
    expect(r.headers.get('set-cookie')).toMatch(/^imagepod_session=[^;]+;.*; Secure$/);
  });

  it('serves a replaced certificate to new connections without a restart, and keeps serving the old one when the new pair is broken', async () => {
    const second = issueServerCert(ca, { days: 2 });
    installPair(pem(second).cert, pem(second).key);
    await waitFor('the new certificate to be served', async () => (await servedSerial(t.url, caPem)) === second.serialNumber);
    expect(logged('TLS certificate reloaded')).toBe(1);

    // Half a rotation: a new certificate with the previous key. New connections still get `second`.
    const third = issueServerCert(ca);
    installPair(pem(third).cert, pem(second).key);
    await waitFor(
      'the broken pair to be noticed',
      async () => logged('TLS certificate not reloaded: still serving the previous one') === 1,
    );
    expect(await servedSerial(t.url, caPem)).toBe(second.serialNumber);
    expect((await httpsCall(t.url, 'GET', '/healthz', { ca: caPem })).status).toBe(200);
    const warning = logLines.find((l) => l.includes('TLS certificate not reloaded')) ?? '';
    expect(warning).toContain('does not belong to the certificate');
    expect(warning).not.toContain('PRIVATE KEY');

    // The other half arrives: now it is served.
    installPair(pem(third).cert, pem(third).key);
    await waitFor('the completed rotation to be served', async () => (await servedSerial(t.url, caPem)) === third.serialNumber);
  });
});

describe('an agent and an HTTPS API', () => {
  let agent: Agent | undefined;
  afterAll(async () => agent?.stop(0));

  it('registers, heartbeats and runs a job, trusting the API through IMAGEPOD_API_CA_FILE', async () => {
    agent = await startAgent(t, { IMAGEPOD_API_CA_FILE: ca.certFile });
    const nodeId = agent.identity.node_id;
    const node = await waitFor('the node online', async () => {
      const n = (await st.req('GET', `/nodes/${nodeId}`, { token: t.tokens.admin })).body;
      return n.status === 'online' && n.last_heartbeat ? n : undefined;
    });
    expect(node.node_name).toBe(agent.config.node.name);

    const jobs = jobsOf(st);
    const id = await jobs.submit({
      docker_image: 'busybox',
      command: ['sh', '-c'],
      args: ['echo over tls; echo \'{"secure": true}\' > "$IMAGEPOD_OUTPUT_DIR/result.json"'],
      memory_required: 64,
    });
    const done = await jobs.finished(id);
    expect(done).toMatchObject({ status: 'succeeded', exit_code: 0, node_id: nodeId });
    expect(done.result.data).toEqual({ secure: true });
    expect(await jobs.logLines(id)).toEqual(['over tls', 'job ended: succeeded']);
  });

  it('will not register with an API whose certificate its CA did not sign, and says why', async () => {
    const err = await startAgent(t, { IMAGEPOD_API_CA_FILE: otherCa.certFile }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ApiCertificateError);
    expect((err as Error).message).toMatch(
      /^POST \/agents\/register: the API's TLS certificate was not accepted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE: .*\); checked against the CAs in .*ca\.crt: set IMAGEPOD_API_CA_FILE to the CA that signed it$/,
    );
  });

  it('picks up a replaced CA file without a restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imagepod-agent-ca-'));
    const file = join(dir, 'ca.crt');
    writeFileSync(file, readFileSync(otherCa.certFile));
    const client = new ApiClient(t.url, pino({ level: 'silent' }), { caFile: file });
    try {
      await expect(client.request('GET', '/me', undefined, { deadlineMs: 0, failOnCertificateError: true })).rejects.toBeInstanceOf(
        ApiCertificateError,
      );
      writeFileSync(`${file}.tmp`, caPem);
      renameSync(`${file}.tmp`, file);
      // Reaching the API shows as its answer: 401, since this client has no key.
      const answered = await waitFor('the new CA to be trusted', async () =>
        client.request('GET', '/me', undefined, { deadlineMs: 0, failOnCertificateError: true }).then(
          () => undefined,
          (e: unknown) => (e instanceof ApiError ? e : undefined),
        ),
      );
      expect(answered.status).toBe(401);
    } finally {
      client.close();
    }
  });
});

describe('the command-line tool and an HTTPS API', () => {
  /** `imagepod whoami` as its own process: Node reads NODE_EXTRA_CA_CERTS only when it starts. */
  const whoami = (env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> => {
    const home = mkdtempSync(join(tmpdir(), 'imagepod-cli-tls-'));
    // Asynchronously: the API answering it lives in this process.
    const child = spawn(process.execPath, [join(import.meta.dirname, '../../bin/imagepod.mjs'), 'whoami'], {
      env: {
        PATH: process.env.PATH,
        HOME: home,
        IMAGEPOD_CONFIG: join(home, 'config.json'),
        IMAGEPOD_API_URL: t.url,
        IMAGEPOD_TOKEN: t.tokens.alice,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  };

  it('trusts the CA given in NODE_EXTRA_CA_CERTS, and says to set it when the certificate is not trusted', async () => {
    const refused = await whoami({});
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`the API's TLS certificate at ${t.url} was not accepted (UNABLE_TO_VERIFY_LEAF_SIGNATURE)`);
    expect(refused.stderr).toContain('NODE_EXTRA_CA_CERTS=');
    expect(await whoami({ NODE_EXTRA_CA_CERTS: ca.certFile })).toMatchObject({ code: 0, stdout: `alice (user) at ${t.url}\n` });
  });
});

describe('the agent configuration', () => {
  const agentEnv = (env: Record<string, string>) => ({ IMAGEPOD_EXECUTOR: 'process', ...env });

  it('refuses plain HTTP to another machine unless IMAGEPOD_ALLOW_INSECURE_API is set', () => {
    for (const url of ['http://10.0.0.5:8000', 'http://imagepod.example.com', 'http://[fd00::1]:8000']) {
      expect(() => loadAgentConfig(agentEnv({ IMAGEPOD_API_URL: url }))).toThrow(/IMAGEPOD_API_URL: plain http to another machine/);
      expect(loadAgentConfig(agentEnv({ IMAGEPOD_API_URL: url, IMAGEPOD_ALLOW_INSECURE_API: 'true' })).apiUrl).toBe(url);
    }
    for (const url of [
      'http://127.0.0.1:8000',
      'http://127.1.2.3:8000',
      'http://localhost:8000',
      'http://[::1]:8000',
      'https://imagepod.example.com',
    ]) {
      expect(loadAgentConfig(agentEnv({ IMAGEPOD_API_URL: url })).apiUrl).toBe(url);
    }
  });

  it('checks IMAGEPOD_API_CA_FILE when it loads', () => {
    const url = 'https://imagepod.example.com';
    expect(loadAgentConfig(agentEnv({ IMAGEPOD_API_URL: url, IMAGEPOD_API_CA_FILE: ca.certFile })).apiCaFile).toBe(ca.certFile);
    expect(() => loadAgentConfig(agentEnv({ IMAGEPOD_API_URL: url, IMAGEPOD_API_CA_FILE: '/nonexistent/ca.crt' }))).toThrow(
      'IMAGEPOD_API_CA_FILE: cannot read /nonexistent/ca.crt (ENOENT)',
    );
    expect(() => loadAgentConfig(agentEnv({ IMAGEPOD_API_URL: url, IMAGEPOD_API_CA_FILE: ca.keyFile }))).toThrow(
      /IMAGEPOD_API_CA_FILE: .* holds no PEM certificate/,
    );
  });
});

describe('behind a TLS-terminating proxy', () => {
  const signIn = (api: TestApi, proto?: string) =>
    api.req('POST', '/session', { body: { token: api.tokens.alice }, headers: proto ? { 'x-forwarded-proto': proto } : {} });

  it('marks the cookie Secure from X-Forwarded-Proto only with IMAGEPOD_TRUST_PROXY', async () => {
    const trusting = await startTestApi('tls-proxy', { IMAGEPOD_TRUST_PROXY: 'loopback' });
    const plain = await startTestApi('tls-noproxy');
    try {
      expect(trusting.url).toMatch(/^http:/);
      expect((await signIn(trusting, 'https')).headers.get('set-cookie')).toMatch(/; Secure$/);
      expect((await signIn(trusting)).headers.get('set-cookie')).not.toMatch(/Secure/);
      expect((await signIn(plain, 'https')).headers.get('set-cookie')).not.toMatch(/Secure/);
    } finally {
      await trusting.close();
      await plain.close();
    }
  });
});
