import { isDeepStrictEqual } from 'node:util';
import { z } from 'zod';
import type { Caller } from '../auth.js';
import { REQUEST_COMPONENTS, RESPONSE_COMPONENTS } from './components.js';
import { type OperationSpec, PATH_PARAMS, TAG_DESCRIPTIONS, Tag } from './operations.js';

/** A JSON Schema (draft 2020-12), as zod writes it. */
export type JsonSchema = { [key: string]: unknown };

export interface ParameterObject {
  name: string;
  in: 'path' | 'query' | 'header';
  required: boolean;
  description?: string;
  schema: JsonSchema;
  example?: string;
}

export interface MediaTypeObject {
  schema: JsonSchema;
  /** Server-sent events: the schema of each event's JSON `data`, by event name. */
  'x-events'?: Record<string, JsonSchema>;
}

export interface ResponseObject {
  description: string;
  content?: Record<string, MediaTypeObject>;
}

export type ResponseOrRef = ResponseObject | { $ref: string };

export interface OperationObject {
  operationId: string;
  summary: string;
  description: string;
  tags: string[];
  /** Which caller kinds the route's guard admits (`user` includes admins); [] for none needed. */
  'x-callers': Caller[];
  security: Record<string, string[]>[];
  parameters?: ParameterObject[];
  requestBody?: { required: boolean; content: Record<string, MediaTypeObject> };
  responses: Record<string, ResponseOrRef>;
}

export interface SecuritySchemeObject {
  type: 'http' | 'apiKey';
  scheme?: string;
  bearerFormat?: string;
  in?: 'cookie' | 'header';
  name?: string;
  description: string;
}

export interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string; description: string };
  jsonSchemaDialect: string;
  servers: { url: string }[];
  tags: { name: string; description: string }[];
  paths: Record<string, Partial<Record<OperationSpec['method'], OperationObject>>>;
  components: {
    schemas: Record<string, JsonSchema>;
    responses: Record<string, ResponseObject>;
    securitySchemes: Record<string, SecuritySchemeObject>;
  };
}

const SCHEMA_REF = '#/components/schemas/';
const JSON_TYPE = 'application/json';

export const SecurityScheme = {
  PersonJwt: 'personJwt',
  SessionCookie: 'sessionCookie',
  AgentKey: 'agentKey',
  RegistrationToken: 'registrationToken',
} as const;

const SECURITY_SCHEMES: Record<string, SecuritySchemeObject> = {
  [SecurityScheme.PersonJwt]: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'JWT',
    description: "A person's JWT: `sub` is the user id, `role` is `user` or `admin`.",
  },
  [SecurityScheme.SessionCookie]: {
    type: 'apiKey',
    in: 'cookie',
    name: 'imagepod_session',
    description:
      'The dashboard session, set by `POST /gpu-workers/session`; in place of a JWT. Requests that change state must carry a same-origin `Origin` header.',
  },
  [SecurityScheme.AgentKey]: {
    type: 'http',
    scheme: 'bearer',
    bearerFormat: 'ipk_…',
    description: "An agent's API key, issued once at registration.",
  },
  [SecurityScheme.RegistrationToken]: {
    type: 'http',
    scheme: 'bearer',
    description: 'The registration token (`IMAGEPOD_REGISTRATION_TOKEN`): only to register a node or agent.',
  },
};

const SCHEMES_OF: Record<Caller, string[]> = {
  user: [SecurityScheme.PersonJwt, SecurityScheme.SessionCookie],
  admin: [SecurityScheme.PersonJwt, SecurityScheme.SessionCookie],
  agent: [SecurityScheme.AgentKey],
  registrar: [SecurityScheme.RegistrationToken],
};

export const CALLER_WORDS: Record<Caller, string> = {
  user: 'people (JWT or session; admins too)',
  admin: 'admins',
  agent: 'agents (their key)',
  registrar: 'the registration token',
};

/** The error answers, one per status, each with the one error body. */
const ERROR_RESPONSES: Record<number, { name: string; description: string }> = {
  400: { name: 'BadRequest', description: 'Bad input; `fields` names each bad field.' },
  401: { name: 'Unauthorized', description: 'No credentials, or none that were accepted.' },
  402: { name: 'BudgetExceeded', description: "Over the owner's money or GPU-hour budget; nothing was submitted." },
  403: { name: 'Forbidden', description: 'This caller may not do this.' },
  404: { name: 'NotFound', description: 'No such thing, or none this caller may see.' },
  409: { name: 'Conflict', description: 'It cannot be done in the state things are in; `error` says which conflict.' },
  422: { name: 'Unprocessable', description: 'Well-formed but not to be done as asked; `error` says why (`idempotency_key_reused`).' },
  413: { name: 'PayloadTooLarge', description: 'The body is larger than this server accepts.' },
  429: {
    name: 'RateLimited',
    description:
      'Over a rate limit (`rate_limited`): jobs per user, registrations, sign-ins or refused credentials per address; retry after `Retry-After` seconds.',
  },
  503: { name: 'Unavailable', description: 'The store is unavailable; retry after `Retry-After` seconds.' },
};

/** `/gpu-workers/jobs/:jobId` becomes `/gpu-workers/jobs/{job_id}`. */
export function openApiPath(expressPath: string): string {
  return expressPath.replace(/:(\w+)/g, (_, name: string) => `{${paramOf(name).name}}`);
}

function paramOf(expressName: string) {
  const p = PATH_PARAMS[expressName];
  if (p === undefined) throw new Error(`path parameter :${expressName} has no entry in PATH_PARAMS`);
  return p;
}

export const pathParamNames = (expressPath: string): string[] => [...expressPath.matchAll(/:(\w+)/g)].map((m) => m[1] ?? '');

/** Deep-copies JSON, rewriting every `$ref` with `f`. */
function mapRefs<T>(value: T, f: (ref: string) => string): T {
  if (Array.isArray(value)) return value.map((v) => mapRefs(v, f)) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = k === '$ref' && typeof v === 'string' ? f(v) : mapRefs(v, f);
  return out as T;
}

/** Where zod puts definitions it had to share (recursive ones like `z.json()`) in a registry conversion. */
const SHARED = '__shared';
const SHARED_REF = new RegExp(`^${SCHEMA_REF}${SHARED}#/\\$defs/(.+)$`);

/** zod's JSON-value schema (`z.json()`), recognised by its shape once its self-references are blanked. */
function isJsonValue(def: JsonSchema, selfRef: string): boolean {
  const blank = mapRefs(def, (r) => (r === selfRef ? 'SELF' : r));
  return isDeepStrictEqual(blank, {
    anyOf: [
      { type: 'string' },
      { type: 'number' },
      { type: 'boolean' },
      { type: 'null' },
      { type: 'array', items: { $ref: 'SELF' } },
      { type: 'object', propertyNames: { type: 'string' }, additionalProperties: { $ref: 'SELF' } },
    ],
  });
}

/**
 * One zod-to-JSON-Schema conversion for a set of schemas, all input or all output. Named
 * components become `$ref`s wherever they appear; other schemas are inlined where used.
 */
class SchemaSet {
  private readonly registry = z.registry<{ id: string }>();
  private readonly ids = new Map<z.ZodType, string>();
  private readonly componentIds = new Set<string>();
  private converted: Record<string, JsonSchema> | null = null;
  /** zod's shared definitions, under the component names they get here. */
  private shared: Record<string, JsonSchema> = {};

  constructor(
    private readonly io: 'input' | 'output',
    components: Readonly<Record<string, z.ZodType>>,
  ) {
    for (const [name, schema] of Object.entries(components)) {
      this.register(schema, name);
      this.componentIds.add(name);
    }
  }

  private register(schema: z.ZodType, id: string): void {
    if (this.ids.has(schema)) throw new Error(`schema ${id} is already registered as ${this.ids.get(schema)}`);
    this.ids.set(schema, id);
    this.registry.add(schema, { id });
  }

  /** Registers a schema used somewhere in the document; call before `convert`. */
  use(schema: z.ZodType): void {
    if (!this.ids.has(schema)) this.register(schema, `_inline${this.ids.size}`);
  }

  convert(): void {
    const out = z.toJSONSchema(this.registry, {
      target: 'draft-2020-12',
      io: this.io,
      unrepresentable: 'any',
      uri: (id) => `${SCHEMA_REF}${id}`,
    });
    const { [SHARED]: sharedDoc, ...schemas } = out.schemas as Record<string, JsonSchema>;
    // Shared definitions become components of their own: `JsonValue`, or a name by where they came from.
    const defs = (sharedDoc?.$defs ?? {}) as Record<string, JsonSchema>;
    const names = new Map<string, string>();
    for (const [def, schema] of Object.entries(defs)) {
      names.set(def, isJsonValue(schema, `${SCHEMA_REF}${SHARED}#/$defs/${def}`) ? 'JsonValue' : `${this.io}_${def}`);
    }
    const fix = (ref: string) => {
      const m = SHARED_REF.exec(ref);
      if (m !== null) return `${SCHEMA_REF}${names.get(m[1] ?? '') ?? m[1]}`;
      if (ref.startsWith(`${SCHEMA_REF}_inline`)) throw new Error(`${ref} is used inside another schema: name it in components.ts`);
      return ref;
    };
    this.converted = {};
    for (const [id, { $schema: _s, $id: _i, ...rest }] of Object.entries(schemas)) this.converted[id] = mapRefs(rest, fix);
    this.shared = Object.fromEntries(Object.entries(defs).map(([def, schema]) => [names.get(def) ?? def, mapRefs(schema, fix)]));
  }

  /** The schema as it goes into an operation: a `$ref` to its component, or inlined. */
  schemaOf(schema: z.ZodType): JsonSchema {
    const id = this.ids.get(schema);
    if (id === undefined) throw new Error('a schema was not registered before the conversion');
    return this.componentIds.has(id) ? { $ref: `${SCHEMA_REF}${id}` } : this.entry(id);
  }

  private entry(id: string): JsonSchema {
    const s = this.converted?.[id];
    if (s === undefined) throw new Error(`no converted schema ${id}`);
    return s;
  }

  /** What goes in `components.schemas`: the named schemas and the shared definitions. */
  components(): Record<string, JsonSchema> {
    const out: Record<string, JsonSchema> = { ...this.shared };
    for (const id of this.componentIds) out[id] = this.entry(id);
    return out;
  }
}

export interface DocumentOptions {
  readonly title: string;
  readonly version: string;
  readonly description: string;
}

/** Builds the OpenAPI 3.1 document for these operations. Pure; call once at start-up. */
export function buildOpenApiDocument(ops: readonly OperationSpec[], opts: DocumentOptions): OpenApiDocument {
  const input = new SchemaSet('input', REQUEST_COMPONENTS);
  const output = new SchemaSet('output', RESPONSE_COMPONENTS);
  for (const op of ops) {
    if (op.query) input.use(op.query);
    if (op.body) input.use(op.body);
    for (const h of op.headers ?? []) input.use(h.schema);
    for (const name of pathParamNames(op.path)) input.use(paramOf(name).schema);
    for (const r of Object.values(op.responses)) {
      if (r.schema) output.use(r.schema);
      for (const e of Object.values(r.other?.events ?? {})) output.use(e);
    }
  }
  input.convert();
  output.convert();

  const schemas: Record<string, JsonSchema> = {};
  for (const set of [input, output]) {
    for (const [name, schema] of Object.entries(set.components())) {
      const had = schemas[name];
      if (had !== undefined && !isDeepStrictEqual(had, schema)) throw new Error(`two different schemas are named ${name}`);
      schemas[name] = schema;
    }
  }
  const inSchema = (s: z.ZodType) => input.schemaOf(s);
  const outSchema = (s: z.ZodType) => output.schemaOf(s);

  const paths: OpenApiDocument['paths'] = {};
  const usedErrors = new Set<number>();
  for (const op of ops) {
    const path = openApiPath(op.path);
    const item = paths[path] ?? {};
    paths[path] = item;
    if (item[op.method] !== undefined) throw new Error(`${op.method.toUpperCase()} ${path} is described twice`);
    const built = operationObject(op, inSchema, outSchema);
    for (const status of errorStatuses(op)) {
      usedErrors.add(status);
      built.responses[String(status)] = { $ref: `#/components/responses/${errorName(status)}` };
    }
    item[op.method] = built;
  }

  const responses: Record<string, ResponseObject> = {};
  for (const status of [...usedErrors].sort()) {
    const e = ERROR_RESPONSES[status];
    if (e === undefined) continue;
    responses[e.name] = { description: e.description, content: { [JSON_TYPE]: { schema: { $ref: `${SCHEMA_REF}Error` } } } };
  }

  return {
    openapi: '3.1.1',
    info: { title: opts.title, version: opts.version, description: opts.description },
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    servers: [{ url: '/' }],
    tags: Object.values(Tag).map((name) => ({ name, description: TAG_DESCRIPTIONS[name] })),
    paths,
    components: { schemas, responses, securitySchemes: SECURITY_SCHEMES },
  };
}

function errorName(status: number): string {
  const e = ERROR_RESPONSES[status];
  if (e === undefined) throw new Error(`no error response is described for status ${status}`);
  return e.name;
}

/** The errors an operation can answer: from what it takes and who may call it, plus its own. */
export function errorStatuses(op: OperationSpec): number[] {
  const out = new Set<number>(op.errors ?? []);
  const hasPathParams = pathParamNames(op.path).length > 0;
  if (op.query || op.body || hasPathParams) out.add(400);
  if (op.body) out.add(413);
  if (hasPathParams) out.add(404);
  if (op.callers.length > 0) {
    out.add(401);
    out.add(403);
    // Past IMAGEPOD_RATE_LIMIT_AUTH_FAILURES_PER_MIN an address's refused tokens get 429 (rate-limit.ts).
    out.add(429);
    out.add(503);
  }
  for (const status of Object.keys(op.responses)) out.delete(Number(status));
  return [...out].sort((a, b) => a - b);
}

function operationObject(
  op: OperationSpec,
  inSchema: (s: z.ZodType) => JsonSchema,
  outSchema: (s: z.ZodType) => JsonSchema,
): OperationObject {
  const parameters: ParameterObject[] = pathParamNames(op.path).map((name) => {
    const p = paramOf(name);
    return { name: p.name, in: 'path', required: true, description: p.description, schema: inSchema(p.schema), example: p.example };
  });
  if (op.query) {
    const q = inSchema(op.query);
    const required = new Set((q.required as string[] | undefined) ?? []);
    for (const [name, prop] of Object.entries((q.properties ?? {}) as Record<string, JsonSchema>)) {
      const { description, ...schema } = prop;
      parameters.push({
        name,
        in: 'query',
        required: required.has(name),
        ...(typeof description === 'string' && { description }),
        schema,
      });
    }
  }

  for (const h of op.headers ?? []) {
    const { description, ...schema } = inSchema(h.schema);
    parameters.push({
      name: h.name,
      in: 'header',
      required: false,
      ...(typeof description === 'string' && { description }),
      schema,
      example: h.example,
    });
  }

  const schemes = [...new Set(op.callers.flatMap((c) => SCHEMES_OF[c]))];
  const who = op.callers.length === 0 ? 'anyone, without credentials' : op.callers.map((c) => CALLER_WORDS[c]).join(', ');
  const responses: Record<string, ResponseOrRef> = {};
  for (const [status, r] of Object.entries(op.responses)) {
    const content: Record<string, MediaTypeObject> = {};
    if (r.schema) content[JSON_TYPE] = { schema: outSchema(r.schema) };
    if (r.other) {
      const events = Object.entries(r.other.events ?? {}).map(([name, s]) => [name, outSchema(s)] as const);
      content[r.other.contentType] = {
        schema: { type: 'string', description: r.other.description },
        ...(events.length > 0 && { 'x-events': Object.fromEntries(events) }),
      };
    }
    responses[status] = { description: r.description, ...(Object.keys(content).length > 0 && { content }) };
  }
  return {
    operationId: op.operationId,
    summary: op.summary,
    description: [op.description, `Who may call: ${who}${op.callersNote ? ` — ${op.callersNote}` : ''}.`].filter(Boolean).join('\n\n'),
    tags: [op.tag],
    'x-callers': [...op.callers],
    security: schemes.map((s) => ({ [s]: [] })),
    ...(parameters.length > 0 && { parameters }),
    ...(op.body && { requestBody: { required: true, content: { [JSON_TYPE]: { schema: inSchema(op.body) } } } }),
    responses,
  };
}
