import https from 'node:https';
import tls from 'node:tls';
import type { CallOptions, Reply } from './http.js';

/**
 * `call` over HTTPS with a CA of the test's own: fetch in Node 20 trusts only the system's CAs
 * (and NODE_EXTRA_CA_CERTS, read at process start), so these go through node:https.
 */
export function httpsCall<T = any>(
  base: string,
  method: string,
  path: string,
  opts: CallOptions & { ca?: string } = {},
): Promise<Reply<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  let body: string | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers['content-type'] ??= 'application/json';
  return new Promise((resolve, reject) => {
    // A fresh connection each time (agent: false), so each call sees the certificate served now.
    const req = https.request(`${base}${path}`, { method, headers, agent: false, ...(opts.ca !== undefined && { ca: opts.ca }) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown = text;
        try {
          parsed = text === '' ? null : JSON.parse(text);
        } catch {
          /* not JSON: keep the text */
        }
        const h = new Headers();
        for (const [k, v] of Object.entries(res.headers)) {
          for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) h.append(k, one);
        }
        resolve({ status: res.statusCode ?? 0, body: parsed as T, headers: h, text });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** The serial number of the certificate a new TLS connection to `url` is given (verified against `ca`). */
export function servedSerial(url: string, ca: string, servername = 'localhost'): Promise<string> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: u.hostname, port: Number(u.port), ca, servername }, () => {
      const serial = socket.getPeerCertificate().serialNumber;
      socket.end();
      resolve(serial.toUpperCase());
    });
    socket.on('error', reject);
  });
}
