import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/**
 * Which addresses a webhook may reach. A webhook URL is chosen by a user and fetched by the API,
 * from inside the cluster: without a rule it could read the cloud metadata service, Redis, or any
 * internal endpoint (SSRF). So every address a delivery would connect to must be a public unicast
 * one, unless an admin allow-listed the host name or the address (`IMAGEPOD_WEBHOOK_ALLOW`).
 */

interface Range {
  readonly bytes: Uint8Array;
  readonly prefix: number;
  readonly label: string;
}

/** Parses an IPv4 or IPv6 address into its bytes (4 or 16), or null. */
export function addressBytes(address: string): Uint8Array | null {
  const kind = isIP(address);
  if (kind === 4) return Uint8Array.from(address.split('.').map(Number));
  if (kind !== 6) return null;
  let text = address.toLowerCase();
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // A dotted IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail?.[1]) {
    const v4 = tail[1].split('.').map(Number);
    const hex = (a: number, b: number) => ((a << 8) | b).toString(16);
    text = `${text.slice(0, -tail[1].length)}${hex(v4[0] ?? 0, v4[1] ?? 0)}:${hex(v4[2] ?? 0, v4[3] ?? 0)}`;
  }
  const [head = '', rest] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const fill = rest === undefined ? [] : new Array<string>(8 - headGroups.length - restGroups.length).fill('0');
  const groups = [...headGroups, ...fill, ...restGroups];
  if (groups.length !== 8) return null;
  const out = new Uint8Array(16);
  for (const [i, g] of groups.entries()) {
    const n = Number.parseInt(g, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  return out;
}

function parseCidr(cidr: string, label: string): Range {
  const [addr = '', bits] = cidr.split('/');
  const bytes = addressBytes(addr);
  const prefix = bits === undefined ? (bytes?.length ?? 0) * 8 : Number(bits);
  if (bytes === null || !Number.isInteger(prefix) || prefix < 0 || prefix > bytes.length * 8) {
    throw new Error(`"${cidr}" is not an address or CIDR`);
  }
  return { bytes, prefix, label };
}

function inRange(bytes: Uint8Array, r: Range): boolean {
  if (bytes.length !== r.bytes.length) return false;
  for (let bit = 0; bit < r.prefix; bit += 8) {
    const take = Math.min(8, r.prefix - bit);
    const mask = (0xff << (8 - take)) & 0xff;
    if (((bytes[bit / 8] ?? 0) & mask) !== ((r.bytes[bit / 8] ?? 0) & mask)) return false;
  }
  return true;
}

const range = (label: string) => (cidr: string) => parseCidr(cidr, label);

/** Never reachable by a webhook unless allow-listed: everything but public unicast. */
const DENIED: readonly Range[] = [
  ...['0.0.0.0/8', '::/128'].map(range('unspecified')),
  ...['127.0.0.0/8', '::1/128'].map(range('loopback')),
  ...['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7', 'fec0::/10'].map(range('private')),
  ...['169.254.0.0/16', 'fe80::/10'].map(range('link-local')),
  ...['100.64.0.0/10'].map(range('carrier-grade NAT')),
  ...['224.0.0.0/4', 'ff00::/8'].map(range('multicast')),
  ...[
    '192.0.0.0/24',
    '192.0.2.0/24',
    '192.88.99.0/24',
    '198.18.0.0/15',
    '198.51.100.0/24',
    '203.0.113.0/24',
    '240.0.0.0/4',
    '64:ff9b:1::/48',
    '100::/64',
    '2001::/32',
    '2001:db8::/32',
    // IPv4-compatible (deprecated) and IPv4-translated (SIIT) forms: nothing public answers there.
    '::/96',
    '::ffff:0:0:0/96',
  ].map(range('reserved')),
];

/** IPv6 forms that carry an IPv4 address, which is judged first: mapped, translated, compatible, NAT64, 6to4. */
function embeddedIPv4(b: Uint8Array): Uint8Array | null {
  if (b.length !== 16) return null;
  const zeros = (from: number, to: number) => b.subarray(from, to).every((x) => x === 0);
  if (zeros(0, 10) && b[10] === 0xff && b[11] === 0xff) return b.subarray(12, 16);
  if (zeros(0, 8) && b[8] === 0xff && b[9] === 0xff && b[10] === 0 && b[11] === 0) return b.subarray(12, 16);
  if (zeros(0, 12) && b[12] !== 0) return b.subarray(12, 16);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zeros(4, 12)) return b.subarray(12, 16);
  if (b[0] === 0x20 && b[1] === 0x02) return b.subarray(2, 6);
  return null;
}

/** Why an address may not be reached ('loopback', 'private', ...), or null for a public unicast one. */
export function deniedKind(address: string): string | null {
  const bytes = addressBytes(address);
  if (bytes === null) return 'invalid';
  const v4 = embeddedIPv4(bytes);
  if (v4 !== null) {
    const inner = DENIED.find((r) => inRange(v4, r));
    if (inner !== undefined) return inner.label;
  }
  return DENIED.find((r) => inRange(bytes, r))?.label ?? null;
}

/** The host of a URL as DNS and `isIP` know it: lowercase, no IPv6 brackets, no trailing dot. */
export function hostOf(url: URL): string {
  return url.hostname
    .replace(/^\[(.*)\]$/, '$1')
    .replace(/\.$/, '')
    .toLowerCase();
}

export interface VettedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** Raised when a URL may not be delivered to; its message is shown on the job. */
export class RefusedAddressError extends Error {
  override readonly name = 'RefusedAddressError';
}

export type Resolver = (host: string) => Promise<readonly { address: string; family: number }[]>;

const systemResolver: Resolver = (host) => lookup(host, { all: true, verbatim: true });

export class AddressPolicy {
  private readonly hosts: ReadonlySet<string>;
  private readonly ranges: readonly Range[];

  /** `allow`: host names and CIDRs (or single addresses) an admin lets webhooks reach anyway. */
  constructor(
    allow: readonly string[],
    private readonly resolve: Resolver = systemResolver,
  ) {
    const hosts = new Set<string>();
    const ranges: Range[] = [];
    for (const raw of allow) {
      const entry = raw.trim().toLowerCase().replace(/\.$/, '');
      if (entry === '') continue;
      const addr = entry.split('/')[0] ?? '';
      if (isIP(addr) !== 0) ranges.push(parseCidr(entry, 'allowed'));
      else hosts.add(entry);
    }
    this.hosts = hosts;
    this.ranges = ranges;
  }

  private allowedAddress(address: string): boolean {
    const bytes = addressBytes(address);
    if (bytes === null) return false;
    const v4 = embeddedIPv4(bytes);
    return this.ranges.some((r) => inRange(bytes, r) || (v4 !== null && inRange(v4, r)));
  }

  private problemWith(address: string, host: string): string | null {
    if (this.allowedAddress(address)) return null;
    const kind = deniedKind(address);
    if (kind === null) return null;
    // Which internal address a name resolves to is not the submitter's business: a user could map
    // the internal network by trying names. A literal address is their own input.
    if (host === address) return `${address}, a ${kind} address, which webhooks may not reach`;
    return `${host} resolves to a ${kind} address, which webhooks may not reach`;
  }

  /**
   * At submission: a URL whose host is a literal address webhooks may not reach. Host names are
   * judged at each delivery, when they are resolved.
   */
  literalProblem(url: string): string | null {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return 'not a URL';
    }
    const host = hostOf(parsed);
    if (this.hosts.has(host) || isIP(host) === 0) return null;
    return this.problemWith(host, host);
  }

  /**
   * At each delivery: resolves the host and returns the address to connect to. Every address the
   * name resolves to must pass, so a name with one public and one internal address is refused.
   */
  async vet(url: URL): Promise<VettedAddress> {
    const host = hostOf(url);
    let addresses: readonly { address: string; family: number }[];
    if (isIP(host) !== 0) {
      addresses = [{ address: host, family: isIP(host) }];
    } else {
      try {
        addresses = await this.resolve(host);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? 'lookup failed';
        throw new Error(`cannot resolve ${host} (${code})`);
      }
    }
    const first = addresses[0];
    if (first === undefined) throw new Error(`cannot resolve ${host} (no addresses)`);
    if (!this.hosts.has(host)) {
      for (const a of addresses) {
        const problem = this.problemWith(a.address, host);
        if (problem !== null) throw new RefusedAddressError(problem);
      }
    }
    return { address: first.address, family: first.family === 6 ? 6 : 4 };
  }
}
