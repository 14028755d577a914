import jwt from 'jsonwebtoken';
import { mintToken } from '../cli/mint-token.js';
import type { ApiConfig } from '../config/api-config.js';
import { ConflictError } from '../domain/errors.js';
import type { Role } from '../domain/roles.js';
import type { TokenCreated } from '../domain/schemas/identity.js';

/**
 * Mints people's tokens for admins, the way `npm run token` does, from the API's HS256 secret.
 * An API that verifies with a public key has no way to sign: its tokens come from the identity
 * provider that holds the private key.
 */
export class TokenIssuer {
  constructor(private readonly jwtConfig: ApiConfig['jwt']) {}

  issue(userId: string, role: Role, ttlSeconds: number): TokenCreated {
    const c = this.jwtConfig;
    if (c.kind !== 'secret') {
      throw new ConflictError(
        'this API verifies tokens with a public key, so it cannot mint them: get a token from your identity provider',
        'minting_unavailable',
      );
    }
    const token = mintToken(c.secret, userId, role, `${ttlSeconds}s`, c.issuer, c.audience);
    const exp = (jwt.decode(token) as { exp: number }).exp;
    return { token, user_id: userId, role, expires_at: new Date(exp * 1000).toISOString() };
  }
}
