import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A client that submits the way the README tells careful clients to: one Idempotency-Key per
 * logical job, and retrying with the same key on 503 (any 5xx), on 409 `idempotency_in_progress`,
 * on 429 and on network errors (the API restarting, a request that timed out), after `Retry-After`.
 * Every answer is written down with what the test was doing at that moment (its `phase`).
 */
export interface Answer {
  readonly status: number | 'network';
  readonly phase: string;
  readonly retryAfter: string | null;
  /** The JSON `error` code, when the body was a JSON error. */
  readonly error: string | null;
}

export interface Submission {
  readonly key: string;
  readonly name: string;
  /** The job, once an answer was 2xx. */
  id: string | null;
  readonly answers: Answer[];
}

export class CarefulClient {
  readonly submissions: Submission[] = [];

  constructor(
    /** The API's base URL with `/gpu-workers`. */
    private readonly base: () => string,
    private readonly token: string,
    /** What the test is doing now ("redis away", "api killed"): recorded with each answer. */
    private readonly phase: () => string,
    private readonly giveUpAfterMs = 60_000,
  ) {}

  /** Submits `body` under `key` until an answer is 2xx (or a 4xx that is not worth retrying). */
  async submit(key: string, body: Record<string, unknown> & { job_name: string }): Promise<Submission> {
    const s: Submission = { key, name: body.job_name, id: null, answers: [] };
    this.submissions.push(s);
    const until = Date.now() + this.giveUpAfterMs;
    while (Date.now() < until) {
      const phase = this.phase();
      let res: Response;
      try {
        res = await fetch(`${this.base()}/jobs/`, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json', 'idempotency-key': key },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(10_000),
        });
      } catch {
        s.answers.push({ status: 'network', phase, retryAfter: null, error: null });
        await sleep(100 + Math.random() * 100);
        continue;
      }
      const text = await res.text().catch(() => '');
      let json: { id?: string; error?: string } | null = null;
      try {
        json = JSON.parse(text) as { id?: string; error?: string };
      } catch {
        /* not JSON: recorded as such */
      }
      const retryAfter = res.headers.get('retry-after');
      s.answers.push({ status: res.status, phase, retryAfter, error: typeof json?.error === 'string' ? json.error : null });
      if (res.status >= 200 && res.status < 300) {
        s.id = json?.id ?? null;
        return s;
      }
      if (res.status !== 409 && res.status !== 429 && res.status < 500) return s;
      const wait = Math.min(Number(retryAfter ?? '0') || 0.1, 3);
      await sleep(wait * 1000 * (0.5 + Math.random() * 0.5));
    }
    return s;
  }
}

/** The figures a fault test reports: submissions, acknowledged, 5xx by status and phase. */
export function tally(subs: readonly Submission[]): {
  submissions: number;
  acknowledged: number;
  attempts: number;
  byStatus: Record<string, number>;
  byPhase: Record<string, Record<string, number>>;
} {
  const byStatus: Record<string, number> = {};
  const byPhase: Record<string, Record<string, number>> = {};
  let attempts = 0;
  for (const s of subs) {
    for (const a of s.answers) {
      attempts++;
      const st = String(a.status);
      byStatus[st] = (byStatus[st] ?? 0) + 1;
      const p = byPhase[a.phase] ?? {};
      p[st] = (p[st] ?? 0) + 1;
      byPhase[a.phase] = p;
    }
  }
  return { submissions: subs.length, acknowledged: subs.filter((s) => s.id !== null).length, attempts, byStatus, byPhase };
}
