/**
 * The Helm chart (helm/imagepod), rendered as `helm template` would (tools/helm-render: Go
 * text/template + sprig) for every value set in helm/imagepod/ci/, and checked without a cluster:
 * values against values.schema.json, every object against Kubernetes' schema (unknown fields
 * included) or, for CRDs, a closed schema of the fields used; then what the chart promises: GPU
 * placement of the agents, selectors that select, Redis reachable only by the API and agents,
 * secrets required, and an environment the API and the agent accept as their configuration.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../agent/config.js';
import { loadApiConfig } from '../../src/config/api-config.js';
import { agentAclRules } from '../../src/redis/agent-acl.js';
import { CHART_DIR, HelmRenderer, REPO_ROOT, type Rendered, type RenderOptions } from '../support/helm-render.js';
import { type K8sObject, unknownFields, validateObject } from '../support/k8s-validate.js';
import { issueServerCert, makeTestCa } from '../support/test-ca.js';

const CRD_APIS = ['monitoring.coreos.com/v1', 'keda.sh/v1alpha1'];

/** Every file in helm/imagepod/ci/ (chart-testing's convention), and what it is for. */
const VALUE_SETS: Readonly<Record<string, RenderOptions>> = {
  'defaults-values.yaml': {},
  'external-redis-values.yaml': {},
  'ingress-tls-values.yaml': {},
  'keda-servicemonitor-values.yaml': { apiVersions: CRD_APIS },
  'existing-secret-values.yaml': {},
  'sentinel-values.yaml': {},
  'cluster-values.yaml': {},
  'api-tls-values.yaml': { apiVersions: CRD_APIS },
};
const SECRETS_ONLY = 'ci/defaults-values.yaml';
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's data source placeholder, not a template
const DS_PLACEHOLDER = '${DS_PROMETHEUS}';

/** What an existing Secret would hold, for the sets that name one. */
const EXISTING_SECRET: Readonly<Record<string, string>> = {
  'registration-token': 'existing-registration-token-0123',
  'jwt-secret': 'existing-jwt-secret-0123456789abcdefghijkl',
  'redis-password': 'existing-redis-password',
  'redis-agent-password': 'existing-redis-agent-password',
  'metrics-token': 'existing-metrics-token-0123',
};

let helm: HelmRenderer;
const rendered = new Map<string, Rendered>();

beforeAll(() => {
  helm = HelmRenderer.build();
  for (const [file, opts] of Object.entries(VALUE_SETS)) rendered.set(file, helm.render({ ...opts, values: [`ci/${file}`] }));
});

afterAll(() => helm?.dispose());

function set(file: string): Rendered {
  const r = rendered.get(file);
  if (r === undefined) throw new Error(`no render for ${file}`);
  return r;
}

const objects = (r: Rendered): K8sObject[] => r.manifests.map((m) => m.object);
const ofKind = (r: Rendered, kind: string): any[] => objects(r).filter((o) => o.kind === kind);
function one(r: Rendered, kind: string, component?: string): any {
  const found = ofKind(r, kind).filter(
    (o: any) => component === undefined || o.metadata.labels?.['app.kubernetes.io/component'] === component,
  );
  if (found.length !== 1) throw new Error(`expected one ${kind}${component ? ` (${component})` : ''}, found ${found.length}`);
  return found[0];
}
const WORKLOAD_KINDS = ['Deployment', 'DaemonSet', 'StatefulSet'];
const workloads = (r: Rendered): any[] => objects(r).filter((o) => WORKLOAD_KINDS.includes(o.kind));
/** Pod specs with their labels: the workloads' templates and bare pods (the helm test). */
function podSpecs(r: Rendered): { owner: string; labels: Record<string, string>; spec: any }[] {
  const out = workloads(r).map((w) => ({
    owner: `${w.kind}/${w.metadata.name}`,
    labels: w.spec.template.metadata.labels,
    spec: w.spec.template.spec,
  }));
  for (const p of ofKind(r, 'Pod')) out.push({ owner: `Pod/${p.metadata.name}`, labels: p.metadata.labels, spec: p.spec });
  return out;
}
const matches = (selector: Record<string, string>, labels: Record<string, string> | undefined): boolean =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);
const container = (w: any, name: string): any => {
  const c = w.spec.template.spec.containers.find((x: any) => x.name === name);
  if (c === undefined) throw new Error(`no container ${name} in ${w.metadata.name}`);
  return c;
};
const envOf = (c: any): Map<string, any> => new Map((c.env ?? []).map((e: any) => [e.name, e]));
const envValue = (c: any, name: string): string | undefined => envOf(c).get(name)?.value;

/** IMAGEPOD_ variables a configuration module (and the src/config modules it imports) declares. */
function configVariables(entry: string): Set<string> {
  const names = new Set<string>();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = readFileSync(file, 'utf8');
    // Keys of the zod environment schemas: `IMAGEPOD_X: envString()...`.
    for (const m of text.matchAll(/\b(IMAGEPOD_[A-Z0-9_]+)\s*:/g)) names.add(m[1] as string);
    for (const m of text.matchAll(/from '(\.{1,2}\/[^']+)\.js'/g)) {
      const target = resolve(dirname(file), `${m[1]}.ts`);
      if (target.startsWith(join(REPO_ROOT, 'src/config'))) visit(target);
    }
  };
  visit(join(REPO_ROOT, entry));
  return names;
}
const API_VARIABLES = configVariables('src/config/api-config.ts');
const AGENT_VARIABLES = configVariables('agent/config.ts');
/** Read by the NVIDIA container runtime in the agent's pod, not by the agent. */
const NVIDIA_RUNTIME_VARIABLES = new Set(['NVIDIA_VISIBLE_DEVICES', 'NVIDIA_DRIVER_CAPABILITIES']);

/** A container's environment as the kubelet would give it, secrets resolved. */
function resolveEnv(r: Rendered, c: any): Record<string, string> {
  const secrets = new Map<string, string>();
  for (const s of ofKind(r, 'Secret')) {
    for (const [k, v] of Object.entries<string>(s.data ?? {}))
      secrets.set(`${s.metadata.name}/${k}`, Buffer.from(v, 'base64').toString('utf8'));
  }
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (e.valueFrom?.secretKeyRef) {
      const { name, key } = e.valueFrom.secretKeyRef;
      const value = secrets.get(`${name}/${key}`) ?? (ofKind(r, 'Secret').length === 0 ? EXISTING_SECRET[key] : undefined);
      if (value === undefined) throw new Error(`${e.name}: secret ${name} has no key ${key}`);
      env[e.name] = value;
    } else if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') env[e.name] = 'gpu-node-1';
    else throw new Error(`${e.name}: a source this test cannot resolve`);
  }
  return env;
}

describe('tools/helm-render', () => {
  it('prints helm template style YAML: one document per object, with its source', () => {
    const yaml = helm.renderYaml({ values: [SECRETS_ONLY] });
    const sources = yaml.split('\n').filter((l) => l.startsWith('# Source: imagepod/templates/'));
    expect(sources.length).toBe(set('defaults-values.yaml').manifests.length);
    expect(yaml.startsWith('---\n# Source: ')).toBe(true);
  });

  it('renders every values file in helm/imagepod/ci/', () => {
    const files = readdirSync(join(CHART_DIR, 'ci')).filter((f) => f.endsWith('.yaml'));
    expect(files.sort()).toEqual(Object.keys(VALUE_SETS).sort());
  });
});

describe('values.schema.json', () => {
  const schema = JSON.parse(readFileSync(join(CHART_DIR, 'values.schema.json'), 'utf8'));
  const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
  const validate = ajv.compile(schema);
  const check = (values: unknown) => (validate(values) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`));

  it('is draft-07, as helm reads it', () => {
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
  });

  it.each(Object.keys(VALUE_SETS))('accepts the values of %s', (file) => {
    expect(check(set(file).values)).toEqual([]);
  });

  it('refuses misspelt keys, unknown modes, short secrets and non-string config', () => {
    const base = set('defaults-values.yaml').values;
    const bad = (patch: (v: any) => void) => {
      const v = structuredClone(base) as any;
      patch(v);
      return check(v);
    };
    expect(bad((v) => (v.api.replicas = 3))).toContainEqual(expect.stringContaining('must NOT have additional properties'));
    expect(bad((v) => (v.redis.mode = 'embedded'))).toContainEqual(expect.stringContaining('/redis/mode'));
    expect(bad((v) => (v.secrets.registrationToken = 'short'))).toContainEqual(expect.stringContaining('/secrets/registrationToken'));
    expect(bad((v) => (v.api.config = { IMAGEPOD_PORT: 8000 }))).toContainEqual(expect.stringContaining('/api/config/IMAGEPOD_PORT'));
    expect(bad((v) => (v.agent.config = { DOCKER_HOST: 'x' }))).not.toEqual([]);
    expect(bad((v) => (v.redis.external.url = 'http://redis:6379'))).toContainEqual(expect.stringContaining('/redis/external/url'));
  });
});

describe.each(Object.keys(VALUE_SETS))('%s', (file) => {
  it('renders objects Kubernetes accepts: known kinds, schema-valid, no unknown fields', () => {
    const problems = objects(set(file)).flatMap((o) => validateObject(o).map((p) => `${o.kind}/${o.metadata.name}: ${p}`));
    expect(problems).toEqual([]);
  });

  it('labels every object the standard way and puts it in the release namespace', () => {
    for (const o of objects(set(file)) as any[]) {
      const labels = o.metadata.labels ?? {};
      expect(labels, `${o.kind}/${o.metadata.name}`).toMatchObject({
        'app.kubernetes.io/name': 'imagepod',
        'app.kubernetes.io/instance': 'imagepod',
        'app.kubernetes.io/managed-by': 'Helm',
        'helm.sh/chart': 'imagepod-0.1.0',
      });
      if (o.kind !== 'ConfigMap') expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe('imagepod');
    }
    const names = objects(set(file)).map((o) => `${o.kind}/${o.metadata.name}`);
    expect(new Set(names).size).toBe(names.length);
  });

  it('has selectors that select: workloads, Services, PDB, NetworkPolicies, HPA, Ingress, ServiceMonitors', () => {
    const r = set(file);
    const pods = podSpecs(r);
    for (const w of workloads(r)) {
      expect(
        matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels),
        `${w.kind}/${w.metadata.name} selects its own pods`,
      ).toBe(true);
    }
    // Two workloads must never select each other's pods.
    for (const w of workloads(r)) {
      const selected = workloads(r).filter((x) => matches(w.spec.selector.matchLabels, x.spec.template.metadata.labels));
      expect(selected.map((x) => x.metadata.name)).toEqual([w.metadata.name]);
    }
    for (const s of ofKind(r, 'Service')) {
      const target = workloads(r).find((w) => matches(s.spec.selector, w.spec.template.metadata.labels));
      expect(target, `Service/${s.metadata.name} selects a workload`).toBeDefined();
      const ports = target.spec.template.spec.containers.flatMap((c: any) => (c.ports ?? []).map((p: any) => p.name));
      for (const p of s.spec.ports) expect(ports, `Service/${s.metadata.name} targetPort`).toContain(p.targetPort);
    }
    for (const p of [...ofKind(r, 'PodDisruptionBudget'), ...ofKind(r, 'NetworkPolicy')]) {
      expect(
        pods.some((x) => matches(p.spec.selector?.matchLabels ?? p.spec.podSelector.matchLabels, x.labels)),
        `${p.kind}/${p.metadata.name}`,
      ).toBe(true);
    }
    for (const h of ofKind(r, 'HorizontalPodAutoscaler')) {
      expect(ofKind(r, h.spec.scaleTargetRef.kind).map((w) => w.metadata.name)).toContain(h.spec.scaleTargetRef.name);
    }
    for (const ing of ofKind(r, 'Ingress')) {
      for (const rule of ing.spec.rules) {
        for (const p of rule.http.paths) {
          const svc = ofKind(r, 'Service').find((s) => s.metadata.name === p.backend.service.name);
          expect(svc?.spec.ports.map((x: any) => x.name)).toContain(p.backend.service.port.name);
        }
      }
    }
    for (const sm of ofKind(r, 'ServiceMonitor')) {
      const svc = ofKind(r, 'Service').find((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
      expect(svc, `ServiceMonitor/${sm.metadata.name}`).toBeDefined();
      for (const e of sm.spec.endpoints) expect(svc.spec.ports.map((x: any) => x.name)).toContain(e.port);
    }
  });

  it('hardens every container: no privilege escalation, read-only root, no capabilities, seccomp, resources', () => {
    for (const { owner, spec } of podSpecs(set(file))) {
      expect(spec.automountServiceAccountToken, owner).toBe(false);
      for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
        const sc = c.securityContext ?? {};
        expect(sc.allowPrivilegeEscalation, `${owner} ${c.name}`).toBe(false);
        expect(sc.readOnlyRootFilesystem, `${owner} ${c.name}`).toBe(true);
        expect(sc.capabilities?.drop, `${owner} ${c.name}`).toContain('ALL');
        expect(sc.privileged ?? false).toBe(false);
        expect((sc.seccompProfile ?? spec.securityContext?.seccompProfile)?.type, `${owner} ${c.name}`).toBe('RuntimeDefault');
        expect(c.resources?.requests?.memory, `${owner} ${c.name}`).toBeDefined();
        expect(c.resources?.limits?.memory, `${owner} ${c.name}`).toBeDefined();
        // Only the agent runs as root (for the Docker socket, see values.yaml).
        if (!owner.startsWith('DaemonSet/')) expect(sc.runAsNonRoot ?? spec.securityContext?.runAsNonRoot, `${owner} ${c.name}`).toBe(true);
      }
    }
  });

  it('sets only variables the API and the agent read', () => {
    const r = set(file);
    const api = container(one(r, 'Deployment', 'api'), 'api');
    expect([...envOf(api).keys()].filter((n) => !API_VARIABLES.has(n))).toEqual([]);
    for (const ds of ofKind(r, 'DaemonSet')) {
      const agent = container(ds, 'agent');
      expect([...envOf(agent).keys()].filter((n) => !AGENT_VARIABLES.has(n) && !NVIDIA_RUNTIME_VARIABLES.has(n))).toEqual([]);
    }
  });

  it('sets each variable once', () => {
    for (const { owner, spec } of podSpecs(set(file))) {
      for (const c of spec.containers) {
        const names = (c.env ?? []).map((e: any) => e.name);
        expect(
          names.filter((n: string, i: number) => names.indexOf(n) !== i),
          `${owner} ${c.name}`,
        ).toEqual([]);
      }
    }
  });

  it('mounts every file a variable names', () => {
    const r = set(file);
    for (const w of workloads(r)) {
      for (const c of w.spec.template.spec.containers) {
        for (const e of c.env ?? []) {
          if (!e.name.endsWith('_FILE') || e.value === undefined) continue;
          const mount = (c.volumeMounts ?? []).find((m: any) => e.value.startsWith(`${m.mountPath}/`));
          expect(mount, `${w.metadata.name} ${e.name}=${e.value}`).toBeDefined();
          const volume = w.spec.template.spec.volumes.find((v: any) => v.name === mount.name);
          const key = e.value.slice(mount.mountPath.length + 1);
          const items = volume.secret?.items as { key: string; path: string }[] | undefined;
          if (items !== undefined) expect(items.map((i) => i.path)).toContain(key);
        }
      }
    }
  });
});

describe('the API and the agent accept the environment the chart gives them', () => {
  // Files the variables name (mounted from Secrets in a cluster) are stood in for by real ones.
  let files: { ca: string; cert: string; key: string; other: string };
  beforeAll(() => {
    const ca = makeTestCa();
    const cert = issueServerCert(ca, { hosts: ['imagepod-api.imagepod.svc'] });
    const other = join(ca.dir, 'registry-config.json');
    writeFileSync(other, '{"auths":{}}');
    files = { ca: ca.certFile, cert: cert.certFile, key: cert.keyFile, other };
  });
  const withFiles = (env: Record<string, string>): Record<string, string> =>
    Object.fromEntries(
      Object.entries(env).map(([k, v]) => {
        if (!k.endsWith('_FILE')) return [k, v];
        if (k.endsWith('_CA_FILE')) return [k, files.ca];
        if (k.endsWith('_CERT_FILE')) return [k, files.cert];
        if (k.endsWith('_KEY_FILE')) return [k, files.key];
        return [k, files.other];
      }),
    );

  it.each(Object.keys(VALUE_SETS))('%s', (file) => {
    const r = set(file);
    const api = loadApiConfig(withFiles(resolveEnv(r, container(one(r, 'Deployment', 'api'), 'api'))));
    expect(api.port).toBe(8000);
    for (const ds of ofKind(r, 'DaemonSet')) {
      const agent = loadAgentConfig(withFiles(resolveEnv(r, container(ds, 'agent'))));
      expect(agent.node.name).toBe('gpu-node-1');
      expect(agent.registrationToken).toBe(api.registrationToken);
      expect(agent.executor).toBe('docker');
      expect(agent.metrics?.port).toBe(9464);
      expect(agent.stateDir).toBe('/var/lib/imagepod-agent');
    }
  });
});

describe('the agent DaemonSet', () => {
  it('runs on GPU nodes only, with the Docker socket, its state on the host, and a grace period for running jobs', () => {
    const r = set('defaults-values.yaml');
    const ds = one(r, 'DaemonSet');
    const pod = ds.spec.template.spec;
    expect(pod.nodeSelector).toEqual({ 'nvidia.com/gpu.present': 'true' });
    expect(pod.tolerations).toContainEqual({ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' });
    expect(ds.metadata.labels.app).toBe('imagepod-gpu-worker');
    expect(ds.spec.template.metadata.labels.app).toBe('imagepod-gpu-worker');

    const agent = container(ds, 'agent');
    const mountOf = (path: string) => agent.volumeMounts.find((m: any) => m.mountPath === path);
    const volumeOf = (name: string) => pod.volumes.find((v: any) => v.name === name);
    expect(volumeOf(mountOf('/var/run/docker.sock').name).hostPath).toEqual({ path: '/var/run/docker.sock', type: 'Socket' });
    expect(envValue(agent, 'IMAGEPOD_DOCKER_HOST')).toBe('unix:///var/run/docker.sock');
    const stateDir = envValue(agent, 'IMAGEPOD_AGENT_STATE_DIR') as string;
    expect(volumeOf(mountOf(stateDir).name).hostPath.type).toBe('DirectoryOrCreate');

    const shutdownMs = Number(envValue(agent, 'IMAGEPOD_SHUTDOWN_GRACE_MS'));
    const stopMs = Number(envValue(agent, 'IMAGEPOD_STOP_GRACE_SECONDS')) * 1000;
    expect(shutdownMs).toBe(300_000);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(shutdownMs + stopMs);

    expect(envOf(agent).get('IMAGEPOD_NODE_NAME').valueFrom).toEqual({ fieldRef: { fieldPath: 'spec.nodeName' } });
    const api = one(r, 'Service', 'api');
    expect(envValue(agent, 'IMAGEPOD_API_URL')).toBe(`http://${api.metadata.name}.imagepod.svc:${api.spec.ports[0].port}`);
    expect(envValue(agent, 'IMAGEPOD_ALLOW_INSECURE_API')).toBe('true');
    expect(agent.ports).toContainEqual({ name: 'metrics', containerPort: 9464, protocol: 'TCP' });
    expect(pod.runtimeClassName).toBeUndefined();
  });

  it('follows agent.shutdownGraceSeconds, runtimeClassName, labels and prices, and trusts the API by its CA over https', () => {
    const r = helm.render({ values: ['ci/api-tls-values.yaml'], set: ['agent.shutdownGraceSeconds=1800'], apiVersions: CRD_APIS });
    const ds = one(r, 'DaemonSet');
    const agent = container(ds, 'agent');
    expect(envValue(agent, 'IMAGEPOD_SHUTDOWN_GRACE_MS')).toBe('1800000');
    expect(ds.spec.template.spec.terminationGracePeriodSeconds).toBe(1800 + 10 + 30);
    expect(ds.spec.template.spec.runtimeClassName).toBe('nvidia');
    expect(envValue(agent, 'IMAGEPOD_NODE_LABELS')).toBe('team=ml,zone=eu-1');
    expect(envValue(agent, 'IMAGEPOD_PRICE_PER_GPU_HOUR')).toBe('2.5');
    expect(envValue(agent, 'IMAGEPOD_DOCKER_NETWORK')).toBe('imagepod-jobs');
    expect(envValue(agent, 'IMAGEPOD_API_URL')).toBe('https://imagepod-api.imagepod.svc:8000');
    expect(envOf(agent).has('IMAGEPOD_ALLOW_INSECURE_API')).toBe(false);
    expect(envValue(agent, 'IMAGEPOD_API_CA_FILE')).toBe('/etc/imagepod/api-ca/ca.crt');
    expect(ds.spec.template.spec.volumes).toContainEqual({
      name: 'api-ca',
      secret: { secretName: 'imagepod-api-tls', items: [{ key: 'ca.crt', path: 'ca.crt' }] },
    });
    const api = container(one(r, 'Deployment', 'api'), 'api');
    expect(api.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http', scheme: 'HTTPS' });
    expect(envValue(api, 'IMAGEPOD_TLS_CERT_FILE')).toBe('/etc/imagepod/tls/tls.crt');
    expect(envOf(api).has('IMAGEPOD_JWT_SECRET')).toBe(false);
    expect(envValue(api, 'IMAGEPOD_JWT_PUBLIC_KEY')).toContain('BEGIN PUBLIC KEY');
  });

  it('refuses agent.config and api.config entries for variables the chart sets itself', () => {
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['agent.config.IMAGEPOD_SHUTDOWN_GRACE_MS=1000'] })).toContain(
      'agent.config.IMAGEPOD_SHUTDOWN_GRACE_MS is set by the chart',
    );
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['api.config.IMAGEPOD_REDIS_URL=redis://elsewhere:6379'] })).toContain(
      'api.config.IMAGEPOD_REDIS_URL is set by the chart',
    );
    const r = helm.render({ values: [SECRETS_ONLY], set: ['api.config.IMAGEPOD_TIER_BOUNDS_MIB=8192\\,81920'] });
    expect(envValue(container(one(r, 'Deployment', 'api'), 'api'), 'IMAGEPOD_TIER_BOUNDS_MIB')).toBe('8192,81920');
  });

  it('can be left out, for agents outside Kubernetes', () => {
    const r = set('cluster-values.yaml');
    expect(ofKind(r, 'DaemonSet')).toEqual([]);
    expect(objects(r).filter((o: any) => o.metadata.labels?.app === 'imagepod-gpu-worker')).toEqual([]);
  });
});

describe('the API Deployment', () => {
  it('has probes on /healthz and /readyz, two replicas, and a PDB that lets a node drain', () => {
    const r = set('defaults-values.yaml');
    const dep = one(r, 'Deployment', 'api');
    const api = container(dep, 'api');
    expect(dep.spec.replicas).toBe(2);
    expect(api.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(api.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'http' });
    expect(api.startupProbe.httpGet).toMatchObject({ path: '/healthz', port: 'http' });
    expect(one(r, 'PodDisruptionBudget').spec).toMatchObject({ maxUnavailable: 1 });
    expect(ofKind(r, 'HorizontalPodAutoscaler')).toEqual([]);
    expect(ofKind(r, 'Ingress')).toEqual([]);
  });

  it('stops gracefully: a delay while the Service lets go, a timeout for open requests, both within the grace period', () => {
    const env = (dep: any) => Object.fromEntries(container(dep, 'api').env.map((e: any) => [e.name, e.value]));
    const dep = one(set('defaults-values.yaml'), 'Deployment', 'api');
    expect(env(dep)).toMatchObject({ IMAGEPOD_API_SHUTDOWN_DELAY_MS: '5000', IMAGEPOD_API_SHUTDOWN_TIMEOUT_MS: '15000' });
    expect(dep.spec.template.spec.terminationGracePeriodSeconds).toBe(30);
    const longer = helm.render({ values: [SECRETS_ONLY], set: ['api.shutdown.timeoutSeconds=60', 'api.terminationGracePeriodSeconds=70'] });
    expect(env(one(longer, 'Deployment', 'api')).IMAGEPOD_API_SHUTDOWN_TIMEOUT_MS).toBe('60000');
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['api.shutdown.timeoutSeconds=60'] })).toContain(
      'api.terminationGracePeriodSeconds must be at least api.shutdown.delaySeconds + api.shutdown.timeoutSeconds',
    );
  });

  it('restarts its pods when the chart Secret changes', () => {
    const a = one(set('defaults-values.yaml'), 'Deployment', 'api');
    const b = one(
      helm.render({ values: [SECRETS_ONLY], set: ['secrets.registrationToken=another-registration-token'] }),
      'Deployment',
      'api',
    );
    expect(a.spec.template.metadata.annotations['checksum/secret']).toMatch(/^[0-9a-f]{64}$/);
    expect(b.spec.template.metadata.annotations['checksum/secret']).not.toBe(a.spec.template.metadata.annotations['checksum/secret']);
  });

  it('is autoscaled on CPU (replicas left to the HPA) and served by an Ingress with TLS', () => {
    const r = set('ingress-tls-values.yaml');
    const dep = one(r, 'Deployment', 'api');
    expect(dep.spec.replicas).toBeUndefined();
    const hpa = one(r, 'HorizontalPodAutoscaler');
    expect(hpa.spec).toMatchObject({ minReplicas: 3, maxReplicas: 12, scaleTargetRef: { kind: 'Deployment', name: dep.metadata.name } });
    expect(hpa.spec.metrics.map((m: any) => m.resource.name)).toEqual(['cpu', 'memory']);
    const ing = one(r, 'Ingress');
    expect(ing.spec.ingressClassName).toBe('nginx');
    expect(ing.spec.tls).toEqual([{ secretName: 'imagepod-tls', hosts: ['imagepod.example.com'] }]);
    const tlsHosts = ing.spec.tls.flatMap((t: any) => t.hosts);
    for (const rule of ing.spec.rules) expect(tlsHosts).toContain(rule.host);
    expect(ing.metadata.annotations['cert-manager.io/cluster-issuer']).toBe('letsencrypt');
    // Behind the Ingress the API believes the nearest hop's X-Forwarded-Proto.
    expect(envValue(container(dep, 'api'), 'IMAGEPOD_TRUST_PROXY')).toBe('1');
    expect(envValue(container(one(r, 'DaemonSet'), 'agent'), 'IMAGEPOD_API_URL')).toBe('https://imagepod.example.com');
  });
});

describe('Redis', () => {
  it('runs as a StatefulSet with AOF, noeviction, a volume and probes, reachable only by the API and agents', () => {
    const r = set('defaults-values.yaml');
    const sts = one(r, 'StatefulSet');
    const redis = container(sts, 'redis');
    const args = redis.args.join(' ');
    expect(args).toContain('--appendonly yes');
    expect(args).toContain('--maxmemory-policy noeviction');
    expect(redis.volumeMounts).toContainEqual({ name: 'data', mountPath: '/data' });
    expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('8Gi');
    for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe'])
      expect(redis[probe].exec.command.join(' ')).toContain('redis-cli');
    const headless = ofKind(r, 'Service').find((s) => s.spec.clusterIP === 'None' && s.metadata.name === sts.spec.serviceName);
    expect(headless).toBeDefined();

    const np = ofKind(r, 'NetworkPolicy').find((p) => matches(p.spec.podSelector.matchLabels, sts.spec.template.metadata.labels));
    expect(np.spec.policyTypes).toEqual(['Ingress']);
    expect(np.spec.ingress).toHaveLength(1);
    const allowed = podSpecs(r).filter((p) => np.spec.ingress[0].from.some((f: any) => matches(f.podSelector.matchLabels, p.labels)));
    expect(allowed.map((p) => p.owner).sort()).toEqual(['DaemonSet/imagepod-gpu-worker', 'Deployment/imagepod-api']);
    expect(np.spec.ingress[0].ports).toEqual([{ port: 'redis', protocol: 'TCP' }]);
    expect(redis.ports).toContainEqual({ name: 'redis', containerPort: 6379, protocol: 'TCP' });

    const client = ofKind(r, 'Service').find((s) => s.metadata.name === 'imagepod-redis');
    expect(client.spec.clusterIP).toBeUndefined();
    const url = `redis://${client.metadata.name}.imagepod.svc:6379`;
    expect(envValue(container(one(r, 'Deployment', 'api'), 'api'), 'IMAGEPOD_REDIS_URL')).toBe(url);
    expect(envValue(container(one(r, 'DaemonSet'), 'agent'), 'IMAGEPOD_REDIS_URL')).toBe(url);
  });

  it('requires its password with redis.auth, from the existing Secret', () => {
    const r = set('existing-secret-values.yaml');
    const redis = container(one(r, 'StatefulSet'), 'redis');
    expect(redis.args.slice(-2)).toEqual(['--requirepass', '$(REDIS_PASSWORD)']);
    expect(envOf(redis).get('REDIS_PASSWORD').valueFrom.secretKeyRef).toEqual({ name: 'imagepod-secrets', key: 'redis-password' });
    expect(envOf(container(one(r, 'Deployment', 'api'), 'api')).get('IMAGEPOD_REDIS_PASSWORD').valueFrom.secretKeyRef).toEqual({
      name: 'imagepod-secrets',
      key: 'redis-password',
    });
  });

  it("with redis.auth.agentUser, agents sign in as their own ACL user, which the chart's Redis creates", () => {
    const r = set('existing-secret-values.yaml');
    const redis = container(one(r, 'StatefulSet'), 'redis');
    const user = redis.args.indexOf('--user');
    const rule = ['imagepod-agent', ...agentAclRules('imagepod', { password: '$(REDIS_AGENT_PASSWORD)' })];
    expect(redis.args.slice(user + 1, user + 1 + rule.length)).toEqual(rule);
    expect(envOf(redis).get('REDIS_AGENT_PASSWORD').valueFrom.secretKeyRef).toEqual({
      name: 'imagepod-secrets',
      key: 'redis-agent-password',
    });
    const agent = resolveEnv(r, container(one(r, 'DaemonSet'), 'agent'));
    expect(agent).toMatchObject({ IMAGEPOD_REDIS_USERNAME: 'imagepod-agent', IMAGEPOD_REDIS_PASSWORD: 'existing-redis-agent-password' });
    const api = resolveEnv(r, container(one(r, 'Deployment', 'api'), 'api'));
    expect(api.IMAGEPOD_REDIS_USERNAME).toBeUndefined();
    expect(api.IMAGEPOD_REDIS_PASSWORD).toBe('existing-redis-password');
    // The key patterns follow the API's prefix; without auth on the default user it is refused.
    const prefixed = helm.render({ values: ['ci/existing-secret-values.yaml'], set: ['api.config.IMAGEPOD_KEY_PREFIX=prod'] });
    const args = container(one(prefixed, 'StatefulSet'), 'redis').args;
    expect(args).toContain('~prod:{cpu}:cpu:*');
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['redis.auth.agentUser.enabled=true'] })).toContain(
      'redis.auth.agentUser needs redis.auth.enabled',
    );
    expect(
      helm.renderError({
        values: [SECRETS_ONLY],
        set: ['redis.auth.enabled=true', 'redis.auth.password=p', 'redis.auth.agentUser.enabled=true'],
      }),
    ).toContain('redis.auth.agentUser.password is required');
  });

  it.each([
    ['external-redis-values.yaml', { IMAGEPOD_REDIS_URL: 'rediss://redis.example.internal:6380', IMAGEPOD_REDIS_USERNAME: 'imagepod' }],
    [
      'sentinel-values.yaml',
      {
        IMAGEPOD_REDIS_SENTINELS: 'sentinel-0.redis.svc:26379,sentinel-1.redis.svc:26379,sentinel-2.redis.svc:26379',
        IMAGEPOD_REDIS_SENTINEL_MASTER: 'imagepod',
        IMAGEPOD_REDIS_TLS: 'true',
      },
    ],
    [
      'cluster-values.yaml',
      {
        IMAGEPOD_REDIS_CLUSTER_NODES: 'redis-cluster-0.redis.svc:6379,redis-cluster-1.redis.svc:6379,redis-cluster-2.redis.svc:6379',
        IMAGEPOD_REDIS_TLS: 'true',
        IMAGEPOD_REDIS_TLS_CERT_FILE: '/etc/imagepod/redis-tls-client/tls.crt',
        IMAGEPOD_REDIS_TLS_SERVERNAME: 'redis-cluster.redis.svc',
      },
    ],
  ])('%s: no Redis of its own, no Redis NetworkPolicy, the API told where Redis is', (file, expected) => {
    const r = set(file);
    expect(ofKind(r, 'StatefulSet')).toEqual([]);
    expect(objects(r).filter((o: any) => o.metadata.labels['app.kubernetes.io/component'] === 'redis')).toEqual([]);
    expect(ofKind(r, 'NetworkPolicy').map((p) => p.metadata.name)).not.toContain('imagepod-redis');
    const api = container(one(r, 'Deployment', 'api'), 'api');
    for (const [name, value] of Object.entries(expected)) expect(envValue(api, name), name).toBe(value);
    expect(envValue(api, 'IMAGEPOD_REDIS_TLS_CA_FILE')).toBe('/etc/imagepod/redis-tls-ca/ca.crt');
    expect(envOf(api).get('IMAGEPOD_REDIS_PASSWORD')?.valueFrom.secretKeyRef.key ?? 'none').toBe(
      file === 'cluster-values.yaml' ? 'none' : 'redis-password',
    );
  });

  it('refuses what cannot work: TLS on the chart Redis, or a redis:// URL with TLS', () => {
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['redis.tls.enabled=true'] })).toContain('redis.tls is for redis.mode external');
    expect(
      helm.renderError({
        values: [SECRETS_ONLY],
        set: ['redis.mode=external', 'redis.external.url=redis://r:6379', 'redis.tls.enabled=true'],
      }),
    ).toContain('needs a rediss:// URL');
  });
});

describe('secrets', () => {
  it('are required, with a message saying what to set', () => {
    expect(helm.renderError()).toContain(
      'secrets.registrationToken is required (16+ characters): set it, or set secrets.existingSecret to a Secret holding registration-token and jwt-secret',
    );
    expect(helm.renderError({ set: ['secrets.registrationToken=0123456789abcdefgh'] })).toContain('secrets.jwtSecret is required');
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['metrics.token.enabled=true'] })).toContain('metrics.token.value is required');
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['redis.mode=external'] })).toContain('redis.external.url is required');
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['redis.mode=sentinel'] })).toContain('redis.sentinel.hosts is required');
  });

  it('go into imagepod-secrets with the keys the seed names', () => {
    const secret = one(set('defaults-values.yaml'), 'Secret');
    expect(secret.metadata.name).toBe('imagepod-secrets');
    expect(Buffer.from(secret.data['registration-token'], 'base64').toString()).toBe('ci-registration-token-0123456789');
    expect(Object.keys(secret.data).sort()).toEqual(['jwt-secret', 'registration-token']);
  });

  it('come from an existing Secret, which the chart then leaves alone', () => {
    const r = set('existing-secret-values.yaml');
    expect(ofKind(r, 'Secret')).toEqual([]);
    const refs = podSpecs(r).flatMap((p) =>
      p.spec.containers.flatMap((c: any) => (c.env ?? []).map((e: any) => e.valueFrom?.secretKeyRef).filter(Boolean)),
    );
    expect(refs.length).toBeGreaterThan(0);
    expect(new Set(refs.map((x: any) => x.name))).toEqual(new Set(['imagepod-secrets']));
    expect(one(r, 'Deployment', 'api').spec.template.metadata.annotations).toBeUndefined();
  });

  it('are named after the release, so two releases do not share one', () => {
    const r = helm.render({ values: [SECRETS_ONLY], name: 'prod' });
    expect(one(r, 'Secret').metadata.name).toBe('prod-imagepod-secrets');
    expect(one(r, 'Deployment', 'api').metadata.name).toBe('prod-imagepod-api');
  });
});

describe('monitoring and autoscaling', () => {
  it('scrapes the API (with its token) and the agents with ServiceMonitors', () => {
    const r = set('keda-servicemonitor-values.yaml');
    const api = one(r, 'ServiceMonitor', 'api');
    expect(api.metadata.labels.release).toBe('kube-prometheus-stack');
    expect(api.spec.endpoints[0]).toMatchObject({
      port: 'http',
      path: '/metrics',
      authorization: { type: 'Bearer', credentials: { name: 'imagepod-secrets', key: 'metrics-token' } },
    });
    expect(envOf(container(one(r, 'Deployment', 'api'), 'api')).get('IMAGEPOD_METRICS_TOKEN').valueFrom.secretKeyRef.key).toBe(
      'metrics-token',
    );
    const agents = one(r, 'ServiceMonitor', 'gpu-worker');
    expect(agents.spec.endpoints[0]).toMatchObject({ port: 'metrics', path: '/metrics' });
    expect(one(r, 'Service', 'gpu-worker').spec.clusterIP).toBe('None');
  });

  it('scales the named workload on the pending GPU memory the API reports', () => {
    const r = set('keda-servicemonitor-values.yaml');
    const so = one(r, 'ScaledObject');
    expect(so.spec.scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: 'gpu-capacity-placeholder' });
    const trigger = so.spec.triggers[0];
    expect(trigger.type).toBe('prometheus');
    const exposed = new Set(
      [...readFileSync(join(REPO_ROOT, 'src/metrics/api-metrics.ts'), 'utf8').matchAll(/name: '(imagepod_[a-z_]+)'/g)].map((m) => m[1]),
    );
    const queried = [...trigger.metadata.query.matchAll(/\b(imagepod_[a-z_]+)/g)].map((m: RegExpMatchArray) => m[1]);
    expect(queried).toEqual(['imagepod_queue_pending_gpu_memory_bytes']);
    for (const q of queried) expect(exposed).toContain(q);
  });

  it('needs the CRDs and a target', () => {
    const crds = { values: ['ci/keda-servicemonitor-values.yaml'] };
    expect(helm.renderError({ ...crds, set: ['keda.enabled=false'] })).toContain(
      "metrics.serviceMonitor.enabled needs the Prometheus Operator's CRDs (monitoring.coreos.com/v1)",
    );
    expect(helm.renderError({ ...crds, apiVersions: ['monitoring.coreos.com/v1'] })).toContain(
      "keda.enabled needs KEDA's CRDs (keda.sh/v1alpha1)",
    );
    expect(helm.renderError({ values: [SECRETS_ONLY], set: ['keda.enabled=true'], apiVersions: CRD_APIS })).toContain(
      'keda.scaleTargetRef.name is required',
    );
  });

  it('ships the Grafana dashboard for the sidecar, with the data source filled in', () => {
    const cm = one(set('keda-servicemonitor-values.yaml'), 'ConfigMap');
    expect(cm.metadata.labels.grafana_dashboard).toBe('1');
    expect(cm.metadata.namespace).toBe('monitoring');
    const text = cm.data['imagepod.json'];
    expect(text).not.toContain(DS_PLACEHOLDER);
    const original = readFileSync(join(CHART_DIR, 'dashboards/imagepod.json'), 'utf8');
    expect(JSON.parse(text)).toEqual(JSON.parse(original.replaceAll(DS_PLACEHOLDER, 'prometheus')));
    expect(ofKind(set('defaults-values.yaml'), 'ConfigMap')).toEqual([]);
  });
});

describe('helm test and NOTES.txt', () => {
  it('has a test pod that asks the API Service for /readyz', () => {
    const r = set('defaults-values.yaml');
    const test = r.manifests.find((m) => m.hook);
    expect(test?.object.kind).toBe('Pod');
    const pod = test?.object as any;
    expect(pod.metadata.annotations['helm.sh/hook']).toBe('test');
    expect(pod.spec.restartPolicy).toBe('Never');
    const svc = one(r, 'Service', 'api');
    expect(pod.spec.containers[0].command.at(-1)).toBe(`http://${svc.metadata.name}.imagepod.svc:${svc.spec.ports[0].port}/readyz`);
    expect(pod.spec.containers[0].image).toBe(container(one(r, 'Deployment', 'api'), 'api').image);
  });

  it("tells how to reach the API, get a token, and verify the agents with the seed's commands", () => {
    const notes = set('defaults-values.yaml').notes;
    expect(notes).toContain('kubectl -n imagepod port-forward svc/imagepod-api 8000:8000');
    expect(notes).toContain('--sub admin --role admin');
    expect(notes).toContain('kubectl get pods -n imagepod -l app=imagepod-gpu-worker');
    expect(notes).toContain('kubectl get services -n imagepod -l app=imagepod-gpu-worker');
    expect(notes).toContain('kubectl logs -n imagepod -l app=imagepod-gpu-worker');
    expect(notes).toContain('helm test imagepod -n imagepod');
    expect(set('ingress-tls-values.yaml').notes).toContain('https://imagepod.example.com/');
  });
});

describe('the unknown-field check itself', () => {
  it('finds misspelt fields at any depth', () => {
    const dep = structuredClone(one(set('defaults-values.yaml'), 'Deployment', 'api'));
    dep.spec.template.spec.containers[0].resourcez = {};
    dep.spec.template.spec.containers[0].securityContext.capabilities.dropp = [];
    dep.spec.template.spec.volumes[0].emptyDir.sizeLimitt = '1Gi';
    dep.metadata.labelz = {};
    expect(unknownFields(dep).sort()).toEqual([
      'metadata.labelz',
      'spec.template.spec.containers[0].resourcez',
      'spec.template.spec.containers[0].securityContext.capabilities.dropp',
      'spec.template.spec.volumes[0].emptyDir.sizeLimitt',
    ]);
    expect(validateObject(dep)).toHaveLength(4);
  });

  it('finds wrong types and unknown CRD fields', () => {
    const ds = structuredClone(one(set('defaults-values.yaml'), 'DaemonSet'));
    ds.spec.template.spec.terminationGracePeriodSeconds = '340';
    expect(validateObject(ds).join()).toContain('terminationGracePeriodSeconds must be integer');
    const sm = structuredClone(one(set('keda-servicemonitor-values.yaml'), 'ServiceMonitor', 'api'));
    sm.spec.endpoints[0].bearerTokenFile = '/x';
    expect(validateObject(sm)).toEqual(['unknown field /spec/endpoints/0/bearerTokenFile']);
  });
});
