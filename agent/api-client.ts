import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { AgentConfig as ControlPlaneConfig } from '../src/domain/schemas/agent.js';
import type { JobLogAppend, JobStatusReport, JobView } from '../src/domain/schemas/job.js';
import type { AgentRegisterBody, HeartbeatAck, HeartbeatBody, NodeView } from '../src/domain/schemas/node.js';

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

export interface RetryPolicy {
  /** Give up after this long; Infinity keeps trying until `signal` aborts. */
  readonly deadlineMs: number;
  readonly signal?: AbortSignal | undefined;
}

export const RETRY_BRIEFLY: RetryPolicy = { deadlineMs: 10_000 };

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
 * jittered backoff up to a deadline; 4xx answers are final and surface as ApiError.
 */
export class ApiClient {
  private apiKey: string | null = null;

  constructor(
    private readonly baseUrl: string,
    private readonly logger: Logger,
  ) {}

  setApiKey(key: string): void {
    this.apiKey = key;
  }

  async register(body: AgentRegisterBody, registrationToken: string): Promise<Registered> {
    return this.request<Registered>('POST', '/agents/register', body, { deadlineMs: 60_000 }, registrationToken);
  }

  async config(agentId: string, retry = RETRY_BRIEFLY): Promise<ControlPlaneConfig> {
    return this.request<ControlPlaneConfig>('GET', `/agents/${agentId}/config`, undefined, retry);
  }

  async heartbeat(nodeId: string, body: HeartbeatBody): Promise<HeartbeatAck> {
    return this.request<HeartbeatAck>('POST', `/nodes/${nodeId}/heartbeat`, body, { deadlineMs: 3_000 });
  }

  async reportStatus(jobId: string, body: JobStatusReport, retry: RetryPolicy): Promise<JobView> {
    return this.request<JobView>('POST', `/jobs/${jobId}/status`, body, retry);
  }

  async appendLogs(jobId: string, body: JobLogAppend, retry: RetryPolicy): Promise<void> {
    await this.request('POST', `/jobs/${jobId}/logs`, body, retry);
  }

  async request<T>(method: string, path: string, body: unknown, retry: RetryPolicy, token?: string): Promise<T> {
    const bearer = token ?? this.apiKey;
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      retry.signal?.throwIfAborted();
      let transient: string;
      try {
        const res = await fetch(`${this.baseUrl}/gpu-workers${path}`, {
          method,
          headers: {
            ...(bearer ? { authorization: `Bearer ${bearer}` } : {}),
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.any([AbortSignal.timeout(REQUEST_TIMEOUT_MS), ...(retry.signal ? [retry.signal] : [])]),
        });
        const text = await res.text();
        const parsed = text === '' ? null : safeJson(text);
        if (res.ok) return parsed as T;
        const err = parsed as { error?: string; message?: string } | null;
        if (res.status < 500 && res.status !== 429) {
          throw new ApiError(res.status, err?.error ?? 'error', err?.message ?? `HTTP ${res.status}`);
        }
        transient = `HTTP ${res.status}${err?.message ? `: ${err.message}` : ''}`;
      } catch (e) {
        if (e instanceof ApiError) throw e;
        if (retry.signal?.aborted) throw e;
        transient = (e as Error).message;
      }
      const waited = Date.now() - started;
      if (waited >= retry.deadlineMs) {
        throw new ApiUnreachableError(`${method} ${path}: ${transient} (gave up after ${Math.round(waited / 1000)} s)`);
      }
      const delay = Math.min(5_000, 100 * 2 ** Math.min(attempt, 6)) * (0.5 + Math.random() / 2);
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
