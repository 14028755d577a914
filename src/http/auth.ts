import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import jwt, { type Algorithm, type VerifyOptions } from 'jsonwebtoken';
import passport from 'passport';
import { ExtractJwt, Strategy as JwtStrategy, type StrategyOptionsWithoutRequest } from 'passport-jwt';
import { Strategy as PassportStrategy } from 'passport-strategy';
import type { ApiConfig } from '../config/api-config.js';
import { ForbiddenError, UnauthorizedError } from '../domain/errors.js';
import { isAdmin, type Principal, ROLES } from '../domain/roles.js';
import { Credentials } from '../services/credentials.js';
import { annotateLog } from '../util/log-context.js';
import { checkSameOrigin, readCookie, SESSION_COOKIE, type Sessions } from './session.js';

/**
 * Three kinds of caller, all with `Authorization: Bearer <token>`:
 *   people      a JWT (HS256 with the configured secret, or RS256/ES256/EdDSA with a public key)
 *               whose `sub` is the user id and `role` is user or admin;
 *   agents      an agent API key (`ipk_...`) issued at registration;
 *   first contact  the registration token, only for the register routes.
 */
export const AuthKind = {
  Jwt: 'jwt',
  AgentKey: 'agent-key',
  Registration: 'registration-token',
} as const;
export type AuthKind = (typeof AuthKind)[keyof typeof AuthKind];

const bearer = ExtractJwt.fromAuthHeaderAsBearerToken();

/** A passport strategy that reads the bearer token and hands it to `verify`. */
class BearerStrategy extends PassportStrategy {
  constructor(
    readonly name: string,
    private readonly verify: (token: string) => Promise<Principal | null>,
  ) {
    super();
  }

  override authenticate(req: Request): void {
    const token = bearer(req);
    if (!token) {
      this.fail(401);
      return;
    }
    this.verify(token).then(
      (principal) => (principal ? this.success(principal) : this.fail(401)),
      (err: unknown) => this.error(err as Error),
    );
  }
}

/** The options people's JWTs are verified with: one place for the strategy and for sign-in. */
function jwtVerification(config: ApiConfig): { key: KeyObject; options: VerifyOptions & { algorithms: Algorithm[] } } {
  // A KeyObject made once: given a string, jsonwebtoken tries it as a PEM public key on every
  // verify (and throws, for a secret), which cost more than the rest of a request.
  const key = config.jwt.kind === 'secret' ? createSecretKey(Buffer.from(config.jwt.secret)) : createPublicKey(config.jwt.publicKey);
  return {
    key,
    options: {
      algorithms: [...config.jwt.algorithms] as Algorithm[],
      ...(config.jwt.issuer !== undefined && { issuer: config.jwt.issuer }),
      ...(config.jwt.audience !== undefined && { audience: config.jwt.audience }),
    },
  };
}

function personOf(payload: { sub?: unknown; role?: unknown }): (Principal & { kind: 'user' }) | null {
  const role = ROLES.find((r) => r === payload.role);
  if (typeof payload.sub !== 'string' || payload.sub === '' || payload.sub.length > 128 || role === undefined) return null;
  return { kind: 'user', userId: payload.sub, role };
}

/** Checks a person's token as the JWT strategy would; with its expiry (seconds), for sessions. */
export type PersonTokenVerifier = (token: string) => { principal: Principal & { kind: 'user' }; expiresAt: number | null } | null;

export function personTokenVerifier(config: ApiConfig): PersonTokenVerifier {
  const { key, options } = jwtVerification(config);
  return (token) => {
    try {
      const payload = jwt.verify(token, key, options) as { sub?: unknown; role?: unknown; exp?: unknown };
      const principal = personOf(payload);
      return principal === null ? null : { principal, expiresAt: typeof payload.exp === 'number' ? payload.exp : null };
    } catch {
      return null;
    }
  };
}

export function configurePassport(config: ApiConfig, credentials: Credentials): passport.PassportStatic {
  const p = new passport.Passport() as unknown as passport.PassportStatic;
  const { key, options } = jwtVerification(config);
  const jwtOptions: StrategyOptionsWithoutRequest = {
    jwtFromRequest: bearer,
    // The typings only name string and Buffer; jsonwebtoken takes a KeyObject as it is.
    secretOrKey: key as unknown as Buffer,
    algorithms: options.algorithms,
    ...(config.jwt.issuer !== undefined && { issuer: config.jwt.issuer }),
    ...(config.jwt.audience !== undefined && { audience: config.jwt.audience }),
  };
  p.use(
    AuthKind.Jwt,
    new JwtStrategy(jwtOptions, (payload: { sub?: unknown; role?: unknown }, done) => {
      const principal = personOf(payload);
      return principal === null ? done(null, false) : done(null, principal);
    }),
  );
  p.use(
    new BearerStrategy(AuthKind.AgentKey, async (token) =>
      Credentials.looksLikeAgentKey(token) ? credentials.verifyAgentKey(token) : null,
    ),
  );
  p.use(
    new BearerStrategy(AuthKind.Registration, async (token) => (credentials.isRegistrationToken(token) ? { kind: 'registrar' } : null)),
  );
  return p;
}

declare global {
  namespace Express {
    interface User {}
    interface Request {
      principal?: Principal;
    }
  }
}

/**
 * Which strategies could accept a token, from its shape: agent keys start `ipk_`, JWTs have three
 * dot-separated parts. Asking only those keeps a heartbeat from being checked as a JWT first.
 */
function strategiesFor(token: string | null): AuthKind[] {
  if (token === null) return [AuthKind.Jwt];
  if (Credentials.looksLikeAgentKey(token)) return [AuthKind.AgentKey];
  if (token.split('.').length === 3) return [AuthKind.Jwt, AuthKind.Registration];
  return [AuthKind.Registration];
}

/**
 * Establishes who is calling from whichever credential the bearer token is; 401 when none
 * accepts it. Which callers a route admits is the route's `allow(...)` guard, so a valid
 * credential of the wrong kind gets 403, not 401. Without a bearer token, a dashboard session
 * cookie will do (see session.ts); a bearer token always wins over a cookie.
 */
export function authenticate(p: passport.PassportStatic, sessions?: Sessions): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const token = bearer(req);
    const cookie = token === null && sessions !== undefined ? readCookie(req, SESSION_COOKIE) : null;
    if (cookie !== null && sessions !== undefined) {
      sessions
        .verify(cookie)
        .then((principal) => {
          if (principal === null) throw new UnauthorizedError('the session has ended: sign in again');
          checkSameOrigin(req);
          req.principal = principal;
          annotatePrincipal(principal);
        })
        .then(() => next(), next);
      return;
    }
    p.authenticate(strategiesFor(token), { session: false }, (err: unknown, user: Principal | false) => {
      if (err) return next(err);
      if (!user) {
        const hint = token ? 'the bearer token was not accepted' : 'send Authorization: Bearer <token>';
        return next(new UnauthorizedError(hint));
      }
      req.principal = user;
      annotatePrincipal(user);
      next();
    })(req, res, next);
  };
}

function annotatePrincipal(p: Principal): void {
  if (p.kind === 'user') annotateLog({ userId: p.userId });
  else if (p.kind === 'agent') annotateLog({ nodeId: p.nodeId });
}

export function principalOf(req: Request): Principal {
  if (req.principal === undefined) throw new UnauthorizedError('not authenticated');
  return req.principal;
}

/** Caller kinds a route admits. `user` admits any person (admins too); `admin` only admins. */
export const Caller = {
  User: 'user',
  Admin: 'admin',
  Agent: 'agent',
  Registrar: 'registrar',
} as const;
export type Caller = (typeof Caller)[keyof typeof Caller];

const DESCRIBE: Record<Caller, string> = {
  user: 'a person (JWT)',
  admin: 'an admin (JWT with role admin)',
  agent: 'an agent key',
  registrar: 'the registration token',
};

export function admits(p: Principal, caller: Caller): boolean {
  switch (caller) {
    case Caller.User:
      return p.kind === 'user';
    case Caller.Admin:
      return isAdmin(p);
    case Caller.Agent:
      return p.kind === 'agent';
    case Caller.Registrar:
      return p.kind === 'registrar';
  }
}

/** A route guard: 403 unless the authenticated caller is of one of these kinds. */
export function allow(...callers: Caller[]): RequestHandler {
  const needs = callers.map((c) => DESCRIBE[c]).join(' or ');
  return (req, _res, next) => {
    const p = principalOf(req);
    next(callers.some((c) => admits(p, c)) ? undefined : new ForbiddenError(`this route requires ${needs}`));
  };
}
