import fc from 'fast-check';

/**
 * Valid-ish values from a JSON Schema (as zod writes it for a route's body or query): the
 * starting point the fuzzer mutates. Only the keywords zod emits for this API are understood;
 * anything else becomes any JSON value.
 */
export type JsonSchema = { readonly [key: string]: unknown };

/** Values to prefer for a field, by its name: real ids and tokens reach deeper than random ones. */
export type Hints = Readonly<Record<string, fc.Arbitrary<unknown>>>;

const MAX_ITEMS = 3;
const MAX_REF_DEPTH = 3;

const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

function resolveRef(ref: string, root: JsonSchema): JsonSchema {
  const name = ref.replace(/^#\/\$defs\//, '');
  const defs = root.$defs as Record<string, JsonSchema> | undefined;
  const target = defs?.[name];
  if (target === undefined) throw new Error(`unresolved $ref ${ref}`);
  return target;
}

function stringArb(s: JsonSchema): fc.Arbitrary<string> {
  const min = num(s.minLength) ?? 0;
  const max = Math.min(num(s.maxLength) ?? 40, Math.max(min, 40));
  if (typeof s.pattern === 'string') {
    const re = new RegExp(s.pattern);
    return fc.stringMatching(re).filter((v) => v.length >= min && v.length <= (num(s.maxLength) ?? Number.POSITIVE_INFINITY));
  }
  switch (s.format) {
    case 'uri':
      return fc.constantFrom('https://example.com/hook', 'http://hooks.example.org:8080/x?y=1', 'https://[2606:4700::1]/h');
    case 'date-time':
      return fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString());
    case 'uuid':
      return fc.uuid();
  }
  return fc.string({ minLength: min, maxLength: max });
}

function numberArb(s: JsonSchema, integer: boolean): fc.Arbitrary<number> {
  const min = num(s.minimum) ?? num(s.exclusiveMinimum) ?? -1e6;
  const max = num(s.maximum) ?? num(s.exclusiveMaximum) ?? 1e6;
  const inside = (v: number) =>
    (s.exclusiveMinimum === undefined || v > (s.exclusiveMinimum as number)) &&
    (s.exclusiveMaximum === undefined || v < (s.exclusiveMaximum as number));
  // The bounds themselves are where off-by-one bugs live.
  const edges = [min, max, Math.trunc((min + max) / 2)].filter(inside);
  const any = integer
    ? fc.integer({ min: Math.max(Math.ceil(min), Number.MIN_SAFE_INTEGER), max: Math.min(Math.floor(max), Number.MAX_SAFE_INTEGER) })
    : fc.double({ min, max, noNaN: true, noDefaultInfinity: true }).filter(inside);
  return edges.length > 0 ? fc.oneof(any, fc.constantFrom(...edges)) : any;
}

function objectArb(s: JsonSchema, root: JsonSchema, hints: Hints, refDepth: number): fc.Arbitrary<unknown> {
  const props = s.properties as Record<string, JsonSchema> | undefined;
  if (props !== undefined) {
    const required = new Set((s.required as string[] | undefined) ?? []);
    const model: Record<string, fc.Arbitrary<unknown>> = {};
    for (const [name, sub] of Object.entries(props)) model[name] = hints[name] ?? schemaArbitrary(sub, root, hints, refDepth, name);
    return fc.record(model, { requiredKeys: [...required].filter((k) => k in model) });
  }
  // A record: keys by propertyNames, values by additionalProperties.
  const keySchema = (s.propertyNames as JsonSchema | undefined) ?? { type: 'string', maxLength: 12 };
  const valueSchema = typeof s.additionalProperties === 'object' ? (s.additionalProperties as JsonSchema) : {};
  return fc.dictionary(stringArb(keySchema), schemaArbitrary(valueSchema, root, hints, refDepth), { maxKeys: MAX_ITEMS });
}

/** An arbitrary of values that (mostly) satisfy `schema`; `root` holds its `$defs`. */
export function schemaArbitrary(
  schema: JsonSchema,
  root: JsonSchema,
  hints: Hints = {},
  refDepth = 0,
  name?: string,
): fc.Arbitrary<unknown> {
  if (name !== undefined && hints[name] !== undefined) return hints[name];
  if (typeof schema.$ref === 'string') {
    if (refDepth >= MAX_REF_DEPTH) return fc.oneof(fc.constant(null), fc.integer(), fc.string({ maxLength: 8 }));
    return schemaArbitrary(resolveRef(schema.$ref, root), root, hints, refDepth + 1);
  }
  if (Array.isArray(schema.enum)) return fc.constantFrom(...(schema.enum as unknown[]));
  if (Array.isArray(schema.anyOf)) return fc.oneof(...(schema.anyOf as JsonSchema[]).map((s) => schemaArbitrary(s, root, hints, refDepth)));
  switch (schema.type) {
    case 'string':
      return stringArb(schema);
    case 'integer':
      return numberArb(schema, true);
    case 'number':
      return numberArb(schema, false);
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const items = (schema.items as JsonSchema | undefined) ?? {};
      const minLength = num(schema.minItems) ?? 0;
      return fc.array(schemaArbitrary(items, root, hints, refDepth), {
        minLength,
        maxLength: Math.max(minLength, Math.min(num(schema.maxItems) ?? MAX_ITEMS, MAX_ITEMS)),
      });
    }
    case 'object':
      return objectArb(schema, root, hints, refDepth);
  }
  return fc.jsonValue({ maxDepth: 2 });
}
