import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { DomainError, IdempotencyInProgressError, UnprocessableError, ValidationError } from '../domain/errors.js';
import { idempotencyKey } from '../domain/schemas/job.js';
import type { RedisClient } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';

/**
 * `Idempotency-Key` on submissions, as Stripe does it: the first request with a key submits and
 * its answer is remembered for a day; a repeat from the same user with the same key and body gets
 * that answer again (`Idempotent-Replayed: true`), never a second job or a second budget hold.
 *
 * Crash safety comes from choosing the job ids before anything is written: the key's record
 * holds them from the start, under a lease. If the request that owns the key dies (the API is
 * killed, Redis goes away) the lease runs out and the client's retry takes over with the same
 * ids; the job service then finishes whatever the first attempt left half done. A second set of
 * jobs cannot appear, because no attempt on the key submits any other ids.
 */
export const IDEMPOTENCY_HEADER = 'Idempotency-Key';
/** How long a key is remembered after its first request. */
export const IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000;

/** The key from the header's value; undefined when there is none; a 400 naming the header when it is not 1-255 printable ASCII. */
export function parseIdempotencyKey(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const parsed = idempotencyKey.safeParse(value);
  if (!parsed.success) throw ValidationError.field(IDEMPOTENCY_HEADER, '1-255 printable ASCII characters');
  return parsed.data;
}

/** JSON with object keys sorted at every level: equal bodies give equal text whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

/** What a repeat must match: the route and the canonical body, hashed. */
export const fingerprintOf = (request: IdempotentRequest): string => sha256(`${request.kind}\n${canonicalJson(request.body)}`);

/** Which route and what it was asked: the same key with a different one is refused. */
export interface IdempotentRequest {
  /** The route (`job`, `batch`): a key used on one is not valid on the other. */
  readonly kind: string;
  /** The parsed body. */
  readonly body: unknown;
  /** How many jobs it submits (ids are chosen for them up front). */
  readonly jobs: number;
}

/** The ids a submission must use, and whether an earlier attempt may have made some of them. */
export interface FixedIds {
  readonly ids: readonly string[];
  readonly resume: boolean;
}

export interface Answer<T> {
  readonly status: number;
  readonly body: T;
  /** A repeat: this is the first request's answer, remembered. */
  readonly replayed: boolean;
}

type Begin = ['new'] | ['mismatch'] | ['done', string, string] | ['busy', string] | ['resume', string];

export class Idempotency {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly leaseMs: number,
    private readonly logger: Logger,
  ) {}

  /**
   * Submits with `submit` at most once per user and key. Without a key, just submits. A fresh
   * submission answers `status`; a repeat answers as the first one did. A refused submission (a
   * 4xx: nothing was made) forgets the key, so it may be sent again; any other failure ends the
   * lease at once, so the client's retry takes over and completes what was begun.
   */
  async submit<T>(
    userId: string,
    key: string | undefined,
    request: IdempotentRequest,
    status: number,
    submit: (fixed: FixedIds | undefined) => Promise<T>,
  ): Promise<Answer<T>> {
    if (key === undefined) return { status, body: await submit(undefined), replayed: false };
    const recordKey = this.keys.idempotency(userId, sha256(key));
    const token = randomBytes(12).toString('hex');
    const fresh = Array.from({ length: request.jobs }, () => randomUUID());
    const begun = (await runScript(
      this.redis,
      ScriptName.IdempotencyBegin,
      [recordKey],
      [fingerprintOf(request), fresh.join(','), token, Date.now(), this.leaseMs, IDEMPOTENCY_TTL_MS],
    )) as Begin;
    switch (begun[0]) {
      case 'mismatch':
        throw new UnprocessableError(
          `this ${IDEMPOTENCY_HEADER} was used for a different request in the last 24 hours; use a new key`,
          'idempotency_key_reused',
        );
      case 'done':
        // Stored by `done` below from a JSON answer of ours.
        return { status: Number(begun[1]), body: JSON.parse(begun[2]) as T, replayed: true };
      case 'busy':
        throw new IdempotencyInProgressError(Math.max(1, Math.ceil(Number(begun[1]) / 1000)));
      case 'new':
      case 'resume': {
        const resume = begun[0] === 'resume';
        const ids = resume ? begun[1].split(',') : fresh;
        if (resume)
          this.logger.info({ jobIds: ids.slice(0, 10), jobs: ids.length }, 'idempotency: resuming a submission whose first request died');
        let body: T;
        try {
          body = await submit({ ids, resume });
        } catch (err) {
          // A refusal (bad input, over budget) made nothing: forget the key. After a resume some
          // jobs may exist already, so the key is kept for the next retry to finish them.
          const refused = err instanceof DomainError && err.status < 500 && !resume;
          await this.end(recordKey, token, refused ? 'release' : 'yield').catch(() => {});
          throw err;
        }
        // If this fails the jobs are submitted but the answer is not remembered: the retry after
        // the lease resumes, finds them all queued, and answers with them as they are then.
        await this.end(recordKey, token, 'done', status, JSON.stringify(body)).catch(() => {});
        return { status, body, replayed: false };
      }
    }
  }

  private async end(recordKey: string, token: string, op: 'done' | 'release' | 'yield', status = 0, body = ''): Promise<void> {
    await runScript(this.redis, ScriptName.IdempotencyEnd, [recordKey], [token, op, status, body]);
  }
}
