import { AsyncLocalStorage } from 'node:async_hooks';

/** What every log line written while serving one request carries, whichever module writes it. */
export interface LogFields {
  reqId?: string;
  jobId?: string;
  nodeId?: string;
  userId?: string;
}

const storage = new AsyncLocalStorage<LogFields>();

/** Runs `fn` (a request's handling) with its own log fields. */
export function withLogFields<T>(fields: LogFields, fn: () => T): T {
  return storage.run({ ...fields }, fn);
}

/**
 * Runs `fn` outside any request: for work one request starts that outlives it or serves others
 * (a shared cache's computation, a connection made on first use), so its lines do not carry that
 * request's ids.
 */
export function outsideRequest<T>(fn: () => T): T {
  return storage.exit(fn);
}

/** Adds ids learnt along the way (the job a route names, the node an agent key belongs to). */
export function annotateLog(fields: LogFields): void {
  const store = storage.getStore();
  if (store !== undefined) Object.assign(store, fields);
}

/** pino's `mixin`: the current request's fields on every line. */
export function logMixin(): LogFields {
  return { ...storage.getStore() };
}
