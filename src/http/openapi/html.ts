import type { JsonSchema, OpenApiDocument, OperationObject, ParameterObject, ResponseOrRef } from './document.js';

/**
 * The API reference page, rendered on the server from the OpenAPI document: one self-contained
 * HTML file (no scripts, no fonts or styles from elsewhere), so it works offline and behind
 * any proxy.
 */

/** Deeper than this, nested objects are shown as their type only (the JSON is always there). */
const MAX_DEPTH = 3;

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Escapes, then renders `code` spans and blank-line paragraphs: all the markup descriptions use. */
const prose = (s: string): string =>
  s
    .split(/\n\n+/)
    .map((p) => `<p>${esc(p).replace(/`([^`]+)`/g, '<code>$1</code>')}</p>`)
    .join('');

const inline = (s: string): string => esc(s).replace(/`([^`]+)`/g, '<code>$1</code>');

const refName = (ref: string): string => ref.slice(ref.lastIndexOf('/') + 1);
const schemaAnchor = (name: string) => `schema-${name}`;

const isObject = (v: unknown): v is JsonSchema => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A short type label: `string | null`, `array of Job`, `map of string`, `"a" | "b"`. */
function typeLabel(s: JsonSchema): string {
  if (typeof s.$ref === 'string') {
    const name = refName(s.$ref);
    return `<a href="#${schemaAnchor(name)}">${esc(name)}</a>`;
  }
  if ('const' in s) return `<code>${esc(JSON.stringify(s.const))}</code>`;
  if (Array.isArray(s.enum)) return s.enum.map((v) => `<code>${esc(JSON.stringify(v))}</code>`).join(' | ');
  const union = (s.anyOf ?? s.oneOf) as unknown;
  if (Array.isArray(union)) return union.filter(isObject).map(typeLabel).join(' | ');
  const types = Array.isArray(s.type) ? (s.type as string[]) : typeof s.type === 'string' ? [s.type] : [];
  if (types.length === 0) return 'any';
  return types
    .map((t) => {
      if (t === 'array' && isObject(s.items)) return `array of ${typeLabel(s.items)}`;
      if (t === 'object' && isObject(s.additionalProperties) && !isObject(s.properties)) {
        return `map of ${typeLabel(s.additionalProperties)}`;
      }
      return esc(t);
    })
    .join(' | ');
}

const SAFE_INT = 9007199254740991;

/** Limits worth reading: ranges, lengths, patterns, defaults. */
function constraints(s: JsonSchema): string {
  const out: string[] = [];
  const num = (k: string) => (typeof s[k] === 'number' && Math.abs(s[k] as number) !== SAFE_INT ? (s[k] as number) : undefined);
  const range = (lo: number | undefined, hi: number | undefined, what: string) => {
    if (lo !== undefined && hi !== undefined) out.push(`${what}${lo}–${hi}`);
    else if (lo !== undefined) out.push(`${what}≥ ${lo}`);
    else if (hi !== undefined) out.push(`${what}≤ ${hi}`);
  };
  range(num('minimum'), num('maximum'), '');
  if (num('exclusiveMinimum') !== undefined) out.push(`> ${num('exclusiveMinimum')}`);
  range(num('minLength'), num('maxLength'), 'length ');
  range(num('minItems'), num('maxItems'), 'items ');
  if (typeof s.pattern === 'string' && typeof s.format !== 'string') out.push(`pattern <code>${esc(s.pattern)}</code>`);
  if (typeof s.format === 'string') out.push(`format ${esc(s.format)}`);
  if ('default' in s) out.push(`default <code>${esc(JSON.stringify(s.default))}</code>`);
  return out.join('; ');
}

interface Row {
  name: string;
  schema: JsonSchema;
  required: boolean;
}

/** Rows for an object's properties, nested inline objects (and arrays of them) flattened as `a.b` and `a[].b`. */
function rows(s: JsonSchema, prefix = '', depth = 0): Row[] {
  if (!isObject(s.properties)) return [];
  const required = new Set(Array.isArray(s.required) ? (s.required as string[]) : []);
  const out: Row[] = [];
  for (const [name, prop] of Object.entries(s.properties)) {
    if (!isObject(prop)) continue;
    const full = `${prefix}${name}`;
    out.push({ name: full, schema: prop, required: required.has(name) });
    if (depth + 1 >= MAX_DEPTH) continue;
    const nested = inlineObject(prop);
    if (nested) out.push(...rows(nested.schema, `${full}${nested.suffix}.`, depth + 1));
  }
  return out;
}

/** The object to expand under a property: itself, its array items, or its non-null alternative. */
function inlineObject(s: JsonSchema): { schema: JsonSchema; suffix: string } | null {
  if (isObject(s.properties)) return { schema: s, suffix: '' };
  if (isObject(s.items) && isObject(s.items.properties)) return { schema: s.items, suffix: '[]' };
  const union = (s.anyOf ?? s.oneOf) as unknown;
  if (Array.isArray(union)) {
    const objects = union.filter((u) => isObject(u) && isObject(u.properties));
    if (objects.length === 1 && isObject(objects[0])) return { schema: objects[0], suffix: '' };
  }
  return null;
}

function fieldTable(s: JsonSchema): string {
  const rs = rows(s);
  if (rs.length === 0) return '';
  const body = rs
    .map((r) => {
      const depth = r.name.split('.').length - 1;
      const desc = [typeof r.schema.description === 'string' ? inline(r.schema.description) : '', constraints(r.schema)]
        .filter(Boolean)
        .join('<br><span class="muted">');
      const closing = desc.includes('<span') ? '</span>' : '';
      return `<tr><td class="field" style="padding-left:${0.5 + depth * 1.2}em"><code>${esc(r.name)}</code></td><td>${typeLabel(
        r.schema,
      )}</td><td>${r.required ? 'yes' : ''}</td><td>${desc}${closing}</td></tr>`;
    })
    .join('');
  return `<table><thead><tr><th>Field</th><th>Type</th><th>Required</th><th>Notes</th></tr></thead><tbody>${body}</tbody></table>`;
}

function schemaBlock(doc: OpenApiDocument, s: JsonSchema): string {
  const resolved = typeof s.$ref === 'string' ? doc.components.schemas[refName(s.$ref)] : s;
  if (typeof s.$ref === 'string') return `<p>Schema: ${typeLabel(s)}</p>${resolved ? fieldTable(resolved) : ''}`;
  // A named schema's JSON is shown once, under Schemas; an inline one's here.
  return `<p>Type: ${typeLabel(s)}</p>${fieldTable(s)}<details><summary>JSON Schema</summary><pre>${esc(JSON.stringify(s, null, 2))}</pre></details>`;
}

function parametersBlock(ps: readonly ParameterObject[]): string {
  const body = ps
    .map((p) => {
      const desc = [p.description ? inline(p.description) : '', constraints(p.schema)].filter(Boolean).join('<br>');
      return `<tr><td class="field"><code>${esc(p.name)}</code></td><td>${p.in}</td><td>${typeLabel(p.schema)}</td><td>${
        p.required ? 'yes' : ''
      }</td><td>${desc}</td></tr>`;
    })
    .join('');
  return `<h4>Parameters</h4><table><thead><tr><th>Name</th><th>In</th><th>Type</th><th>Required</th><th>Notes</th></tr></thead><tbody>${body}</tbody></table>`;
}

function responsesBlock(doc: OpenApiDocument, responses: Record<string, ResponseOrRef>): string {
  const items = Object.entries(responses).map(([status, r]) => {
    if ('$ref' in r) {
      const shared = doc.components.responses[refName(r.$ref)];
      return `<li><span class="status s${status[0]}">${esc(status)}</span> ${shared ? inline(shared.description) : ''} <span class="muted">(<a href="#${schemaAnchor('Error')}">Error</a>)</span></li>`;
    }
    const content = Object.entries(r.content ?? {})
      .map(([type, media]) =>
        type === 'application/json'
          ? `<div class="media"><span class="muted">${esc(type)}</span>${schemaBlock(doc, media.schema)}</div>`
          : `<div class="media"><span class="muted">${esc(type)}</span>: ${inline(String(media.schema.description ?? ''))}${eventsBlock(
              doc,
              media['x-events'],
            )}</div>`,
      )
      .join('');
    return `<li><span class="status s${status[0]}">${esc(status)}</span> ${inline(r.description)}${content}</li>`;
  });
  return `<h4>Responses</h4><ul class="responses">${items.join('')}</ul>`;
}

function eventsBlock(doc: OpenApiDocument, events: Record<string, JsonSchema> | undefined): string {
  if (events === undefined) return '';
  const items = Object.entries(events).map(([name, s]) => `<li><code>event: ${esc(name)}</code>, data: ${schemaBlock(doc, s)}</li>`);
  return `<ul class="events">${items.join('')}</ul>`;
}

function operationBlock(doc: OpenApiDocument, method: string, path: string, op: OperationObject): string {
  const body = op.requestBody?.content['application/json'];
  return `<section class="op" id="${esc(op.operationId)}">
<h3><span class="method m-${method}">${method.toUpperCase()}</span> <code class="path">${esc(path)}</code></h3>
<p class="summary">${inline(op.summary)}</p>
${prose(op.description)}
${op.parameters?.length ? parametersBlock(op.parameters) : ''}
${body ? `<h4>Request body</h4>${schemaBlock(doc, body.schema)}` : ''}
${responsesBlock(doc, op.responses)}
</section>`;
}

const STYLE = `
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1100px;margin:0 auto;padding:1.5em 2em 4em}
nav{columns:3 220px;font-size:.9em;background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:.8em 1.2em}
nav h4{margin:.3em 0;break-after:avoid}nav ul{margin:0 0 .6em;padding-left:1em;list-style:none}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #e3e6ea;padding-bottom:.2em;margin-top:2em}
.op{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:.4em 1.2em 1em;margin:1.2em 0}
.method{display:inline-block;min-width:4.2em;text-align:center;border-radius:4px;color:#fff;font-size:.8em;padding:.15em .4em;vertical-align:middle}
.m-get{background:#2f7d32}.m-post{background:#1f5fbf}.m-put{background:#8a5a00}.m-patch{background:#6b3fa0}.m-delete{background:#b3261e}
.path{font-size:1.05em}.summary{font-weight:600;margin:.3em 0}
table{border-collapse:collapse;width:100%;font-size:.9em;margin:.4em 0}
th,td{border-bottom:1px solid #eceef1;text-align:left;padding:.3em .5em;vertical-align:top}th{background:#f3f5f7}
td.field{white-space:nowrap}code{font:.92em ui-monospace,SFMono-Regular,Menlo,monospace;background:#f1f3f5;padding:0 .2em;border-radius:3px}
pre{background:#f6f8fa;border:1px solid #eceef1;padding:.8em;overflow:auto;font-size:.85em}
.muted{color:#6a7380}.responses{list-style:none;padding-left:0}.responses li{margin:.4em 0}
.status{display:inline-block;min-width:2.6em;font-weight:700}.s2{color:#2f7d32}.s4{color:#b3261e}.s5{color:#8a5a00}
.media{margin:.3em 0 .6em 2.8em}details summary{cursor:pointer;color:#1f5fbf;font-size:.9em}
`;

/** The whole page. Deterministic for a given document, so it is rendered once at start-up. */
export function renderReferencePage(doc: OpenApiDocument): string {
  const byTag = new Map<string, { method: string; path: string; op: OperationObject }[]>();
  for (const t of doc.tags) byTag.set(t.name, []);
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!op) continue;
      const tag = op.tags[0] ?? 'Other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag)?.push({ method, path, op });
    }
  }
  const tags = [...byTag.entries()].filter(([, ops]) => ops.length > 0);
  const describe = (name: string) => doc.tags.find((t) => t.name === name)?.description ?? '';

  const nav = tags
    .map(
      ([tag, ops]) =>
        `<h4><a href="#tag-${esc(tag)}">${esc(tag)}</a></h4><ul>${ops
          .map((o) => `<li><a href="#${esc(o.op.operationId)}">${o.method.toUpperCase()} ${esc(o.path)}</a></li>`)
          .join('')}</ul>`,
    )
    .join('');
  const sections = tags
    .map(
      ([tag, ops]) =>
        `<h2 id="tag-${esc(tag)}">${esc(tag)}</h2>${prose(describe(tag))}${ops.map((o) => operationBlock(doc, o.method, o.path, o.op)).join('\n')}`,
    )
    .join('\n');
  const security = Object.entries(doc.components.securitySchemes)
    .map(([name, s]) => {
      const how =
        s.type === 'http'
          ? `<code>Authorization: Bearer &lt;${esc(s.bearerFormat ?? 'token')}&gt;</code>`
          : `cookie <code>${esc(s.name ?? '')}</code>`;
      return `<tr><td><code>${esc(name)}</code></td><td>${how}</td><td>${inline(s.description)}</td></tr>`;
    })
    .join('');
  const schemas = Object.entries(doc.components.schemas)
    .map(
      ([name, s]) =>
        `<section class="op" id="${schemaAnchor(name)}"><h3>${esc(name)}</h3>${
          typeof s.description === 'string' ? prose(s.description) : ''
        }${fieldTable(s) || `<p>Type: ${typeLabel(s)}</p>`}<details><summary>JSON Schema</summary><pre>${esc(JSON.stringify(s, null, 2))}</pre></details></section>`,
    )
    .join('\n');

  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(doc.info.title)} reference</title><style>${STYLE}</style></head>
<body><main>
<h1>${esc(doc.info.title)}</h1>
<p class="muted">Version ${esc(doc.info.version)} · OpenAPI ${esc(doc.openapi)} · the machine-readable document: <a href="/openapi.json">/openapi.json</a></p>
${prose(doc.info.description)}
<nav>${nav}<h4><a href="#schemas">Schemas</a></h4></nav>
<h2 id="auth">Credentials</h2>
<table><thead><tr><th>Scheme</th><th>Sent as</th><th>What</th></tr></thead><tbody>${security}</tbody></table>
${sections}
<h2 id="schemas">Schemas</h2>
${schemas}
</main></body></html>
`;
}
