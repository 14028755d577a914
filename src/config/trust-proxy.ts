import { isIP } from 'node:net';

/**
 * Which proxies' `X-Forwarded-*` headers the API believes, in the terms of Express's `trust proxy`
 * setting: none (false), every hop (true), the nearest n hops, or the hops whose addresses match.
 * Behind a TLS-terminating Ingress the forwarded protocol is what makes `req.secure` true, so the
 * session cookie is marked `Secure`; believing it from anyone else would let a client claim it.
 */
export type TrustProxy = boolean | number | readonly string[];

/** Names Express (proxy-addr) knows for address ranges. */
const RANGE_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/** `false`, `true`, a hop count, or a comma-separated list of addresses, CIDRs and range names; a string says what is wrong. */
export function parseTrustProxy(value: string): TrustProxy | string {
  const v = value.trim().toLowerCase();
  if (v === 'false' || v === 'off' || v === 'no') return false;
  if (v === 'true' || v === 'on' || v === 'yes') return true;
  if (/^\d{1,3}$/.test(v)) return Number(v);
  const entries = v
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  const bad = entries.filter((e) => !RANGE_NAMES.has(e) && !isAddressOrCidr(e));
  if (entries.length === 0 || bad.length > 0) {
    return `expected false, true, a hop count, or addresses, CIDRs and loopback/linklocal/uniquelocal (bad: ${bad.join(', ') || value})`;
  }
  return entries;
}

function isAddressOrCidr(entry: string): boolean {
  const [addr = '', bits, extra] = entry.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}
