import { type Logger, pino } from 'pino';

/**
 * Structured JSON logs. Anything that could carry a credential is redacted at the source, so a
 * log line never holds a token, an API key or a secret whatever a caller sends.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'authorization',
  'api_key',
  'token',
  'password',
  '*.api_key',
  '*.token',
  '*.password',
  '*.secret',
];

export function createLogger(level: string, name: string): Logger {
  return pino({
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
