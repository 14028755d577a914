/** How figures read on the page: memory in GiB, money, durations and times. */

export function mib(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  if (Math.abs(n) < 1024) return `${Math.round(n)} MiB`;
  const gib = n / 1024;
  return `${gib >= 100 ? gib.toFixed(0) : gib.toFixed(1)} GiB`;
}

export function money(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  if (n === 0) return '0.00';
  return Math.abs(n) < 0.01 ? n.toFixed(4) : n.toFixed(2);
}

export function hours(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  return n < 0.01 && n > 0 ? n.toFixed(4) : n.toFixed(2);
}

export function percent(n: number | null | undefined): string {
  return n === null || n === undefined ? '—' : `${Math.round(n)}%`;
}

/** 42s, 3m 05s, 2h 07m, 3d 4h. */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  const h = Math.floor((s % 86_400) / 3600);
  return h === 0 ? `${Math.floor(s / 86_400)}d` : `${Math.floor(s / 86_400)}d ${h}h`;
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '—';
  const s = (now - Date.parse(iso)) / 1000;
  if (s < 5) return 'just now';
  return `${duration(s)} ago`;
}

export function clock(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay
    ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' })
    : d.toLocaleString([], { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

export function shortId(id: string): string {
  return id.length > 8 ? id.slice(0, 8) : id;
}
