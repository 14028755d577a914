import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

/**
 * Reading TLS material from files, checked before use: the API's certificate and key, and the CA
 * bundles agents trust. Every error names the variable that pointed at the file and says what is
 * wrong with it, never what is in it.
 */
export class TlsFileError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'TlsFileError';
  }
}

/** What may be logged about a certificate. */
export interface CertificateInfo {
  readonly subject: string;
  readonly issuer: string;
  readonly serialNumber: string;
  readonly validFrom: string;
  readonly validTo: string;
  readonly fingerprint256: string;
  readonly subjectAltName: string | undefined;
}

export interface KeyPair {
  readonly cert: Buffer;
  readonly key: Buffer;
  /** The leaf, the first certificate of the file. */
  readonly info: CertificateInfo;
}

export interface KeyPairFiles {
  readonly certFile: string;
  readonly keyFile: string;
}

/** OpenSSL's and Node's codes for "this peer's certificate is not one to trust here". */
const CERTIFICATE_ERROR_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Whether a TLS client error `code` means the server's certificate failed verification. */
export function isCertificateError(code: string | undefined): boolean {
  return code !== undefined && CERTIFICATE_ERROR_CODES.has(code);
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** A certificate chain (leaf first) and its private key, which must belong together. */
export function readKeyPair(files: KeyPairFiles, names = { cert: 'IMAGEPOD_TLS_CERT_FILE', key: 'IMAGEPOD_TLS_KEY_FILE' }): KeyPair {
  const cert = readOrThrow(files.certFile, names.cert);
  const key = readOrThrow(files.keyFile, names.key);
  const chain = parseCertificates(cert.toString('utf8'), files.certFile, names.cert);
  const leaf = chain[0] as X509Certificate;
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new TlsFileError(names.key, `${files.keyFile} holds no private key that can be read (PEM, not encrypted)`);
  }
  if (!leaf.checkPrivateKey(privateKey)) {
    throw new TlsFileError(names.key, `the key in ${files.keyFile} does not belong to the certificate in ${files.certFile}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new TlsFileError(names.cert, `OpenSSL refuses the pair: ${(err as Error).message}`);
  }
  return { cert, key, info: describeCertificate(leaf) };
}

/** A PEM bundle of one or more CA certificates, as text for `tls` `ca` options. */
export function readCaBundle(path: string, variable: string): string {
  const text = readOrThrow(path, variable).toString('utf8');
  parseCertificates(text, path, variable);
  return text;
}

export function describeCertificate(c: X509Certificate): CertificateInfo {
  return {
    subject: c.subject.replaceAll('\n', ', '),
    issuer: c.issuer.replaceAll('\n', ', '),
    serialNumber: c.serialNumber,
    validFrom: isoDate(c.validFrom),
    validTo: isoDate(c.validTo),
    fingerprint256: c.fingerprint256,
    subjectAltName: c.subjectAltName,
  };
}

/** OpenSSL's `Jan  1 00:00:00 2030 GMT` as ISO-8601, or as given if it cannot be read. */
function isoDate(openssl: string): string {
  const d = new Date(openssl);
  return Number.isNaN(d.getTime()) ? openssl : d.toISOString();
}

function parseCertificates(text: string, path: string, variable: string): X509Certificate[] {
  const blocks = text.match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw new TlsFileError(variable, `${path} holds no PEM certificate`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch {
      throw new TlsFileError(variable, `certificate ${i + 1} in ${path} cannot be parsed`);
    }
  });
}

function readOrThrow(path: string, variable: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new TlsFileError(variable, `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}
