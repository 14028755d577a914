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

export class PayloadTooLargeError extends DomainError {
  readonly status = 413;
  readonly code = 'payload_too_large';
}

/** The store is unreachable: the caller may retry. */
export class UnavailableError extends DomainError {
  readonly status = 503;
  readonly code = 'unavailable';
}
