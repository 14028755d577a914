import { isCertificateError } from '../util/tls-files.js';
import { ApiError, CliError, type FieldProblem } from './errors.js';

/** Every route is under this prefix (src/http/app.ts). */
const API_BASE = '/gpu-workers';

export type Query = Record<string, string | number | undefined>;

export interface ServerEvent {
  readonly event: string;
  readonly data: string;
  readonly id: string | undefined;
}

/** The API over fetch: JSON in and out, its error bodies as ApiError, and server-sent events. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  get<T>(path: string, query?: Query): Promise<T> {
    return this.request<T>('GET', path, { query });
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, { body });
  }

  async request<T>(method: string, path: string, opts: { query?: Query | undefined; body?: unknown } = {}): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await this.fetch(this.url(path, opts.query), {
      method,
      headers,
      ...(opts.body !== undefined && { body: JSON.stringify(opts.body) }),
    });
    const text = await res.text();
    if (!res.ok) throw errorFrom(res.status, text);
    return (text === '' ? null : JSON.parse(text)) as T;
  }

  /** Events from a `text/event-stream` route until the server ends it or `signal` aborts. */
  async *events(path: string, query: Query, signal: AbortSignal): AsyncGenerator<ServerEvent> {
    const res = await this.fetch(this.url(path, query), {
      headers: { authorization: `Bearer ${this.token}`, accept: 'text/event-stream' },
      signal,
    });
    if (!res.ok) throw errorFrom(res.status, await res.text());
    if (res.body === null) return;
    yield* parseEventStream(res.body, signal);
  }

  private url(path: string, query: Query = {}): string {
    const u = new URL(`${this.baseUrl}${API_BASE}${path}`);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) u.searchParams.set(k, String(v));
    return u.toString();
  }

  private async fetch(url: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(url, init);
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      if (isCertificateError(cause?.code)) {
        // fetch here trusts the system's CAs plus NODE_EXTRA_CA_CERTS, which Node reads only at start.
        throw new CliError(
          `the API's TLS certificate at ${this.baseUrl} was not accepted (${cause?.code}): if a private CA signed it, run with NODE_EXTRA_CA_CERTS=/path/to/ca.crt`,
        );
      }
      throw new CliError(`cannot reach the API at ${this.baseUrl}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
    }
  }
}

function errorFrom(status: number, text: string): ApiError {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown; fields?: unknown; request_id?: unknown };
    if (typeof body.message === 'string') {
      return new ApiError(
        status,
        typeof body.error === 'string' ? body.error : String(status),
        body.message,
        Array.isArray(body.fields) ? (body.fields as FieldProblem[]) : [],
        typeof body.request_id === 'string' ? body.request_id : undefined,
      );
    }
  } catch {
    /* not the API's JSON (a proxy's page): fall through */
  }
  return new ApiError(status, String(status), `the API answered ${status}${text ? `: ${text.slice(0, 200)}` : ''}`);
}

/** The event-stream format: fields per line, events separated by a blank line, `:` comments. */
export async function* parseEventStream(body: AsyncIterable<Uint8Array>, signal?: AbortSignal): AsyncGenerator<ServerEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let event = 'message';
  let data: string[] = [];
  let id: string | undefined;
  for await (const chunk of body) {
    if (signal?.aborted) return;
    buffer += decoder.decode(chunk, { stream: true });
    let nl = buffer.search(/\r?\n/);
    while (nl >= 0) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(buffer[nl] === '\r' ? nl + 2 : nl + 1);
      if (line === '') {
        if (data.length > 0) yield { event, data: data.join('\n'), id };
        event = 'message';
        data = [];
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'id') id = value;
      }
      nl = buffer.search(/\r?\n/);
    }
  }
}
