import { gpuFamilies } from './gpu.js';
import type { JobRequirements } from './schemas/job.js';

/**
 * A job's requirements as one short string at the head of its BullMQ payload, e.g.
 * `g=2;m=40000;f=h100,h200;c=8;r=65536;n=*;s=zone=eu,tier=a;p=4.5;t=3600;u=alice`. The claim script
 * reads it with a pattern match instead of decoding the whole payload (whose input_data may be
 * large), so agents can scan many waiting jobs cheaply. `*` means "any". Values that could hold
 * `;`, `,`, `=` or `"` (the owner) are URI-encoded; label keys and values cannot hold them. The
 * time limit (`t`, seconds) lets an agent that holds room for a starving job backfill jobs that
 * will have ended before that job could start anyway.
 */
export function compactRequirements(r: JobRequirements, owner: string, timeoutSeconds: number): string {
  const families = r.gpu_type === null ? '*' : gpuFamilies(r.gpu_type).join(',');
  const selector = Object.entries(r.node_selector);
  return [
    `g=${r.gpu_count}`,
    `m=${r.gpu_memory_mib}`,
    `f=${families}`,
    `c=${r.cpu_cores}`,
    `r=${r.memory_mib}`,
    `n=${r.node_name ?? '*'}`,
    `s=${selector.length === 0 ? '*' : selector.map(([k, v]) => `${k}=${v}`).join(',')}`,
    `p=${r.max_price_per_hour ?? '*'}`,
    `t=${timeoutSeconds}`,
    `u=${encodeURIComponent(owner)}`,
  ].join(';');
}

export interface CompactRequirements {
  readonly gpuCount: number;
  readonly gpuMemoryMiB: number;
  /** null: any family. */
  readonly families: readonly string[] | null;
  readonly cpuCores: number;
  readonly memoryMiB: number;
  readonly nodeName: string | null;
  readonly nodeSelector: Readonly<Record<string, string>>;
  readonly maxPricePerHour: number | null;
  /** The job's run-time limit; null in payloads written before it was carried. */
  readonly timeoutSeconds: number | null;
  readonly owner: string;
}

export function parseCompactRequirements(s: string): CompactRequirements | null {
  const f = new Map<string, string>();
  for (const part of s.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) f.set(part.slice(0, eq), part.slice(eq + 1));
  }
  const num = (k: string) => {
    const v = f.get(k);
    return v === undefined || v === '' || Number.isNaN(Number(v)) ? null : Number(v);
  };
  const g = num('g');
  const m = num('m');
  const c = num('c');
  const r = num('r');
  const fam = f.get('f');
  if (g === null || m === null || c === null || r === null || fam === undefined) return null;
  const sel = f.get('s') ?? '*';
  const node = f.get('n') ?? '*';
  const price = f.get('p') ?? '*';
  return {
    gpuCount: g,
    gpuMemoryMiB: m,
    families: fam === '*' ? null : fam.split(','),
    cpuCores: c,
    memoryMiB: r,
    nodeName: node === '*' ? null : node,
    nodeSelector:
      sel === '*' ? {} : Object.fromEntries(sel.split(',').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])),
    maxPricePerHour: price === '*' ? null : Number(price),
    timeoutSeconds: num('t'),
    owner: decodeURIComponent(f.get('u') ?? ''),
  };
}
