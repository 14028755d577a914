import { createHmac, createSecretKey, type KeyObject, randomBytes, randomUUID } from 'node:crypto';
import type { Request } from 'express';
import jwt from 'jsonwebtoken';
import type { Logger } from 'pino';
import type { ApiConfig } from '../config/api-config.js';
import { ForbiddenError } from '../domain/errors.js';
import { type Principal, ROLES } from '../domain/roles.js';

/**
 * Browser sessions for the dashboard and Bull Board. Signing in trades a person's token for a
 * short-lived session token in an HttpOnly, SameSite=Strict cookie, so page scripts never hold a
 * credential and Bull Board needs no token in its URL. The session key differs from the JWT
 * key, so a session token is no bearer token and a bearer token is no session.
 */
export const SESSION_COOKIE = 'imagepod_session';
const AUDIENCE = 'imagepod-session';

/**
 * Each session also has a record in Redis that lives as long as it does, so signing out (or an
 * admin ending a user's sessions) ends it for every copy of the cookie, not just the browser's.
 */
export interface SessionStore {
  save(id: string, userId: string, ttlSeconds: number): Promise<void>;
  exists(id: string): Promise<boolean>;
  remove(id: string): Promise<void>;
}

export class Sessions {
  private readonly key: KeyObject;

  constructor(
    config: ApiConfig,
    logger: Logger,
    private readonly store: SessionStore,
    readonly ttlSeconds = config.session.ttlSeconds,
  ) {
    let secret: Buffer;
    if (config.session.secret !== null) secret = Buffer.from(config.session.secret);
    else if (config.jwt.kind === 'secret') secret = createHmac('sha256', config.jwt.secret).update('imagepod dashboard sessions').digest();
    else {
      secret = randomBytes(32);
      logger.warn('IMAGEPOD_SESSION_SECRET is not set: dashboard sessions last only as long as this API process');
    }
    this.key = createSecretKey(secret);
  }

  /** A session for a person, ending no later than the token it was made from. */
  async mint(p: Principal & { kind: 'user' }, tokenExpiresAt: number | null): Promise<{ token: string; maxAgeSeconds: number }> {
    const now = Math.floor(Date.now() / 1000);
    const ttl = Math.max(1, Math.min(this.ttlSeconds, tokenExpiresAt === null ? this.ttlSeconds : tokenExpiresAt - now));
    const id = randomUUID();
    await this.store.save(id, p.userId, ttl);
    const token = jwt.sign({ sub: p.userId, role: p.role }, this.key, {
      algorithm: 'HS256',
      audience: AUDIENCE,
      expiresIn: ttl,
      jwtid: id,
    });
    return { token, maxAgeSeconds: ttl };
  }

  /** The session's person, or null when the token is not one of ours, has expired or was ended. */
  async verify(token: string): Promise<Principal | null> {
    const claims = this.claims(token);
    if (claims === null || !(await this.store.exists(claims.id))) return null;
    return claims.principal;
  }

  /** Ends the session the token belongs to, if it is one of ours. */
  async end(token: string): Promise<void> {
    const claims = this.claims(token);
    if (claims !== null) await this.store.remove(claims.id);
  }

  private claims(token: string): { id: string; principal: Principal } | null {
    try {
      const payload = jwt.verify(token, this.key, { algorithms: ['HS256'], audience: AUDIENCE }) as {
        sub?: unknown;
        role?: unknown;
        jti?: unknown;
      };
      const role = ROLES.find((r) => r === payload.role);
      if (typeof payload.sub !== 'string' || payload.sub === '' || role === undefined || typeof payload.jti !== 'string') return null;
      return { id: payload.jti, principal: { kind: 'user', userId: payload.sub, role } };
    } catch {
      return null;
    }
  }
}

/** One cookie's value from the request, without a cookie-parsing middleware for one name. */
export function readCookie(req: Request, name: string): string | null {
  const header = req.headers.cookie;
  if (header === undefined) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      // A value that is not valid percent-encoding (planted by a sibling site, say) is no session.
      try {
        return decodeURIComponent(part.slice(eq + 1).trim());
      } catch {
        return null;
      }
    }
  }
  return null;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * A cookie is sent by the browser whoever asks, so a request that changes something on the
 * strength of one must come from a page of this origin: its Origin header (which browsers send
 * with such requests and scripts cannot forge) must name this host.
 */
export function checkSameOrigin(req: Request): void {
  if (SAFE_METHODS.has(req.method)) return;
  const origin = req.get('origin');
  // Behind a proxy that rewrites Host, X-Forwarded-Host names the page's host (IMAGEPOD_TRUST_PROXY).
  const host = req.host;
  let ok = false;
  if (origin !== undefined && host !== undefined) {
    try {
      ok = new URL(origin).host === host;
    } catch {
      ok = false;
    }
  }
  if (!ok) throw new ForbiddenError('a request signed in by cookie must come from this origin (Origin header)');
}

export function sessionCookie(token: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${token}; Path=/; Max-Age=${maxAgeSeconds}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

export function clearedSessionCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}
