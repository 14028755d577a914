import type { Logger } from 'pino';
import { watchFiles } from '../src/util/file-watch.js';
import { isCertificateError, readCaBundle } from '../src/util/tls-files.js';

/** When `err` is the API's certificate failing verification: what to tell the operator. */
export function certificateProblem(err: unknown, caFile: string | undefined): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !isCertificateError(code)) return null;
  const trusted = caFile === undefined ? "the system's CAs" : `the CAs in ${caFile}`;
  const fix =
    code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? 'use the host name the certificate was issued for in IMAGEPOD_API_URL'
      : 'set IMAGEPOD_API_CA_FILE to the CA that signed it';
  return `the API's TLS certificate was not accepted (${code}: ${(err as Error).message}); checked against ${trusted}: ${fix}`;
}

/**
 * Keeps the agent's trust in step with its CA file: when the file changes (a rotated CA in a
 * mounted config map) and still holds certificates, `apply` gets the new bundle; a broken one is
 * logged and the old trust stays. Returns a function that stops watching.
 */
export function watchApiCa(caFile: string, apply: (ca: string) => void, logger: Logger): () => void {
  return watchFiles([caFile], () => {
    try {
      apply(readCaBundle(caFile, 'IMAGEPOD_API_CA_FILE'));
      logger.info({ caFile }, 'API CA bundle reloaded');
    } catch (err) {
      logger.warn({ err: (err as Error).message }, 'API CA bundle not reloaded: keeping the previous one');
    }
  });
}
