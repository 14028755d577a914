import { type ApiConfig, describeApiConfig, loadApiConfig } from './config/api-config.js';
import { ConfigError } from './config/env.js';
import { createLogger } from './logger.js';
import { startApiServer } from './server.js';

async function main(): Promise<void> {
  let config: ApiConfig;
  try {
    config = loadApiConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof Error) {
      process.stderr.write(`imagepod-api: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel, 'imagepod-api');
  logger.info({ config: describeApiConfig(config) }, 'starting');
  const api = await startApiServer(config, logger);
  logger.info({ url: api.url }, 'listening');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, ...config.shutdown }, 'shutting down: not ready, finishing open requests');
    api.close(config.shutdown).then(
      () => process.exit(0),
      () => process.exit(1),
    );
    // Requests are cut at delay + timeout; this is for a close that hangs after that.
    setTimeout(() => process.exit(1), config.shutdown.delayMs + config.shutdown.timeoutMs + 10_000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err: unknown) => {
  process.stderr.write(`imagepod-api: failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
