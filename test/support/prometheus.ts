/**
 * A strict reader of Prometheus' text exposition format (version 0.0.4), as a scraper would
 * read it: it throws on any line a scraper would refuse, so a test that reads metrics through it
 * also checks the format.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Exposition {
  /** Metric families by name, with their declared type. */
  readonly types: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
  /** Samples of one series name whose labels include `labels`. */
  find(name: string, labels?: Record<string, string>): Sample[];
  /** The value of the one sample of `name` whose labels include these (more than one is an error), or undefined. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Every series name a scraper would store: histograms' _bucket, _sum, _count included. */
  readonly seriesNames: ReadonlySet<string>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const SUFFIXES: Record<string, readonly string[]> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
};

export function parseExposition(text: string): Exposition {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  const fail = (n: number, line: string, why: string): never => {
    throw new Error(`metrics line ${n + 1}: ${why}: ${line}`);
  };
  for (const [n, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m === null) continue; // a plain comment
      const [, kind, name = '', rest = ''] = m;
      if (!NAME.test(name)) fail(n, line, 'bad metric name');
      if (kind === 'TYPE') {
        if (!TYPES.has(rest)) fail(n, line, 'unknown type');
        if (types.has(name)) fail(n, line, 'type declared twice');
        types.set(name, rest);
      }
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
    if (m === null) fail(n, line, 'not a sample');
    const [, name = '', rawLabels, rawValue = ''] = m as RegExpExecArray;
    const value = parseValue(rawValue);
    if (value === null) fail(n, line, 'bad value');
    samples.push({ name, labels: rawLabels === undefined ? {} : parseLabels(rawLabels, (why) => fail(n, line, why)), value: value ?? 0 });
  }

  const seriesNames = new Set<string>();
  for (const [name, type] of types) for (const s of SUFFIXES[type] ?? ['']) seriesNames.add(`${name}${s}`);
  for (const s of samples) {
    if (!seriesNames.has(s.name)) throw new Error(`sample ${s.name} belongs to no declared metric`);
  }
  checkHistograms(types, samples);

  const find = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    types,
    samples,
    seriesNames,
    find,
    value(name, labels = {}) {
      const hits = find(name, labels);
      if (hits.length > 1) throw new Error(`${hits.length} series of ${name} match ${JSON.stringify(labels)}`);
      return hits[0]?.value;
    },
  };
}

/** As Prometheus reads values (Go's ParseFloat): NaN and Inf in any case. */
function parseValue(s: string): number | null {
  if (/^\+?inf(inity)?$/i.test(s)) return Number.POSITIVE_INFINITY;
  if (/^-inf(inity)?$/i.test(s)) return Number.NEGATIVE_INFINITY;
  if (/^nan$/i.test(s)) return Number.NaN;
  const v = Number(s);
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s) && Number.isFinite(v) ? v : null;
}

/** `{a="x",b="y\"z"}`: names checked, values unescaped. */
function parseLabels(raw: string, fail: (why: string) => never): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 1;
  const end = raw.length - 1;
  while (i < end) {
    const eq = raw.indexOf('=', i);
    if (eq < 0) fail('label without a value');
    const key = raw.slice(i, eq);
    if (!LABEL.test(key)) fail(`bad label name "${key}"`);
    if (raw[eq + 1] !== '"') fail('label value not quoted');
    let j = eq + 2;
    let value = '';
    for (; j < end && raw[j] !== '"'; j++) {
      if (raw[j] === '\\') {
        const next = raw[++j];
        value += next === 'n' ? '\n' : (next ?? '');
      } else value += raw[j];
    }
    if (raw[j] !== '"') fail('unterminated label value');
    if (key in out) fail(`label ${key} twice`);
    out[key] = value;
    i = j + 1;
    if (raw[i] === ',') i++;
    else if (i !== end) fail('labels not separated by commas');
  }
  return out;
}

/** Buckets rise with `le`, never fall, and the +Inf bucket equals the count. */
function checkHistograms(types: ReadonlyMap<string, string>, samples: readonly Sample[]): void {
  for (const [name, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, Sample[]>();
    for (const s of samples.filter((x) => x.name === `${name}_bucket`)) {
      const { le, ...rest } = s.labels;
      if (le === undefined) throw new Error(`${name}_bucket without le`);
      const key = JSON.stringify(Object.entries(rest).sort());
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, buckets] of series) {
      const sorted = [...buckets].sort((a, b) => Number(a.labels.le) - Number(b.labels.le));
      for (let i = 1; i < sorted.length; i++) {
        if ((sorted[i]?.value ?? 0) < (sorted[i - 1]?.value ?? 0)) throw new Error(`${name} buckets fall in ${key}`);
      }
      const inf = sorted.at(-1);
      const labels = Object.fromEntries(JSON.parse(key) as [string, string][]);
      const count = samples.find(
        (s) =>
          s.name === `${name}_count` &&
          Object.entries(labels).every(([k, v]) => s.labels[k] === v) &&
          Object.keys(s.labels).length === Object.keys(labels).length,
      );
      if (inf?.labels.le !== '+Inf' || count === undefined || count.value !== inf.value) {
        throw new Error(`${name}: the +Inf bucket and the count differ in ${key}`);
      }
    }
  }
}
