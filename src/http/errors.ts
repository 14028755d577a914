import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { DomainError, NotFoundError, PayloadTooLargeError, UnavailableError, ValidationError } from '../domain/errors.js';

/** body-parser marks its errors with a `type`. */
interface BodyParserError {
  type?: string;
  status?: number;
}

/** ioredis and BullMQ failures that mean "the store is away", which the caller may retry. */
function isStoreUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as Error & { code?: string };
  return (
    e.name === 'MaxRetriesPerRequestError' ||
    e.code === 'ECONNREFUSED' ||
    e.code === 'ECONNRESET' ||
    e.code === 'ETIMEDOUT' ||
    /Connection is closed|Stream isn't writeable|enableOfflineQueue|connect ECONNREFUSED|LOADING|CLUSTERDOWN/.test(e.message)
  );
}

function toDomainError(err: unknown): DomainError | null {
  if (err instanceof DomainError) return err;
  const type = (err as BodyParserError | null)?.type;
  switch (type) {
    case 'entity.too.large':
      return new PayloadTooLargeError('the request body is larger than this server accepts');
    case 'entity.parse.failed':
      return ValidationError.field('body', 'not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return ValidationError.field('body', 'send UTF-8 JSON');
    case 'request.aborted':
      return ValidationError.field('body', 'the request was aborted');
    case 'request.size.invalid':
      return ValidationError.field('body', 'not as long as its Content-Length says');
  }
  // The router could not percent-decode a path parameter (`/jobs/%zz`).
  if (err instanceof URIError) return ValidationError.field('path', 'not valid percent-encoding');
  // Any other request body-parser refused as the client's (one that does not inflate with its
  // Content-Encoding): a 400 naming the body, not a 500.
  const clientFault = err as BodyParserError & { expose?: unknown; code?: unknown };
  if (clientFault.expose === true && clientFault.status === 400) {
    const zlib = typeof clientFault.code === 'string' && clientFault.code.startsWith('Z_');
    return ValidationError.field('body', zlib ? 'does not decompress with its Content-Encoding' : 'could not be read');
  }
  if (isStoreUnavailable(err)) return new UnavailableError('the store is unavailable; retry shortly');
  return null;
}

/** The one place errors become responses: typed errors map to their status, the rest to 500. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const requestId = String(req.id ?? '');
    const domain = toDomainError(err);
    if (domain === null) {
      logger.error({ err, reqId: requestId }, 'unhandled error');
      res.status(500).json({ error: 'internal', message: 'something went wrong on our side', request_id: requestId });
      return;
    }
    if (domain.status >= 500) logger.warn({ reqId: requestId, code: domain.code, cause: (err as Error).message }, domain.message);
    if (domain.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(domain.retryAfterSeconds));
    else if (domain.status === 503) res.setHeader('Retry-After', '1');
    res.status(domain.status).json({
      error: domain.code,
      message: domain.message,
      ...(domain instanceof ValidationError && { fields: domain.fields }),
      request_id: requestId,
    });
  };
}

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new NotFoundError(`route ${req.method} ${req.path}`));
};
