import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';

/**
 * scripts/deploy_gpu_workers.sh against recording stand-ins for kubectl and helm
 * (test/fixtures/k8s-bin): there is no cluster and no helm binary here. The script runs with a PATH
 * that holds the stand-ins and every other tool of this machine except the real kubectl and helm,
 * so nothing can reach a cluster. What is asserted is what the script asks of them, in order.
 */
const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const SCRIPT = join(ROOT, 'scripts/deploy_gpu_workers.sh');
const STANDINS = join(ROOT, 'test/fixtures/k8s-bin');
const CHART = join(ROOT, 'helm/imagepod');

let dir: string;
let log: string;
/** This machine's tools without kubectl and helm: symlinks to everything else on PATH. */
let toolsBin: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'imagepod-deploy-script-'));
  toolsBin = join(dir, 'tools');
  mkdirSync(toolsBin);
  for (const d of (process.env.PATH ?? '').split(delimiter)) {
    if (!d || !existsSync(d)) continue;
    for (const name of readdirSync(d)) {
      if (name === 'kubectl' || name === 'helm' || existsSync(join(toolsBin, name))) continue;
      symlinkSync(join(d, name), join(toolsBin, name));
    }
  }
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeEach(() => {
  log = join(dir, `calls-${Math.random().toString(36).slice(2)}.log`);
  writeFileSync(log, '');
});

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the script; `standins` names which stand-ins are on PATH. */
function deploy(args: string[], opts: { env?: Record<string, string>; standins?: ('kubectl' | 'helm')[] } = {}): Promise<Result> {
  const standins = opts.standins ?? ['kubectl', 'helm'];
  const bin = join(dir, `bin-${standins.join('-') || 'none'}`);
  if (!existsSync(bin)) {
    mkdirSync(bin);
    for (const s of standins) symlinkSync(join(STANDINS, s), join(bin, s));
  }
  const env: Record<string, string> = { PATH: `${bin}${delimiter}${toolsBin}`, HOME: dir, STANDIN_LOG: log, ...opts.env };
  return new Promise((resolve, reject) => {
    const child = spawn(SCRIPT, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The recorded calls, as argument lists starting with the tool. */
function calls(): string[][] {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('file\t'))
    .map((l) => l.split('\t'));
}
/** Contents of the files the stand-in kubectl was handed, by key. */
function files(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of readFileSync(log, 'utf8').split('\n')) {
    const [kind, key, ...rest] = l.split('\t');
    if (kind === 'file' && key) out[key] = rest.join('\t');
  }
  return out;
}

const API = 'app.kubernetes.io/instance=imagepod,app.kubernetes.io/component=api';
const AGENT = 'app.kubernetes.io/instance=imagepod,app.kubernetes.io/component=gpu-worker';

describe('scripts/deploy_gpu_workers.sh', () => {
  it('passes bash -n and shellcheck', async () => {
    await run('bash', ['-n', SCRIPT]);
    const shellcheck = await run('shellcheck', [SCRIPT, join(STANDINS, 'kubectl'), join(STANDINS, 'helm')]).catch((err) => {
      if (err.code === 'ENOENT') throw new Error('shellcheck is not installed: apt-get install -y shellcheck (.ci/run does)');
      throw new Error(`shellcheck: ${err.stdout}`);
    });
    expect(shellcheck.stdout).toBe('');
  });

  it('--help explains itself and calls nothing', async () => {
    const r = await deploy(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: scripts/deploy_gpu_workers.sh');
    expect(r.stdout).toContain('--dry-run');
    expect(calls()).toEqual([]);
  });

  it('a first deploy creates the namespace and the Secret (token generated, printed once), installs the chart, waits for both rollouts', async () => {
    const values = join(dir, 'my-values.yaml');
    writeFileSync(values, 'api:\n  replicaCount: 3\n');
    const r = await deploy(['--set', 'api.image.registry=registry.example.com', '-f', values, '--timeout', '5m']);
    expect(r.code, r.stderr).toBe(0);
    const c = calls();
    const createSecret = c[4] ?? [];
    expect(c).toEqual([
      ['kubectl', 'get', 'namespace', 'imagepod'],
      ['kubectl', 'create', 'namespace', 'imagepod'],
      ['kubectl', 'label', 'namespace', 'imagepod', 'pod-security.kubernetes.io/enforce=privileged', '--overwrite'],
      ['kubectl', '-n', 'imagepod', 'get', 'secret', 'imagepod-secrets'],
      ['kubectl', '-n', 'imagepod', 'create', 'secret', 'generic', 'imagepod-secrets', createSecret[7], createSecret[8]],
      [
        'helm',
        'upgrade',
        '--install',
        'imagepod',
        CHART,
        '--namespace',
        'imagepod',
        '--set-string',
        'secrets.existingSecret=imagepod-secrets',
        '--set',
        'api.image.registry=registry.example.com',
        '--values',
        values,
      ],
      ['kubectl', '-n', 'imagepod', 'rollout', 'status', 'deployment', '-l', API, '--timeout=5m'],
      ['kubectl', '-n', 'imagepod', 'get', 'daemonset', '-l', AGENT, '-o', 'name'],
      ['kubectl', '-n', 'imagepod', 'rollout', 'status', 'daemonset', '-l', AGENT, '--timeout=5m'],
      ['kubectl', '-n', 'imagepod', 'get', 'service', '-l', API, '-o', 'name'],
      ['kubectl', '-n', 'imagepod', 'get', 'deployment', '-l', API, '-o', 'name'],
    ]);
    // The secrets went through files (not argv), which are gone afterwards.
    expect(createSecret[7]).toMatch(/^--from-file=registration-token=\/.+\/registration-token$/);
    expect(createSecret[8]).toMatch(/^--from-file=jwt-secret=\/.+\/jwt-secret$/);
    expect(existsSync((createSecret[7] ?? '').split('=')[2] ?? '')).toBe(false);
    const f = files();
    expect(f['registration-token']).toMatch(/^[0-9a-f]{48}$/);
    expect(f['jwt-secret']).toMatch(/^[0-9a-f]{64}$/);
    // The generated token is shown once; the JWT secret never.
    const out = r.stdout + r.stderr;
    expect(out.split(f['registration-token'] ?? 'x')).toHaveLength(2);
    expect(out).not.toContain(f['jwt-secret']);
    expect(out).toContain('kubectl get pods -n imagepod -l app=imagepod-gpu-worker');
    expect(out).toContain('kubectl logs -n imagepod -l app=imagepod-gpu-worker');
    expect(out).toContain('kubectl -n imagepod port-forward service/imagepod-api 8000:http');
    expect(out).toContain(
      'kubectl -n imagepod exec deployment.apps/imagepod-api -- node dist/src/cli/mint-token.js --sub admin --role admin',
    );
  });

  it('with the Secret already there and a token from the environment, changes only that key; no DaemonSet, no wait for it', async () => {
    const token = 'tok-0123456789abcdef-from-env';
    const r = await deploy(['--namespace', 'gpu', '--release', 'prod', '--', '--version', '0.1.0'], {
      env: { IMAGEPOD_REGISTRATION_TOKEN: token, STANDIN_NAMESPACE_EXISTS: '1', STANDIN_SECRET_EXISTS: '1', STANDIN_NO_DAEMONSET: '1' },
    });
    expect(r.code, r.stderr).toBe(0);
    const c = calls();
    const prodApi = 'app.kubernetes.io/instance=prod,app.kubernetes.io/component=api';
    const prodAgent = 'app.kubernetes.io/instance=prod,app.kubernetes.io/component=gpu-worker';
    expect(c).toEqual([
      ['kubectl', 'get', 'namespace', 'gpu'],
      ['kubectl', 'label', 'namespace', 'gpu', 'pod-security.kubernetes.io/enforce=privileged', '--overwrite'],
      ['kubectl', '-n', 'gpu', 'get', 'secret', 'imagepod-secrets'],
      ['kubectl', '-n', 'gpu', 'patch', 'secret', 'imagepod-secrets', '--type', 'merge', '--patch-file', c[3]?.[9]],
      [
        'helm',
        'upgrade',
        '--install',
        'prod',
        CHART,
        '--namespace',
        'gpu',
        '--set-string',
        'secrets.existingSecret=imagepod-secrets',
        '--version',
        '0.1.0',
      ],
      ['kubectl', '-n', 'gpu', 'rollout', 'status', 'deployment', '-l', prodApi, '--timeout=10m'],
      ['kubectl', '-n', 'gpu', 'get', 'daemonset', '-l', prodAgent, '-o', 'name'],
      ['kubectl', '-n', 'gpu', 'get', 'service', '-l', prodApi, '-o', 'name'],
      ['kubectl', '-n', 'gpu', 'get', 'deployment', '-l', prodApi, '-o', 'name'],
    ]);
    expect(JSON.parse(files().patch ?? '')).toEqual({ data: { 'registration-token': Buffer.from(token).toString('base64') } });
    expect(r.stderr).toContain('no agent DaemonSet in this release');
    expect(r.stdout + r.stderr).not.toContain(token);
  });

  it('with the Secret already there and nothing given, keeps it as it is', async () => {
    const r = await deploy([], { env: { STANDIN_NAMESPACE_EXISTS: '1', STANDIN_SECRET_EXISTS: '1' } });
    expect(r.code, r.stderr).toBe(0);
    expect(calls().filter((a) => a.includes('secret') && ['create', 'patch', 'apply', 'delete'].some((v) => a.includes(v)))).toEqual([]);
    expect(r.stderr).toContain('Secret imagepod-secrets exists: kept as it is');
  });

  it('--dry-run prints the manifests and the commands, runs only `helm template`, and needs no kubectl', async () => {
    const r = await deploy(['--dry-run', '--set', 'agent.enabled=true'], { standins: ['helm'] });
    expect(r.code, r.stderr).toBe(0);
    expect(calls()).toEqual([
      [
        'helm',
        'template',
        'imagepod',
        CHART,
        '--namespace',
        'imagepod',
        '--set-string',
        'secrets.existingSecret=imagepod-secrets',
        '--set',
        'agent.enabled=true',
      ],
    ]);
    expect(r.stdout).toContain('kind: Deployment');
    expect(r.stderr).toContain('kubectl get namespace imagepod || kubectl create namespace imagepod');
    expect(r.stderr).toContain('kubectl label namespace imagepod pod-security.kubernetes.io/enforce=privileged --overwrite');
    expect(r.stderr).toContain(`helm upgrade --install imagepod ${CHART} --namespace imagepod`);
    expect(r.stderr).toContain(`rollout status daemonset -l ${AGENT}`);
  });

  it('fails clearly, touching nothing, when kubectl or helm is missing', async () => {
    const noKubectl = await deploy([], { standins: ['helm'] });
    expect(noKubectl.code).toBe(1);
    expect(noKubectl.stderr).toContain('kubectl is not installed or not on PATH');
    const noHelm = await deploy([], { standins: ['kubectl'] });
    expect(noHelm.code).toBe(1);
    expect(noHelm.stderr).toContain('helm is not installed or not on PATH');
    expect(calls()).toEqual([]);
  });

  it('refuses unknown options and secrets too short to be accepted, before calling anything', async () => {
    expect(await deploy(['--bogus'])).toMatchObject({ code: 1, stderr: expect.stringContaining('unknown option: --bogus') });
    expect(await deploy(['--registration-token', 'short'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('the registration token needs 16+ characters'),
    });
    expect(await deploy(['--namespace'])).toMatchObject({ code: 1, stderr: expect.stringContaining('--namespace needs a value') });
    expect(calls()).toEqual([]);
  });
});
