import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A certificate authority for tests, made with the openssl command line, and certificates it
 * signs: TLS for real, with nothing but files in a temporary directory.
 */
export interface TestCa {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface IssuedCert {
  readonly certFile: string;
  readonly keyFile: string;
  /** As `getPeerCertificate().serialNumber` shows it: upper-case hex. */
  readonly serialNumber: string;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.error) throw new Error(`openssl is needed for the TLS tests (apt-get install openssl): ${r.error.message}`);
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
}

export function opensslVersion(): string {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error('openssl is needed for the TLS tests (apt-get install openssl)');
  return r.stdout.trim();
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A new self-signed CA in a new directory. */
export function makeTestCa(name = 'ImagePod Test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'imagepod-ca-'));
  openssl(
    [
      'req',
      '-x509',
      ...EC_KEY,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
  return { dir, certFile: join(dir, 'ca.crt'), keyFile: join(dir, 'ca.key') };
}

/**
 * A server certificate signed by `ca` for `hosts` (names and IP addresses), written to
 * `<dir>/<base>.crt` and `.key`, with a random serial number.
 */
export function issueServerCert(
  ca: TestCa,
  opts: { hosts?: readonly string[]; days?: number; dir?: string; base?: string } = {},
): IssuedCert {
  const dir = opts.dir ?? ca.dir;
  const base = opts.base ?? `server-${randomBytes(4).toString('hex')}`;
  const hosts = opts.hosts ?? ['localhost', '127.0.0.1'];
  const san = hosts.map((h) => (/^[\d.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  const ext = join(dir, `${base}.ext`);
  writeFileSync(ext, `subjectAltName=${san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n`);
  // Eight bytes with a leading 1: positive, and printed by Node as these 16 digits (no padding).
  const serial = `1${randomBytes(8).toString('hex').slice(1)}`.toUpperCase();
  openssl(['req', '-new', ...EC_KEY, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${hosts[0] ?? 'localhost'}`], dir);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${base}.csr`,
      '-CA',
      ca.certFile,
      '-CAkey',
      ca.keyFile,
      '-set_serial',
      `0x${serial}`,
      '-days',
      String(opts.days ?? 1),
      '-extfile',
      ext,
      '-out',
      `${base}.crt`,
    ],
    dir,
  );
  return { certFile: join(dir, `${base}.crt`), keyFile: join(dir, `${base}.key`), serialNumber: serial };
}
