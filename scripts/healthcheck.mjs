#!/usr/bin/env node
/**
 * The container images' HEALTHCHECK (slim images have no curl): exits 0 when the process in this
 * container answers, 1 otherwise. Plain Node, no dependencies.
 *
 *   node scripts/healthcheck.mjs api     GET /readyz on IMAGEPOD_PORT (8000); HTTPS when the API
 *                                        serves it (IMAGEPOD_TLS_CERT_FILE), its own certificate
 *                                        not verified: this only asks whether it answers
 *   node scripts/healthcheck.mjs agent   GET /metrics on IMAGEPOD_AGENT_METRICS_PORT (9464); healthy
 *                                        when metrics are off, since there is nothing to ask
 */
import { request as httpGet } from 'node:http';
import { request as httpsGet } from 'node:https';

const env = process.env;
const ANY_ADDRESS = new Set(['', '0.0.0.0', '::', '[::]']);

function target(kind) {
  if (kind === 'api') {
    const host = ANY_ADDRESS.has(env.IMAGEPOD_HOST ?? '') ? '127.0.0.1' : env.IMAGEPOD_HOST;
    return { tls: Boolean(env.IMAGEPOD_TLS_CERT_FILE), host, port: Number(env.IMAGEPOD_PORT || 8000), path: '/readyz' };
  }
  if (kind === 'agent') {
    const port = env.IMAGEPOD_AGENT_METRICS_PORT || '9464';
    if (port === 'off' || port === '0') return null;
    const host = ANY_ADDRESS.has(env.IMAGEPOD_AGENT_METRICS_HOST ?? '') ? '127.0.0.1' : env.IMAGEPOD_AGENT_METRICS_HOST;
    return { tls: false, host, port: Number(port), path: '/metrics' };
  }
  process.stderr.write('usage: healthcheck.mjs api|agent\n');
  process.exit(2);
}

const t = target(process.argv[2]);
if (t === null) process.exit(0);
const get = t.tls ? httpsGet : httpGet;
const req = get({ host: t.host, port: t.port, path: t.path, timeout: 4000, rejectUnauthorized: false }, (res) => {
  res.resume();
  process.stdout.write(`${t.path}: ${res.statusCode}\n`);
  process.exit(res.statusCode === 200 ? 0 : 1);
});
req.on('timeout', () => req.destroy(new Error('no answer in 4 s')));
req.on('error', (err) => {
  process.stdout.write(`${t.path}: ${err.message}\n`);
  process.exit(1);
});
req.end();
