/**
 * Typed domain errors. Services throw them; the HTTP error handler maps each to a status code.
 * Messages are written for the person calling the API and never carry secrets or internals.
 */
export interface FieldProblem {
  readonly field: string;
  readonly message: string;
}

export abstract class DomainError extends Error {
  abstract readonly status: number;
  abstract readonly code: string;
  /** Sent as `Retry-After`: seconds after which the same request may succeed. */
  readonly retryAfterSeconds: number | undefined = undefined;
}

export class ValidationError extends DomainError {
  readonly status = 400;
  readonly code = 'validation_failed';
  constructor(readonly fields: readonly FieldProblem[]) {
    super(`invalid request: ${fields.map((f) => `${f.field}: ${f.message}`).join('; ')}`);
  }
  static field(field: string, message: string): ValidationError {
    return new ValidationError([{ field, message }]);
  }
}

export class UnauthorizedError extends DomainError {
  readonly status = 401;
  readonly code = 'unauthorized';
}

export class ForbiddenError extends DomainError {
  readonly status = 403;
  readonly code = 'forbidden';
}

/** A submission its owner's budget cannot cover. */
export class BudgetExceededError extends DomainError {
  readonly status = 402;
  readonly code = 'budget_exceeded';
}

export class NotFoundError extends DomainError {
  readonly status = 404;
  readonly code = 'not_found';
  constructor(what: string) {
    super(`${what} not found`);
  }
}

export class ConflictError extends DomainError {
  readonly status = 409;
  readonly code: string;
  constructor(message: string, code = 'conflict') {
    super(message);
    this.code = code;
  }
}

/** A request with an Idempotency-Key whose first request is still being answered. */
export class IdempotencyInProgressError extends ConflictError {
  override readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super('a request with this Idempotency-Key is still in progress; retry after Retry-After seconds', 'idempotency_in_progress');
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** Well-formed, but it cannot be done as asked; `code` says why. */
export class UnprocessableError extends DomainError {
  readonly status = 422;
  readonly code: string;
  constructor(message: string, code = 'unprocessable') {
    super(message);
    this.code = code;
  }
}

export class PayloadTooLargeError extends DomainError {
  readonly status = 413;
  readonly code = 'payload_too_large';
}

/** Over a rate limit (see src/http/rate-limit.ts); the same request succeeds after Retry-After. */
export class RateLimitedError extends DomainError {
  readonly status = 429;
  readonly code = 'rate_limited';
  override readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number) {
    super(message);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The store is unreachable: the caller may retry. */
export class UnavailableError extends DomainError {
  readonly status = 503;
  readonly code = 'unavailable';
}
