/**
 * The API as a process of its own, for benchmarks that load it over HTTP from another process
 * (so the load generator and the API do not share a core). Prints its URL on stdout.
 */
import { pino } from 'pino';
import { loadApiConfig } from '../src/config/api-config.js';
import { startApiServer } from '../src/server.js';

const api = await startApiServer(loadApiConfig(process.env), pino({ level: process.env.IMAGEPOD_LOG_LEVEL ?? 'silent' }));
process.stdout.write(`${api.url}\n`);
process.on('SIGTERM', () => {
  api.close().then(() => process.exit(0));
});
