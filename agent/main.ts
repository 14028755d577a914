import { createLogger } from '../src/logger.js';
import { Agent } from './agent.js';
import { type AgentConfig, describeAgentConfig, loadAgentConfig } from './config.js';

async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    config = loadAgentConfig(process.env);
  } catch (err) {
    process.stderr.write(`imagepod-agent: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel, 'imagepod-agent');
  logger.info({ config: describeAgentConfig(config) }, 'starting');
  const agent = await Agent.start(config, logger);

  let stopping = false;
  const stop = (why: string, code: number) => {
    if (stopping) return;
    stopping = true;
    logger.info({ why }, 'shutting down');
    agent.stop().then(
      () => process.exit(code),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM', 0));
  process.on('SIGINT', () => stop('SIGINT', 0));
  agent.fatal.then((why) => {
    logger.error({ why }, 'cannot go on');
    stop(why, 1);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`imagepod-agent: failed to start: ${(err as Error).message}\n`);
  process.exit(1);
});
