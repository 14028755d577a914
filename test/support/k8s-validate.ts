/**
 * Checks rendered Kubernetes objects without a cluster: the core kinds against kubernetes-models'
 * schemas (generated from Kubernetes' OpenAPI), unknown fields included, and the CRD kinds the
 * chart uses against hand-written schemas of the fields it sets.
 *
 * kubernetes-models ships its schemas compiled into ajv validators, which ignore fields they do not
 * know. A compiled validator still reads every property its schema declares (`data.spec`,
 * `data.minReadySeconds`, ...) and enumerates the keys of free-form maps (labels, resources), so
 * running it over a proxy that records those reads tells which fields the schema knows: any other
 * key of an object is one Kubernetes would drop or, with `kubectl --validate=strict`, refuse.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { DaemonSet, Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Pod, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';

export type K8sObject = { apiVersion: string; kind: string; metadata: { name: string; [k: string]: unknown }; [k: string]: unknown };

interface ModelClass {
  prototype: { validate(): void };
}

const MODELS: Readonly<Record<string, ModelClass>> = {
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'v1/ConfigMap': ConfigMap,
  'v1/Pod': Pod,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
};

/** What a validator did to one object node of the document. */
interface NodeRecord {
  readonly path: string;
  readonly target: Record<string, unknown>;
  readonly read: Set<string>;
  enumerated: boolean;
}

/** Wraps `value` so reads and key enumerations are recorded per object node. */
function track(value: unknown, path: string, records: NodeRecord[]): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    const items = value.map((v, i) => track(v, `${path}[${i}]`, records));
    return items;
  }
  const target = value as Record<string, unknown>;
  const record: NodeRecord = { path, target, read: new Set(), enumerated: false };
  records.push(record);
  const children = new Map<string, unknown>();
  for (const [k, v] of Object.entries(target)) children.set(k, track(v, path === '' ? k : `${path}.${k}`, records));
  return new Proxy(target, {
    get(t, key, receiver) {
      if (typeof key === 'string') {
        record.read.add(key);
        if (children.has(key)) return children.get(key);
      }
      return Reflect.get(t, key, receiver);
    },
    has(t, key) {
      if (typeof key === 'string') record.read.add(key);
      return Reflect.has(t, key);
    },
    ownKeys(t) {
      record.enumerated = true;
      return Reflect.ownKeys(t);
    },
  });
}

/** Paths of fields the core kind's schema does not declare; an empty list when all are known. */
export function unknownFields(obj: K8sObject): string[] {
  const model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (model === undefined) throw new Error(`no model for ${obj.apiVersion} ${obj.kind}`);
  const records: NodeRecord[] = [];
  const proxied = track(obj, '', records);
  try {
    model.prototype.validate.call(proxied);
  } catch {
    // Type errors are validateCoreObject's to report; here only the reads matter.
  }
  const unknown: string[] = [];
  for (const r of records) {
    if (r.enumerated) continue;
    for (const key of Object.keys(r.target)) {
      if (!r.read.has(key)) unknown.push(r.path === '' ? key : `${r.path}.${key}`);
    }
  }
  return unknown;
}

/** Problems with a core object: schema errors (types, required fields) and unknown fields. */
export function validateCoreObject(obj: K8sObject): string[] {
  const model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (model === undefined) return [`${obj.apiVersion} ${obj.kind} is not a kind this check knows`];
  const problems: string[] = [];
  try {
    model.prototype.validate.call(structuredClone(obj));
  } catch (err) {
    problems.push((err as Error).message);
  }
  for (const path of unknownFields(obj)) problems.push(`unknown field ${path}`);
  return problems;
}

export function isCoreKind(obj: K8sObject): boolean {
  return MODELS[`${obj.apiVersion}/${obj.kind}`] !== undefined;
}

// ── CRDs: the fields the chart sets, nothing else ─────────────────────────────────────────────

const closed = (properties: Record<string, unknown>, required: string[] = []) => ({
  type: 'object',
  additionalProperties: false,
  properties,
  required,
});
const str = { type: 'string', minLength: 1 };
const stringMap = { type: 'object', additionalProperties: { type: 'string' } };
const metadata = closed(
  {
    name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 253 },
    namespace: str,
    labels: stringMap,
    annotations: stringMap,
  },
  ['name'],
);
const secretKeySelector = closed({ name: str, key: str, optional: { type: 'boolean' } }, ['key']);
const labelSelector = closed({ matchLabels: stringMap }, ['matchLabels']);

/** monitoring.coreos.com/v1 ServiceMonitor (prometheus-operator's CRD, the subset used). */
const serviceMonitorSchema = closed(
  {
    apiVersion: { const: 'monitoring.coreos.com/v1' },
    kind: { const: 'ServiceMonitor' },
    metadata,
    spec: closed(
      {
        selector: labelSelector,
        namespaceSelector: closed({ matchNames: { type: 'array', items: str, minItems: 1 } }),
        endpoints: {
          type: 'array',
          minItems: 1,
          items: closed(
            {
              port: str,
              path: { type: 'string', pattern: '^/' },
              scheme: { enum: ['http', 'https'] },
              interval: {
                type: 'string',
                pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$',
              },
              scrapeTimeout: {
                type: 'string',
                pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$',
              },
              authorization: closed({ type: str, credentials: secretKeySelector }),
              tlsConfig: closed({ serverName: str, ca: closed({ secret: secretKeySelector }) }),
            },
            ['port'],
          ),
        },
      },
      ['selector', 'endpoints'],
    ),
  },
  ['apiVersion', 'kind', 'metadata', 'spec'],
);

/** keda.sh/v1alpha1 ScaledObject (KEDA 2.x), the subset used. */
const scaledObjectSchema = closed(
  {
    apiVersion: { const: 'keda.sh/v1alpha1' },
    kind: { const: 'ScaledObject' },
    metadata,
    spec: closed(
      {
        scaleTargetRef: closed({ apiVersion: str, kind: str, name: str }, ['name']),
        pollingInterval: { type: 'integer', minimum: 1 },
        cooldownPeriod: { type: 'integer', minimum: 0 },
        minReplicaCount: { type: 'integer', minimum: 0 },
        maxReplicaCount: { type: 'integer', minimum: 1 },
        triggers: {
          type: 'array',
          minItems: 1,
          items: closed(
            {
              type: { const: 'prometheus' },
              metricType: { enum: ['AverageValue', 'Value', 'Utilization'] },
              // KEDA reads trigger metadata as a map of strings.
              metadata: closed(
                { serverAddress: { type: 'string', pattern: '^https?://' }, query: str, threshold: str, activationThreshold: str },
                ['serverAddress', 'query', 'threshold'],
              ),
            },
            ['type', 'metadata'],
          ),
        },
      },
      ['scaleTargetRef', 'triggers'],
    ),
  },
  ['apiVersion', 'kind', 'metadata', 'spec'],
);

const ajv = new Ajv({ allErrors: true, strict: true });
const CRD_VALIDATORS: Readonly<Record<string, ValidateFunction>> = {
  'monitoring.coreos.com/v1/ServiceMonitor': ajv.compile(serviceMonitorSchema),
  'keda.sh/v1alpha1/ScaledObject': ajv.compile(scaledObjectSchema),
};

/** Problems with an object of a CRD kind the chart renders; unknown fields are errors. */
export function validateCustomObject(obj: K8sObject): string[] {
  const validate = CRD_VALIDATORS[`${obj.apiVersion}/${obj.kind}`];
  if (validate === undefined) return [`${obj.apiVersion} ${obj.kind} is not a kind this check knows`];
  if (validate(obj)) return [];
  return (validate.errors ?? []).map((e) =>
    e.keyword === 'additionalProperties'
      ? `unknown field ${e.instancePath}/${String(e.params.additionalProperty)}`
      : `${e.instancePath} ${e.message}`,
  );
}

/** Every rendered object: core kinds against Kubernetes' schema, CRDs against the ones above. */
export function validateObject(obj: K8sObject): string[] {
  return isCoreKind(obj) ? validateCoreObject(obj) : validateCustomObject(obj);
}
