/**
 * Renders helm/imagepod with tools/helm-render (Go text/template + sprig, the engine Helm uses),
 * built once per test run into a temporary directory. There is no helm binary on these machines.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import type { K8sObject } from './k8s-validate.js';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const CHART_DIR = join(REPO_ROOT, 'helm/imagepod');

const INSTALL = 'apt-get install -y golang-go golang-github-masterminds-sprig-dev golang-gopkg-yaml.v3-dev';

export interface RenderedManifest {
  readonly source: string;
  readonly hook: boolean;
  readonly object: K8sObject;
}

export interface Rendered {
  readonly manifests: readonly RenderedManifest[];
  readonly notes: string;
  /** The coalesced values the templates saw. */
  readonly values: Record<string, unknown>;
}

export interface RenderOptions {
  /** Values files, relative to the chart (e.g. ci/defaults-values.yaml) or absolute. */
  readonly values?: readonly string[];
  readonly set?: readonly string[];
  readonly apiVersions?: readonly string[];
  readonly name?: string;
  readonly namespace?: string;
}

export class HelmRenderer {
  private constructor(
    private readonly dir: string,
    readonly binary: string,
  ) {}

  /** Builds the renderer; fails, naming the packages to install, where Go or sprig is missing. */
  static build(): HelmRenderer {
    const go = spawnSync('go', ['version'], { encoding: 'utf8' });
    if (go.error !== undefined || go.status !== 0) {
      throw new Error(`the chart is rendered with Go and sprig, and "go" is not installed: ${INSTALL}`);
    }
    const dir = mkdtempSync(join(tmpdir(), 'imagepod-helm-render-'));
    const binary = join(dir, 'helm-render');
    const built = spawnSync('go', ['build', '-o', binary, './tools/helm-render'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      env: {
        ...process.env,
        GO111MODULE: 'off',
        GOPATH: '/usr/share/gocode',
        GOFLAGS: '',
        // Go needs a build cache; a CI user without a home gets one that goes with the binary.
        ...(process.env.GOCACHE === undefined && process.env.HOME === undefined && { GOCACHE: join(dir, 'gocache') }),
      },
    });
    if (built.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`go build ./tools/helm-render failed (sprig or yaml.v3 missing? ${INSTALL}):\n${built.stderr}`);
    }
    return new HelmRenderer(dir, binary);
  }

  private args(o: RenderOptions): string[] {
    const args = [CHART_DIR, '--json', '--strict', '--name', o.name ?? 'imagepod', '--namespace', o.namespace ?? 'imagepod'];
    for (const f of o.values ?? []) args.push('-f', f.startsWith('/') ? f : join(CHART_DIR, f));
    for (const s of o.set ?? []) args.push('--set', s);
    for (const v of o.apiVersions ?? []) args.push('--api-versions', v);
    return args;
  }

  render(o: RenderOptions = {}): Rendered {
    const out = execFileSync(this.binary, this.args(o), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const raw = JSON.parse(out) as {
      manifests: { source: string; hook: boolean; content: string }[];
      notes: string;
      values: Record<string, unknown>;
    };
    return {
      manifests: raw.manifests.map((m) => ({
        source: m.source,
        hook: m.hook,
        // Strict YAML 1.2, as the API server's decoder; duplicate keys are errors.
        object: parse(m.content, { uniqueKeys: true, strict: true }) as K8sObject,
      })),
      notes: raw.notes,
      values: raw.values,
    };
  }

  /** Renders what must fail; returns helm's error text. */
  renderError(o: RenderOptions = {}): string {
    const r = spawnSync(this.binary, this.args(o), { encoding: 'utf8' });
    if (r.status === 0) throw new Error(`rendering was expected to fail: ${JSON.stringify(o)}`);
    return r.stderr;
  }

  /** Plain multi-document YAML, as `helm template` prints it. */
  renderYaml(o: RenderOptions = {}): string {
    const args = this.args(o).filter((a) => a !== '--json');
    return execFileSync(this.binary, args, { encoding: 'utf8' });
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
