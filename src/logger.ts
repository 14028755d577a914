import { type DestinationStream, type Logger, pino } from 'pino';
import { logMixin } from './util/log-context.js';

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

/** Errors in logs say what went wrong, not where in the code: no stack traces. */
export function errWithoutStack(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const e = err as Error & { code?: unknown };
  return { type: e.name, message: e.message, ...(e.code !== undefined && { code: e.code }) };
}

/** `destination` defaults to stdout; tests pass a stream to read what was logged. */
export function createLogger(level: string, name: string, destination?: DestinationStream): Logger {
  const options = {
    name,
    level,
    serializers: { err: errWithoutStack },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    // The request id, and the job and node a request is about, on every line it causes.
    mixin: logMixin,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
