/** Redis keeps times as epoch milliseconds in strings; the API shows ISO-8601. */
export function isoOrNull(ms: string | undefined): string | null {
  if (ms === undefined || ms === '') return null;
  const n = Number(ms);
  return Number.isFinite(n) ? new Date(n).toISOString() : null;
}

export function iso(ms: string | number | undefined): string {
  return new Date(Number(ms ?? 0)).toISOString();
}
