import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { AgentConfig as ControlPlaneConfig } from '../src/domain/schemas/agent.js';
import type { JobLogAppend, JobStatusReport, JobView } from '../src/domain/schemas/job.js';
import type { AgentRegisterBody, HeartbeatAck, HeartbeatBody, NodeView } from '../src/domain/schemas/node.js';
import { readCaBundle } from '../src/util/tls-files.js';
import { certificateProblem, watchApiCa } from './api-trust.js';
import { HttpExchanger } from './http-exchange.js';

/** The API answered, with an error status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The API could not be reached (or answered 5xx / 429) within the retry budget. */
export class ApiUnreachableError extends Error {
  override name = 'ApiUnreachableError';
}

/** The API's TLS certificate failed verification, where that is final (see RetryPolicy). */
export class ApiCertificateError extends Error {
  override name = 'ApiCertificateError';
}

export interface RetryPolicy {
  /** Give up after this long; Infinity keeps trying until `signal` aborts. */
  readonly deadlineMs: number;
  readonly signal?: AbortSignal | undefined;
  /**
   * A certificate the agent does not trust ends the request at once (ApiCertificateError). For
   * first contact: waiting does not fix a wrong CA. Later requests keep retrying, since a CA file
   * being rotated, or the API's certificate being replaced, heals without a restart.
   */
  readonly failOnCertificateError?: boolean;
}

export const RETRY_BRIEFLY: RetryPolicy = { deadlineMs: 10_000 };
/** The longest Retry-After honoured as given: a misconfigured hour-long one still gets retried. */
const MAX_RETRY_AFTER_MS = 60_000;

export interface Registered {
  agent_id: string;
  node_id: string;
  api_key: string;
  config: ControlPlaneConfig;
  node: NodeView;
}

const REQUEST_TIMEOUT_MS = 15_000;

/**
 * The agent's side of the REST API. Transient failures (network, 5xx, 429) are retried with
 * jittered backoff up to a deadline, and no sooner than the answer's Retry-After; 4xx answers are
 * final and surface as ApiError.
 */
export class ApiClient {
  private apiKey: string | null = null;

  private readonly http: HttpExchanger;
  private readonly caFile: string | undefined;
  private readonly stopWatchingCa: () => void;

  /** `tls.caFile`: a PEM bundle the API's certificate must chain to, re-read when it changes. */
  constructor(
    private readonly baseUrl: string,
    private readonly logger: Logger,
    tls: { readonly caFile?: string | undefined } = {},
  ) {
    this.caFile = tls.caFile;
    const ca = this.caFile === undefined ? undefined : readCaBundle(this.caFile, 'IMAGEPOD_API_CA_FILE');
    this.http = new HttpExchanger(baseUrl, ca);
    this.stopWatchingCa =
      this.caFile === undefined || !baseUrl.startsWith('https:')
        ? () => {}
        : watchApiCa(this.caFile, (next) => this.http.setCa(next), logger);
  }

  /** Closes the kept-alive connections. */
  close(): void {
    this.stopWatchingCa();
    this.http.close();
  }

  setApiKey(key: string): void {
    this.apiKey = key;
  }

  async register(body: AgentRegisterBody, registrationToken: string): Promise<Registered> {
    return this.request<Registered>(
      'POST',
      '/agents/register',
      body,
      { deadlineMs: 60_000, failOnCertificateError: true },
      registrationToken,
    );
  }

  async config(agentId: string, retry = RETRY_BRIEFLY): Promise<ControlPlaneConfig> {
    return this.request<ControlPlaneConfig>('GET', `/agents/${agentId}/config`, undefined, retry);
  }

  async heartbeat(nodeId: string, body: HeartbeatBody): Promise<HeartbeatAck> {
    return this.request<HeartbeatAck>('POST', `/nodes/${nodeId}/heartbeat`, body, { deadlineMs: 3_000 });
  }

  /** Reports a job's status; reports made within a few milliseconds travel in one request. */
  async reportStatus(jobId: string, body: JobStatusReport, retry: RetryPolicy): Promise<JobView> {
    return this.reports.add(jobId, body, retry);
  }

  private readonly reports = new ReportBatcher(this);

  async appendLogs(jobId: string, body: JobLogAppend, retry: RetryPolicy): Promise<void> {
    await this.request('POST', `/jobs/${jobId}/logs`, body, retry);
  }

  async request<T>(method: string, path: string, body: unknown, retry: RetryPolicy, token?: string): Promise<T> {
    const bearer = token ?? this.apiKey;
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      retry.signal?.throwIfAborted();
      let transient: string;
      // How long the API asked us to wait (429 over a rate limit, 503 while Redis is away).
      let asked: number | null = null;
      try {
        const res = await this.http.send(
          `${this.baseUrl}/gpu-workers${path}`,
          method,
          {
            ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          body === undefined ? undefined : JSON.stringify(body),
          REQUEST_TIMEOUT_MS,
          retry.signal,
        );
        const text = res.text;
        const parsed = text === '' ? null : safeJson(text);
        if (res.status >= 200 && res.status < 300) return parsed as T;
        const err = parsed as { error?: string; message?: string } | null;
        if (res.status < 500 && res.status !== 429) {
          throw new ApiError(res.status, err?.error ?? 'error', err?.message ?? `HTTP ${res.status}`);
        }
        transient = `HTTP ${res.status}${err?.message ? `: ${err.message}` : ''}`;
        asked = res.retryAfterMs;
      } catch (e) {
        if (e instanceof ApiError) throw e;
        if (retry.signal?.aborted) throw e;
        const certificate = certificateProblem(e, this.caFile);
        if (certificate !== null && retry.failOnCertificateError) throw new ApiCertificateError(`${method} ${path}: ${certificate}`);
        transient = certificate ?? (e as Error).message;
      }
      const waited = Date.now() - started;
      if (waited >= retry.deadlineMs) {
        throw new ApiUnreachableError(`${method} ${path}: ${transient} (gave up after ${Math.round(waited / 1000)} s)`);
      }
      const backoff = Math.min(5_000, 100 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
      // Asking again before Retry-After only earns another refusal; a little jitter spreads the
      // agents that were refused together (many nodes behind one address, say).
      const delay = asked === null ? backoff : Math.max(backoff, Math.min(asked, MAX_RETRY_AFTER_MS) * (1 + Math.random() / 10));
      if (asked !== null && waited + delay > retry.deadlineMs) {
        throw new ApiUnreachableError(
          `${method} ${path}: ${transient} (asked to retry in ${Math.ceil(asked / 1000)} s, past this request's deadline)`,
        );
      }
      if (attempt === 2) this.logger.warn({ path, reason: transient }, 'API not answering; retrying');
      await sleep(Math.min(delay, Math.max(0, retry.deadlineMs - waited)), undefined, { signal: retry.signal }).catch(() => {});
    }
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return { message: text.slice(0, 200) };
  }
}

type BatchResult =
  | { job_id: string; ok: true; job: JobView }
  | { job_id: string; ok: false; status: number; error: string; message: string };

interface PendingReport {
  readonly jobId: string;
  readonly body: JobStatusReport;
  readonly until: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (v: JobView) => void;
  readonly reject: (e: unknown) => void;
}

/** How long reports wait for company while a batch is out, at most. */
const BATCH_WINDOW_MS = 20;
const BATCH_MAX = 100;

/**
 * Gathers status reports and sends them as one `POST /jobs/status/batch`: a busy agent says what
 * it has to say in far fewer requests. With no batch out, reports made in the same tick (a batch
 * claim's) go at once; while one is out, the next gathers until it returns (or the window ends),
 * so batches grow with load and an idle agent's report waits for nothing. Each report keeps its
 * own answer, retry deadline and abort signal.
 */
class ReportBatcher {
  private pending: PendingReport[] = [];
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private inFlight = 0;

  constructor(private readonly client: ApiClient) {}

  add(jobId: string, body: JobStatusReport, retry: RetryPolicy): Promise<JobView> {
    retry.signal?.throwIfAborted();
    return new Promise<JobView>((resolve, reject) => {
      this.pending.push({ jobId, body, until: Date.now() + retry.deadlineMs, signal: retry.signal, resolve, reject });
      if (this.pending.length >= BATCH_MAX) this.flush();
      else if (this.inFlight === 0) this.immediate ??= setImmediate(() => this.flush());
      else this.timer ??= setTimeout(() => this.flush(), BATCH_WINDOW_MS);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    const batch = this.pending.splice(0, BATCH_MAX);
    if (this.pending.length > 0) this.immediate = setImmediate(() => this.flush());
    if (batch.length === 0) return;
    this.inFlight++;
    void this.send(batch, 0).finally(() => {
      this.inFlight--;
      // What gathered meanwhile goes now.
      if (this.inFlight === 0 && this.pending.length > 0) this.flush();
    });
  }

  private async send(items: PendingReport[], attempt: number): Promise<void> {
    const now = Date.now();
    const live = items.filter((it) => {
      if (it.signal?.aborted) it.reject(it.signal.reason ?? new Error('aborted'));
      else if (now > it.until) it.reject(new ApiUnreachableError(`report for job ${it.jobId}: the API did not answer in time`));
      else return true;
      return false;
    });
    if (live.length === 0) return;
    let results: BatchResult[];
    try {
      const res = await this.client.request<{ results: BatchResult[] }>(
        'POST',
        '/jobs/status/batch',
        { reports: live.map((it) => ({ job_id: it.jobId, ...it.body })) },
        { deadlineMs: 0 },
      );
      results = res.results;
    } catch (err) {
      if (err instanceof ApiError) {
        for (const it of live) it.reject(err);
        return;
      }
      // The API is away: try again after a while, each report until its own deadline.
      const delay = Math.min(5000, 100 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
      await sleep(delay);
      return this.send(live, attempt + 1);
    }
    for (const [i, it] of live.entries()) {
      const r = results[i];
      if (r === undefined) it.reject(new ApiError(500, 'error', 'the API did not answer this report'));
      else if (r.ok) it.resolve(r.job);
      else it.reject(new ApiError(r.status, r.error, r.message));
    }
  }
}
