import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PullPolicy } from '../../agent/config.js';
import { DockerExecutor } from '../../agent/executor/docker.js';
import { RegistryAuth } from '../../agent/executor/registry-auth.js';
import { testDocker, testDockerHost } from '../support/docker.js';
import { startTestRegistry, type TestRegistry } from '../support/registry.js';
import { type Recorded, recorder, request } from './executor-contract.js';

/**
 * The Docker executor against a real engine and a registry served from this test (plain HTTP on
 * 127.0.0.1, which the engine treats as insecure by default): pulls report progress, and private
 * registries get the node's credentials, or the named secret a job refers to, and nothing else.
 */
const USER = 'ci-bot';
const PASSWORD = 'pw-9f3c1e77d2a4';
const WRONG_PASSWORD = 'wrong-pw-5b81c0aa63e9';
const never = new AbortController().signal;

let host = '';
let open: TestRegistry;
let locked: TestRegistry;
let dir = '';
const files = { auth: '', secrets: '', wrongAuth: '' };
/** Images this file pulled: removed after each test so the next pull downloads every blob again. */
const pulled = new Set<string>();

let seq = 0;
/** A repository name the engine has never seen. */
const freshName = () => `t${Date.now()}x${seq++}/busy`;

const make = (auth: RegistryAuth, pullPolicy: PullPolicy = 'always') =>
  new DockerExecutor(
    {
      host,
      network: 'none',
      pullPolicy,
      pidsLimit: 64,
      stopGraceSeconds: 1,
      outputMaxBytes: 64 * 1024,
      gpuDeviceRequests: false,
    },
    auth,
    pino({ level: 'silent' }),
  );

const job = (image: string, registrySecret: string | null = null) =>
  request({ image, command: ['sh', '-c', 'echo pulled-and-ran'], args: null, registrySecret });

/** The requests the registry got for one repository (the `/v2/` ping names none). */
const requestsFor = (registry: TestRegistry, name: string) => registry.requests.filter((r) => r.path.startsWith(`/v2/${name}/`));
const manifestRequests = (registry: TestRegistry, name: string) =>
  requestsFor(registry, name).filter((r) => r.path.includes('/manifests/'));

const stdoutOf = (hooks: Recorded) => hooks.lines.filter((l) => l.stream === 'stdout').map((l) => l.text);

const present = (ref: string) =>
  testDocker()
    .getImage(ref)
    .inspect()
    .then(
      () => true,
      () => false,
    );

beforeAll(async () => {
  host = testDockerHost();
  open = await startTestRegistry();
  locked = await startTestRegistry({ username: USER, password: PASSWORD });
  dir = await mkdtemp(join(tmpdir(), 'imagepod-registry-'));
  const basic = (user: string, password: string) => Buffer.from(`${user}:${password}`).toString('base64');
  files.auth = join(dir, 'config.json');
  files.wrongAuth = join(dir, 'wrong-config.json');
  files.secrets = join(dir, 'secrets.json');
  await writeFile(files.auth, JSON.stringify({ auths: { [locked.host]: { auth: basic(USER, PASSWORD) } } }));
  await writeFile(files.wrongAuth, JSON.stringify({ auths: { [locked.host]: { auth: basic(USER, WRONG_PASSWORD) } } }));
  await writeFile(files.secrets, JSON.stringify({ 'team-registry': { serveraddress: locked.host, username: USER, password: PASSWORD } }));
});

afterEach(async () => {
  const docker = testDocker();
  for (const ref of pulled)
    await docker
      .getImage(ref)
      .remove({ force: true })
      .catch(() => {});
  pulled.clear();
});

afterAll(async () => {
  await open?.close();
  await locked?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('docker executor pulls from a registry', () => {
  it('pulls a public image with progress from 0 through 100, then runs it', async () => {
    const name = freshName();
    const ref = open.image(name, '1');
    pulled.add(ref);
    const hooks = recorder();

    const res = await make(RegistryAuth.empty()).run(job(ref), hooks, never);

    expect(res).toMatchObject({ status: 'succeeded', exitCode: 0, reason: null });
    expect(stdoutOf(hooks)).toEqual(['pulled-and-ran']);
    expect(hooks.pulls[0]).toBe(0);
    expect(hooks.pulls.at(-1)).toBe(100);
    expect(hooks.pulls.filter((p) => p > 0 && p < 100).length).toBeGreaterThan(0);
    for (let i = 1; i < hooks.pulls.length; i++) expect(hooks.pulls[i]).toBeGreaterThan(hooks.pulls[i - 1] ?? 0);
    const seen = requestsFor(open, name);
    expect(seen.some((r) => r.path.includes('/manifests/'))).toBe(true);
    // The image config and the layer.
    expect(new Set(seen.filter((r) => r.method === 'GET' && r.path.includes('/blobs/sha256:')).map((r) => r.path)).size).toBe(2);
    expect(await present(ref)).toBe(true);
  });

  it("pulls from a private registry with the node's credentials for it", async () => {
    const name = freshName();
    const ref = locked.image(name, '1');
    pulled.add(ref);
    const hooks = recorder();

    const res = await make(await RegistryAuth.load(files.auth, undefined)).run(job(ref), hooks, never);

    expect(res).toMatchObject({ status: 'succeeded', exitCode: 0, reason: null });
    expect(stdoutOf(hooks)).toEqual(['pulled-and-ran']);
    const seen = requestsFor(locked, name);
    expect(seen.filter((r) => r.path.includes('/manifests/')).length).toBeGreaterThan(0);
    expect(seen.filter((r) => r.path.includes('/blobs/')).length).toBe(2);
    expect(seen.every((r) => r.authorized)).toBe(true);
  });

  it('pulls from a private registry with the named secret the job refers to', async () => {
    const name = freshName();
    const ref = locked.image(name, '1');
    pulled.add(ref);
    const hooks = recorder();

    // The node has no credentials for this registry by host: only the secret can open it.
    const res = await make(await RegistryAuth.load(undefined, files.secrets)).run(job(ref, 'team-registry'), hooks, never);

    expect(res).toMatchObject({ status: 'succeeded', exitCode: 0, reason: null });
    expect(stdoutOf(hooks)).toEqual(['pulled-and-ran']);
    const seen = requestsFor(locked, name);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((r) => r.authorized)).toBe(true);
  });

  it('without credentials the private registry turns the pull away (so the passing pulls above used theirs)', async () => {
    const name = freshName();
    const ref = locked.image(name, '1');
    pulled.add(ref);

    const res = await make(RegistryAuth.empty()).run(job(ref), recorder(), never);

    expect(res).toMatchObject({ status: 'failed', reason: 'image_pull_failed' });
    expect(res.message).toMatch(/no basic auth credentials|unauthorized/);
    expect(requestsFor(locked, name).some((r) => r.path.includes('/blobs/'))).toBe(false);
    expect(await present(ref)).toBe(false);
  });

  it('a job naming a secret the node does not have fails before anything reaches the registry', async () => {
    const name = freshName();
    const ref = locked.image(name, '1');
    pulled.add(ref);
    const before = locked.requests.length;

    const res = await make(await RegistryAuth.load(files.auth, files.secrets)).run(job(ref, 'other-team'), recorder(), never);

    expect(res).toMatchObject({ status: 'failed', reason: 'image_pull_failed', failedToStart: false });
    expect(res.message).toContain('"other-team"');
    expect(locked.requests.length).toBe(before);
    expect(await present(ref)).toBe(false);
  });

  it('a wrong password fails as image_pull_failed, and the message does not carry the password', async () => {
    const name = freshName();
    const ref = locked.image(name, '1');
    pulled.add(ref);

    const res = await make(await RegistryAuth.load(files.wrongAuth, undefined)).run(job(ref), recorder(), never);

    expect(res).toMatchObject({ status: 'failed', reason: 'image_pull_failed', failedToStart: false });
    expect(res.message).toContain(`could not pull ${ref}`);
    expect(res.message).toMatch(/unauthorized$/);
    expect(res.message).not.toContain('HTTP code');
    expect(res.message).not.toContain(WRONG_PASSWORD);
    expect(res.message).not.toContain(Buffer.from(`${USER}:${WRONG_PASSWORD}`).toString('base64'));
    // The engine did try with the credentials (without any it stops at the `/v2/` challenge and
    // never names the repository), and got no further than the manifest.
    const seen = requestsFor(locked, name);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.some((r) => r.authorized)).toBe(false);
    expect(seen.some((r) => r.path.includes('/blobs/'))).toBe(false);
    expect(await present(ref)).toBe(false);
  });

  it('if-not-present does not ask the registry again for an image the engine has; always does', async () => {
    const name = freshName();
    const ref = open.image(name, '1');
    pulled.add(ref);
    const ifNotPresent = make(RegistryAuth.empty(), 'if-not-present');

    const first = recorder();
    expect(await ifNotPresent.run(job(ref), first, never)).toMatchObject({ status: 'succeeded' });
    expect(first.pulls.at(-1)).toBe(100);
    const manifestsAfterFirst = manifestRequests(open, name).length;
    expect(manifestsAfterFirst).toBeGreaterThan(0);
    const requestsAfterFirst = requestsFor(open, name).length;

    const second = recorder();
    expect(await ifNotPresent.run(job(ref), second, never)).toMatchObject({ status: 'succeeded' });
    expect(stdoutOf(second)).toEqual(['pulled-and-ran']);
    expect(second.pulls).toEqual([]);
    expect(requestsFor(open, name).length).toBe(requestsAfterFirst);

    const third = recorder();
    expect(await make(RegistryAuth.empty(), 'always').run(job(ref), third, never)).toMatchObject({ status: 'succeeded' });
    expect(manifestRequests(open, name).length).toBeGreaterThan(manifestsAfterFirst);
  });
});
