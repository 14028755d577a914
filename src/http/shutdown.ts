import type { Server, ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RequestHandler } from 'express';
import type { ShutdownTimes } from '../config/api-config.js';

/**
 * How the API stops without cutting anyone off (a rolling update, a scale-down): /readyz turns
 * 503 at once; after `delayMs` the listener closes; requests in progress finish, each answer
 * saying `Connection: close` so keep-alive clients reconnect elsewhere instead of racing the
 * close; event streams and `?wait=` requests end early (a stream's client reconnects, a wait
 * answers the job as it is then); whatever is still open after `timeoutMs` is cut.
 */
export class Shutdown {
  private readonly controller = new AbortController();
  private readonly inflight = new Set<ServerResponse>();

  /** Aborted when stopping begins: long-lived responses end on it. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get stopping(): boolean {
    return this.controller.signal.aborted;
  }

  /** Middleware: keeps the responses in progress, so that stopping can close their connections. */
  readonly track: RequestHandler = (_req, res, next) => {
    if (this.stopping) res.shouldKeepAlive = false;
    else {
      this.inflight.add(res);
      res.once('close', () => this.inflight.delete(res));
    }
    next();
  };

  async stop(server: Server, times: ShutdownTimes): Promise<void> {
    this.controller.abort();
    // Answers not begun yet close their connection when sent (headers not written can still say so).
    for (const res of this.inflight) if (!res.headersSent) res.shouldKeepAlive = false;
    if (times.delayMs > 0) await sleep(times.delayMs);
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    if (times.timeoutMs <= 0) server.closeAllConnections();
    // A stream that ended went back to idle on a keep-alive connection: close those as they appear.
    const idle = setInterval(() => server.closeIdleConnections(), 100);
    const cut = setTimeout(() => server.closeAllConnections(), Math.max(0, times.timeoutMs));
    try {
      await closed;
    } finally {
      clearInterval(idle);
      clearTimeout(cut);
    }
  }
}
