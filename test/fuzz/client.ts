import http, { type IncomingHttpHeaders } from 'node:http';

/**
 * A raw HTTP client for the fuzzer: node:http rather than fetch, because fetch refuses a body on
 * GET, normalizes dot segments and broken percent-encoding out of paths, and sets its own
 * Content-Type. Connections are kept alive and pooled.
 */
export interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  /** A server-sent event stream, closed as soon as it opened. */
  readonly stream: boolean;
}

/** No answer at all: the connection failed or the server took longer than the limit. */
export class NoAnswer extends Error {}

const MAX_TEXT_BYTES = 1 << 20;

export class FuzzClient {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

  constructor(
    private readonly base: URL,
    private readonly timeoutMs: number,
  ) {}

  send(method: string, path: string, headers: Record<string, string>, body: Buffer | null): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      const req = http.request(
        {
          host: this.base.hostname,
          port: this.base.port,
          method,
          path,
          agent: this.agent,
          headers: { ...headers, ...(body !== null && { 'content-length': String(body.length) }) },
        },
        (res) => {
          const stream = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
          if (stream) {
            res.destroy();
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text: '', stream: true });
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            if (size < MAX_TEXT_BYTES) chunks.push(c);
            size += c.length;
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8'), stream: false }),
          );
          res.on('error', (err) => reject(new NoAnswer(`reading the answer: ${err.message}`)));
        },
      );
      req.setTimeout(this.timeoutMs, () => req.destroy(new NoAnswer(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', (err) =>
        reject(err instanceof NoAnswer ? err : new NoAnswer(`${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`)),
      );
      req.end(body ?? undefined);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
