import { deflateSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';

/**
 * What the fuzzer does to a valid-ish request: mutations of the body's values (wrong types,
 * missing and extra fields, `__proto__` keys, huge numbers, long and hostile strings, deep
 * nesting) and of how the bytes travel (invalid JSON and UTF-8, duplicate keys, wrong
 * Content-Type and Content-Encoding, oversized bodies).
 */

/** Keys planted at every level; the prototype-pollution payloads set these markers. */
export const POLLUTION_MARKERS = ['polluted', 'isAdmin', 'fuzzRole'] as const;
const POLLUTION = { polluted: 'yes', isAdmin: true, fuzzRole: 'admin' };

export const HOSTILE_STRINGS: readonly string[] = [
  '',
  ' ',
  'x',
  'NaN',
  'Infinity',
  '-Infinity',
  '-0',
  '1e308',
  '1e-400',
  '0x10',
  '9007199254740993',
  '-1',
  '1.5',
  'true',
  'null',
  '\u0000',
  'a\u0000b',
  '\u202Eevil\u202C',
  'שלום עולם',
  'ÄÖÜ😀🚀',
  '\ud800',
  '\udfff\ud800',
  'İı',
  '\u200B\uFEFF',
  'e\u0301\u0301\u0301',
  'a'.repeat(5000),
  '<script>alert(1)</script>',
  "' OR 1=1 --",
  '$(reboot)',
  '`id`',
  '; rm -rf /',
  '../../etc/passwd',
  '/var/run/docker.sock',
  '{tag}',
  '*',
  '\r\nSET x 1\r\n',
  '%00',
  '%',
  '__proto__',
  'constructor',
  'prototype',
];

export const HOSTILE_KEYS: readonly string[] = [
  '__proto__',
  'constructor',
  'prototype',
  'zzz_unknown',
  '',
  ' ',
  'toString',
  'valueOf',
  'hasOwnProperty',
  '__defineGetter__',
  'a.b',
  '$gt',
  '\u0000',
  '😀',
  'isAdmin',
  'privileged',
];

const HOSTILE_VALUES: readonly unknown[] = [
  ...HOSTILE_STRINGS,
  0,
  -1,
  1,
  0.5,
  1e308,
  -1e308,
  5e-324,
  2 ** 53 + 1,
  2 ** 64,
  true,
  false,
  null,
  [],
  {},
  [null],
  { a: 1 },
  [[[]]],
  [1, 'two', { three: [3] }],
];

/** Number literals JSON.stringify cannot write, planted as markers and swapped in the text. */
const RAW_LITERALS = ['-0', '1e309', '-1e309', '1e-400', '1.0', '1E2', '100000000000000000000000000000', '-0.0', '0.1e1'];
const LONG_LENGTHS = [1_000, 9_000, 40_000, 300_000];
const DEEP_DEPTHS = [100, 1_000, 10_000];

export const MutationKind = {
  WrongType: 'wrong-type',
  Delete: 'delete',
  AddKey: 'add-key',
  Raw: 'raw-number',
  Deep: 'deep',
  Long: 'long-string',
} as const;
export type MutationKind = (typeof MutationKind)[keyof typeof MutationKind];

export interface Mutation {
  readonly kind: MutationKind;
  /** Which node of the value tree (modulo their number). */
  readonly at: number;
  /** Which replacement, key or size (modulo the choices). */
  readonly pick: number;
}

export const mutationArb: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom(...Object.values(MutationKind)),
  at: fc.nat(),
  pick: fc.nat(),
});

type Path = (string | number)[];

function pathsOf(v: unknown, at: Path = [], out: Path[] = []): Path[] {
  out.push(at);
  if (Array.isArray(v)) for (const [i, x] of v.entries()) pathsOf(x, [...at, i], out);
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) pathsOf(x, [...at, k], out);
  return out;
}

/** Sets an own, enumerable property, even one named `__proto__`. */
function define(obj: object, key: string | number, value: unknown): void {
  Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
}

const pickOf = <T>(list: readonly T[], n: number): T => list[n % list.length] as T;
/** A fresh copy, so no value is planted twice (which would make cycles). */
const copy = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

function containerAt(root: { v: unknown }, path: Path): { parent: Record<string | number, unknown>; key: string | number } {
  let parent = root as unknown as Record<string | number, unknown>;
  let key: string | number = 'v';
  for (const p of path) {
    parent = parent[key] as Record<string | number, unknown>;
    key = p;
  }
  return { parent, key };
}

const deepMarker = (depth: number, kind: 'arr' | 'obj') => `@@DEEP_${kind}_${depth}@@`;
const rawMarker = (literal: string) => `@@RAW_${literal}@@`;

/** Applies the mutations, in order, to a copy of `value`. */
export function mutate(value: unknown, mutations: readonly Mutation[]): unknown {
  // A JSON round trip copies the value (fast-check may hand the same instance to several runs).
  const root = { v: value === undefined ? undefined : copy(value) };
  for (const m of mutations) {
    const paths = pathsOf(root.v);
    const path = pickOf(paths, m.at);
    const { parent, key } = containerAt(root, path);
    const target = parent[key];
    switch (m.kind) {
      case MutationKind.WrongType:
        define(parent, key, copy(pickOf(HOSTILE_VALUES, m.pick)));
        break;
      case MutationKind.Delete:
        if (path.length > 0 && !Array.isArray(parent)) delete parent[key];
        break;
      case MutationKind.AddKey: {
        const k = pickOf(HOSTILE_KEYS, m.pick);
        const payload =
          k === '__proto__'
            ? { ...POLLUTION }
            : k === 'constructor'
              ? { prototype: { ...POLLUTION } }
              : copy(pickOf(HOSTILE_VALUES, m.pick >> 4));
        if (Array.isArray(target)) target.push(payload);
        else if (target !== null && typeof target === 'object') define(target, k, payload);
        else {
          const wrapper = {};
          define(wrapper, k, payload);
          define(parent, key, wrapper);
        }
        break;
      }
      case MutationKind.Raw:
        define(parent, key, rawMarker(pickOf(RAW_LITERALS, m.pick)));
        break;
      case MutationKind.Deep:
        define(parent, key, deepMarker(pickOf(DEEP_DEPTHS, m.pick), m.pick % 2 === 0 ? 'arr' : 'obj'));
        break;
      case MutationKind.Long:
        define(parent, key, pickOf(['x', 'é', '😀', 'a\u0000'], m.pick >> 2).repeat(pickOf(LONG_LENGTHS, m.pick)));
        break;
    }
  }
  return root.v;
}

function deepText(depth: number, kind: 'arr' | 'obj'): string {
  return kind === 'arr' ? `${'['.repeat(depth)}${']'.repeat(depth)}` : `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

/** JSON text of a mutated value, with the deep and raw markers swapped for what they stand for. */
export function toJsonText(value: unknown): string {
  const text = JSON.stringify(value) ?? '';
  return text
    .replace(/"@@DEEP_(arr|obj)_(\d+)@@"/g, (_, kind: 'arr' | 'obj', depth: string) => deepText(Number(depth), kind))
    .replace(/"@@RAW_([^@"]+)@@"/g, (_, literal: string) => literal);
}

/** How the bytes of the body travel. */
export const Encoding = {
  Json: 'json',
  DuplicateKeys: 'duplicate-keys',
  Truncated: 'truncated',
  TrailingGarbage: 'trailing-garbage',
  InvalidUtf8: 'invalid-utf8',
  Bom: 'bom',
  Oversized: 'oversized',
  WrongContentType: 'wrong-content-type',
  Charset: 'charset',
  Gzip: 'gzip',
  BadCompression: 'bad-compression',
  UnknownEncoding: 'unknown-encoding',
  Empty: 'empty',
  Literal: 'literal',
  DeepTop: 'deep-top',
} as const;
export type Encoding = (typeof Encoding)[keyof typeof Encoding];

export interface WireBody {
  readonly bytes: Buffer | null;
  readonly headers: Record<string, string>;
}

const JSON_TYPE = { 'content-type': 'application/json' };
const INVALID_UTF8 = [Buffer.from([0xff]), Buffer.from([0xc0, 0x80]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xe2, 0x82])];
const WRONG_TYPES = [
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/xml',
  'application/json-patch+json',
  '*/*',
  'application/json; charset=utf-8; boundary=x',
];
const CHARSETS = ['utf-16', 'latin1', 'bogus', 'utf-8', 'UTF-8', 'us-ascii'];
const LITERALS = ['null', '1e309', '"x"', '[]', 'true', '{}', '-0', '[{}]', ' '];

/**
 * The body's bytes and headers. `limitBytes` is the API's body limit, for the oversized case;
 * `pick` chooses among each encoding's variants.
 */
export function encodeBody(value: unknown, encoding: Encoding, pick: number, limitBytes: number): WireBody {
  const text = value === undefined ? '' : toJsonText(value);
  const json = (body: string | Buffer, headers: Record<string, string> = JSON_TYPE): WireBody => ({
    bytes: Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8'),
    headers,
  });
  switch (encoding) {
    case Encoding.Json:
      return value === undefined ? { bytes: null, headers: {} } : json(text);
    case Encoding.DuplicateKeys: {
      // {"a": <garbage>, <the rest>}: the first key again, with a value of another type first.
      const m = /^\{"((?:[^"\\]|\\.)*)":/.exec(text);
      return json(m ? `{"${m[1]}":${JSON.stringify(pickOf(HOSTILE_VALUES, pick))},${text.slice(1)}` : `{"a":1,"a":"two"}`);
    }
    case Encoding.Truncated:
      return json(text.slice(0, Math.max(0, (pick % Math.max(1, text.length)) - 1)) || '{');
    case Encoding.TrailingGarbage:
      return json(`${text}${pickOf([',', '}', ' x', '\u0000', ']', '{}', '\n{"a":1}'], pick)}`);
    case Encoding.InvalidUtf8: {
      const bytes = Buffer.from(text || '{"a":"b"}', 'utf8');
      const cut = bytes.indexOf(0x22, pick % Math.max(1, bytes.length)) + 1 || 1;
      return json(Buffer.concat([bytes.subarray(0, cut), pickOf(INVALID_UTF8, pick), bytes.subarray(cut)]));
    }
    case Encoding.Bom:
      return json(`\uFEFF${text}`);
    case Encoding.Oversized:
      return json(pick % 2 === 0 ? `${text}${' '.repeat(limitBytes + 1)}` : `{"pad":"${'x'.repeat(limitBytes + 1)}"}`);
    case Encoding.WrongContentType:
      return pick % 5 === 0 ? { bytes: Buffer.from(text), headers: {} } : json(text, { 'content-type': pickOf(WRONG_TYPES, pick) });
    case Encoding.Charset:
      return json(text, { 'content-type': `application/json; charset=${pickOf(CHARSETS, pick)}` });
    case Encoding.Gzip:
      return json(pick % 2 === 0 ? gzipSync(text) : deflateSync(text), {
        ...JSON_TYPE,
        'content-encoding': pick % 2 === 0 ? 'gzip' : 'deflate',
      });
    case Encoding.BadCompression:
      return json(Buffer.from(text.slice(0, 64) || 'not compressed'), {
        ...JSON_TYPE,
        'content-encoding': pickOf(['gzip', 'deflate', 'br'], pick),
      });
    case Encoding.UnknownEncoding:
      return json(text, { ...JSON_TYPE, 'content-encoding': pickOf(['zstd', 'gzip, gzip', 'identity', 'compress', 'x'], pick) });
    case Encoding.Empty:
      return pick % 2 === 0 ? json('') : { bytes: null, headers: JSON_TYPE };
    case Encoding.Literal:
      return json(pickOf(LITERALS, pick));
    case Encoding.DeepTop:
      return json(deepText(pickOf(DEEP_DEPTHS, pick), pick % 2 === 0 ? 'arr' : 'obj'));
  }
}

/** Percent-encodes any string, lone surrogates included (encodeURIComponent throws on those). */
export function encodePart(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0').toUpperCase()}`).join('');
  }
}

/** Path segments sent as they are: broken percent-encoding, dot segments, encoded slashes. */
export const RAW_SEGMENTS: readonly string[] = [
  '%',
  '%zz',
  '%E0%A4%A',
  '%C0%AF',
  '%00',
  '..',
  '%2e%2e',
  'a%2Fb',
  '%2F..%2F..',
  '%ED%A0%80',
];
