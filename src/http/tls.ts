import type { RequestListener } from 'node:http';
import https from 'node:https';
import type { Logger } from 'pino';
import { type FileWatchOptions, watchFiles } from '../util/file-watch.js';
import { type CertificateInfo, type KeyPair, type KeyPairFiles, readKeyPair } from '../util/tls-files.js';

/** A certificate this close to its end is worth a warning at every load. */
const EXPIRY_WARNING_MS = 14 * 24 * 3600 * 1000;

export interface HttpsServer {
  readonly server: https.Server;
  /** The certificate new connections get. */
  current(): CertificateInfo;
}

/**
 * The API over HTTPS, its certificate and key read from files and read again when they change
 * (cert-manager renewing a Secret, an operator replacing the files): new connections get the new
 * pair, open ones keep theirs, nothing restarts. A new pair that cannot be served (a half-written
 * file, a key of another certificate) is logged and the old one stays until the files change again.
 */
export function createHttpsServer(app: RequestListener, files: KeyPairFiles, logger: Logger, watch?: FileWatchOptions): HttpsServer {
  let pair = readKeyPair(files);
  const server = https.createServer({ cert: pair.cert, key: pair.key }, app);
  logLoaded(logger, pair.info, 'serving HTTPS');

  const reload = () => {
    let next: KeyPair;
    try {
      next = readKeyPair(files);
    } catch (err) {
      logger.warn(
        { err: (err as Error).message, served: pair.info.serialNumber },
        'TLS certificate not reloaded: still serving the previous one',
      );
      return;
    }
    if (next.cert.equals(pair.cert) && next.key.equals(pair.key)) return;
    server.setSecureContext({ cert: next.cert, key: next.key });
    const previous = pair.info.serialNumber;
    pair = next;
    logLoaded(logger, next.info, 'TLS certificate reloaded', { previous });
  };
  const stopWatching = watchFiles([files.certFile, files.keyFile], reload, watch);
  server.once('close', stopWatching);
  return { server, current: () => pair.info };
}

function logLoaded(logger: Logger, info: CertificateInfo, msg: string, extra: Record<string, unknown> = {}): void {
  const left = Date.parse(info.validTo) - Date.now();
  logger.info({ certificate: info, ...extra }, msg);
  if (left < EXPIRY_WARNING_MS) {
    logger.warn(
      { validTo: info.validTo, serialNumber: info.serialNumber },
      left <= 0 ? 'the TLS certificate has expired' : 'the TLS certificate expires soon',
    );
  }
}
