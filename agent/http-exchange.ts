import http from 'node:http';
import https from 'node:https';

export interface Exchange {
  readonly status: number;
  readonly text: string;
  /** The answer's Retry-After (seconds or an HTTP date) in ms from now; null without one. */
  readonly retryAfterMs: number | null;
}

export function parseRetryAfter(value: string | undefined, now = Date.now()): number | null {
  if (value === undefined || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  // An HTTP date names its day and month; a bare number that is not whole seconds is no date.
  if (!/[A-Za-z]/.test(value)) return null;
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/**
 * One HTTP request and its whole answer, over a pool of kept-alive connections. node:http costs a
 * fraction of the CPU of fetch() per request, which matters on the claim path of a busy agent.
 */
export class HttpExchanger {
  private agent: http.Agent;
  private readonly request: typeof http.request;
  private readonly tls: boolean;
  /** Pools replaced by a new CA, closed once the requests they carry are surely over. */
  private readonly retired = new Set<http.Agent>();

  /** `ca`: the PEM bundle an https API's certificate must chain to; absent, the system's CAs. */
  constructor(baseUrl: string, ca?: string) {
    this.tls = new URL(baseUrl).protocol === 'https:';
    this.agent = this.pool(ca);
    this.request = this.tls ? https.request : http.request;
  }

  /**
   * Trusts `ca` from the next request on. New connections go through a new pool; the old pool's
   * requests finish on their connections and the pool is closed after the longest request time.
   */
  setCa(ca: string, closeOldAfterMs = 60_000): void {
    if (!this.tls) return;
    const old = this.agent;
    this.agent = this.pool(ca);
    this.retired.add(old);
    setTimeout(() => {
      old.destroy();
      this.retired.delete(old);
    }, closeOldAfterMs).unref();
  }

  private pool(ca: string | undefined): http.Agent {
    // Kept alive: a busy agent makes many small requests. The https agent sets SNI from the host.
    return this.tls
      ? new https.Agent({ keepAlive: true, maxSockets: 16, ...(ca !== undefined && { ca }) })
      : new http.Agent({ keepAlive: true, maxSockets: 16 });
  }

  /** Gives up after `timeoutMs` without an answer, or when `signal` aborts. */
  send(
    url: string,
    method: string,
    headers: Record<string, string>,
    body: string | undefined,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Exchange> {
    return new Promise((resolve, reject) => {
      const req = this.request(url, { method, headers, agent: this.agent, ...(signal && { signal }) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            text: Buffer.concat(chunks).toString('utf8'),
            retryAfterMs: parseRetryAfter(res.headers['retry-after']),
          }),
        );
        res.on('error', reject);
      });
      req.on('error', reject);
      // A socket timer, not AbortSignal.timeout(): one fewer signal and timer per request.
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
    for (const old of this.retired) old.destroy();
    this.retired.clear();
  }
}
