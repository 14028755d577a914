/** Redis keeps times as epoch milliseconds in strings; the API shows ISO-8601. */
export function isoOrNull(ms: string | undefined): string | null {
  if (ms === undefined || ms === '') return null;
  const d = new Date(Number(ms));
  // A time outside what Date can hold (a stored 1e20) would make toISOString throw.
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export function iso(ms: string | number | undefined): string {
  return isoOrNull(String(ms ?? 0)) ?? new Date(0).toISOString();
}
