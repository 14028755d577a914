import { isIPv4, isIPv6 } from 'node:net';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ExtractJwt } from 'passport-jwt';
import { RateLimitedError, UnauthorizedError, ValidationError } from '../domain/errors.js';
import { Credentials } from '../services/credentials.js';
import { type RateLimiter, RateLimitRule, type RateLimitVerdict } from '../services/rate-limiter.js';
import { principalOf } from './auth.js';

/**
 * Rate limits, counted in Redis so every replica shares them (services/rate-limiter.ts):
 *   submissions    per user, a batch counting its jobs (IMAGEPOD_RATE_LIMIT_SUBMIT_PER_MIN)
 *   registrations  per client address: the caller has only the shared token (…_REGISTER_PER_MIN)
 *   sign-ins       per client address (…_SESSION_PER_MIN)
 *   refused tokens per client address (…_AUTH_FAILURES_PER_MIN), see limitRefusedTokens
 * Over a limit: 429 `rate_limited` with Retry-After. Limited routes also answer the IETF draft's
 * RateLimit-Limit, -Remaining, -Reset and RateLimit-Policy headers.
 */

export interface RateLimits {
  readonly limiter: RateLimiter;
  readonly windowMs: number;
  readonly submit: number;
  readonly register: number;
  readonly session: number;
  readonly authFailures: number;
}

/** The same extractor passport uses, so what is counted is what was checked. */
const bearer = ExtractJwt.fromAuthHeaderAsBearerToken();

const toSeconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/**
 * Who a request comes from: `req.ip`, which follows IMAGEPOD_TRUST_PROXY. An IPv6 client is
 * counted by its /64, the block one subscriber usually holds, so it cannot rotate addresses.
 */
export function clientAddress(req: Request): string {
  const ip = req.ip ?? req.socket.remoteAddress ?? 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped?.[1] !== undefined) return mapped[1];
  if (isIPv4(ip) || !isIPv6(ip)) return ip;
  return `${expandIPv6(ip).slice(0, 4).join(':')}::/64`;
}

function expandIPv6(ip: string): string[] {
  const [head = '', tail] = ip.split('%')[0]?.split('::') ?? [''];
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((h) => h.toLowerCase().replace(/^0+(?=.)/, ''));
}

function setHeaders(res: Response, v: RateLimitVerdict, windowMs: number): void {
  res.setHeader('RateLimit-Policy', `${v.limit};w=${toSeconds(windowMs)}`);
  res.setHeader('RateLimit-Limit', String(v.limit));
  res.setHeader('RateLimit-Remaining', String(v.remaining));
  res.setHeader('RateLimit-Reset', String(toSeconds(v.resetMs)));
}

function refused(v: RateLimitVerdict, what: string): RateLimitedError {
  const after = toSeconds(v.retryAfterMs);
  return new RateLimitedError(`too many ${what}: at most ${v.limit} per window; retry after ${after} s`, after);
}

interface LimitSpec {
  readonly rule: RateLimitRule;
  /** Per window; 0 turns the limit off. */
  readonly limit: number;
  /** Whose budget the request is counted against. */
  readonly subject: (req: Request) => string;
  /** How much of it the request uses (jobs in a batch); 1 when not given. */
  readonly cost?: (req: Request) => number;
  /** The field to name when one request alone is over the limit. */
  readonly costField?: string;
  /** What is counted, for the message ("sign-ins from this address"). */
  readonly what: string;
}

function limitRequests(limits: RateLimits, spec: LimitSpec): RequestHandler {
  if (spec.limit === 0) return (_req, _res, next) => next();
  return async (req: Request, res: Response, next: NextFunction) => {
    const cost = Math.max(1, spec.cost?.(req) ?? 1);
    if (cost > spec.limit) {
      // Waiting would never help: say so, rather than a 429 a client would retry for ever.
      throw ValidationError.field(spec.costField ?? 'body', `${cost} is over the limit of ${spec.limit} per window: send fewer at a time`);
    }
    const v = await limits.limiter.take(spec.rule, spec.subject(req), spec.limit, cost);
    setHeaders(res, v, limits.windowMs);
    next(v.allowed ? undefined : refused(v, spec.what));
  };
}

/** `POST /jobs` (`one`) and `POST /jobs/batch`: jobs per user; after the route's people guard. */
export function limitSubmissions(limits: RateLimits, route: 'one' | 'batch'): RequestHandler {
  return limitRequests(limits, {
    rule: RateLimitRule.Submit,
    limit: limits.submit,
    subject: (req) => {
      const p = principalOf(req);
      return p.kind === 'user' ? p.userId : p.kind;
    },
    cost: (req) => {
      const jobs = (req.body as { jobs?: unknown } | undefined)?.jobs;
      return route === 'batch' && Array.isArray(jobs) ? jobs.length : 1;
    },
    costField: 'jobs',
    what: 'jobs submitted by this user',
  });
}

/** `POST /nodes/register` and `POST /agents/register`, one budget per client address. */
export function limitRegistrations(limits: RateLimits): RequestHandler {
  return limitRequests(limits, {
    rule: RateLimitRule.Register,
    limit: limits.register,
    subject: clientAddress,
    what: 'registrations from this address',
  });
}

/** `POST /session`: sign-in attempts per client address, successful or not. */
export function limitSignIns(limits: RateLimits): RequestHandler {
  return limitRequests(limits, {
    rule: RateLimitRule.Session,
    limit: limits.session,
    subject: clientAddress,
    what: 'sign-ins from this address',
  });
}

/**
 * Wraps `authenticate`: counts the bearer tokens it refuses per client address, and past the
 * limit answers 429 for the rest of the window to every refused token and to the registration
 * token, right or wrong, so the registration token (the one secret a person picks) cannot be
 * guessed at speed. People's JWTs that verify are never held up, and agent keys (random, checked
 * by hash) are neither counted nor held up, so a flood from a shared address cannot take a fleet
 * offline. A request with a valid credential costs no Redis call here.
 */
export function limitRefusedTokens(limits: RateLimits, authenticate: RequestHandler): RequestHandler {
  if (limits.authFailures === 0) return authenticate;
  const what = 'refused credentials from this address';
  return (req, res, next) => {
    const token = bearer(req);
    if (token === null || Credentials.looksLikeAgentKey(token)) {
      authenticate(req, res, next);
      return;
    }
    const subject = clientAddress(req);
    authenticate(req, res, (err?: unknown) => {
      if (err instanceof UnauthorizedError) {
        limits.limiter
          .take(RateLimitRule.AuthFailures, subject, limits.authFailures)
          .then((v) => next(v.allowed ? err : refused(v, what)), next);
      } else if (err === undefined && req.principal?.kind === 'registrar') {
        limits.limiter
          .peek(RateLimitRule.AuthFailures, subject, limits.authFailures)
          .then((v) => next(v.allowed ? undefined : refused(v, what)), next);
      } else {
        next(err);
      }
    });
  };
}
