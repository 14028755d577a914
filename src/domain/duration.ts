/**
 * Durations as people write them on a command line or in a request: `90` or `90s`, `15m`,
 * `12h`, `7d`, or a number of seconds. Shared by the token route's `ttl` and the CLI's
 * `--timeout`, so both read the same way.
 */
const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400 } as const;
const DURATION = /^(\d+(?:\.\d+)?)\s*([smhd]?)$/;

/** Whole seconds, or null when the text is not a duration. */
export function parseDurationSeconds(value: string | number): number | null {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value) : null;
  const m = DURATION.exec(value.trim().toLowerCase());
  if (m?.[1] === undefined) return null;
  const unit = (m[2] || 's') as keyof typeof UNIT_SECONDS;
  return Math.round(Number(m[1]) * UNIT_SECONDS[unit]);
}
