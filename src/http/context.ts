import type { Redis } from 'ioredis';
import type passport from 'passport';
import type { Logger } from 'pino';
import type { ApiConfig } from '../config/api-config.js';
import type { AgentConfig } from '../domain/schemas/agent.js';
import type { Accounting } from '../services/accounting.js';
import type { JobReports } from '../services/job-reports.js';
import type { JobService } from '../services/job-service.js';
import type { NodeRegistry } from '../services/node-registry.js';

/** What route modules are given: services to call, never Redis keys to touch. */
export interface RouteContext {
  readonly config: ApiConfig;
  readonly passport: passport.PassportStatic;
  readonly nodes: NodeRegistry;
  readonly jobs: JobService;
  readonly reports: JobReports;
  readonly accounting: Accounting;
  readonly agentConfig: (nodeId: string, agentId: string) => AgentConfig;
  readonly logger: Logger;
  /** A new connection for one blocking reader (log following); the caller closes it. */
  readonly blockingConnection: () => Redis;
  /** Resolves when the store answers. */
  readonly ping: () => Promise<void>;
}
