/** Text for people: aligned tables, key-value blocks, and figures in the units people read. */

export type Align = 'left' | 'right';

/** Columns padded to their widest cell, two spaces apart; no trailing spaces. */
export function table(headers: string[], rows: string[][], align: Align[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => {
        const w = widths[i] ?? 0;
        return align[i] === 'right' ? c.padStart(w) : c.padEnd(w);
      })
      .join('  ')
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

/** `Key   value` lines; pairs whose value is null or '' are left out. */
export function keyValues(pairs: [string, string | null | undefined][]): string {
  const shown = pairs.filter((p): p is [string, string] => p[1] !== null && p[1] !== undefined && p[1] !== '');
  const width = Math.max(0, ...shown.map(([k]) => k.length));
  return shown
    .map(([k, v]) => `${`${k}:`.padEnd(width + 1)}  ${v}`)
    .join('\n')
    .concat('\n');
}

/** 8192 -> "8 GiB", 1536 -> "1.5 GiB", 500 -> "500 MiB". */
export function mib(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  if (n >= 1024 * 1024) return `${trim(n / (1024 * 1024))} TiB`;
  if (n >= 1024) return `${trim(n / 1024)} GiB`;
  return `${n} MiB`;
}

const trim = (x: number) => String(Math.round(x * 10) / 10);

/** 75_000 -> "1m15s". */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${String(m % 60).padStart(2, '0')}m`;
  return `${Math.floor(h / 24)}d${h % 24}h`;
}

/** How long ago an ISO time was: "3m05s ago". */
export function ago(time: string | null | undefined, now = Date.now()): string {
  if (!time) return '-';
  return `${duration(now - Date.parse(time))} ago`;
}

/** "2026-11-01 12:00:00Z". */
export function shortTime(time: string): string {
  return time.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** "2026-11-01 12:00:00Z (3m05s ago)". */
export function when(time: string | null | undefined, now = Date.now()): string | null {
  if (!time) return null;
  return `${shortTime(time)} (${ago(time, now)})`;
}

/** Money and GPU-hours: up to 4 decimals, no trailing zeros. */
export function amount(n: number | null | undefined): string {
  if (n === null || n === undefined) return '-';
  return String(Math.round(n * 10_000) / 10_000);
}

/** `[#########-----------] 45%` within `width` cells. */
export function progressBar(percent: number, width = 24): string {
  const p = Math.max(0, Math.min(100, percent));
  const full = Math.round((p / 100) * width);
  return `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${Math.round(p)}%`;
}

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
