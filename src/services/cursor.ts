import { ValidationError } from '../domain/errors.js';

/**
 * Opaque pagination cursors. A cursor is the position after the last item returned: for
 * time-ordered sets the (score, member) pair, for scans the count of matches already served.
 * Base64url JSON keeps them opaque to clients and lets the shape change later.
 */
export interface ScoreCursor {
  readonly score: number;
  readonly member: string;
}

export function encodeCursor(value: ScoreCursor | { readonly offset: number }): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decode(cursor: string): unknown {
  try {
    return JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw ValidationError.field('cursor', 'not a cursor this API returned');
  }
}

export function decodeScoreCursor(cursor: string | undefined): ScoreCursor | undefined {
  if (cursor === undefined) return undefined;
  const v = decode(cursor) as Partial<ScoreCursor> | null;
  if (typeof v?.score !== 'number' || typeof v.member !== 'string') {
    throw ValidationError.field('cursor', 'not a cursor this API returned');
  }
  return { score: v.score, member: v.member };
}

export function decodeOffsetCursor(cursor: string | undefined): number {
  if (cursor === undefined) return 0;
  const v = decode(cursor) as { offset?: unknown } | null;
  if (typeof v?.offset !== 'number' || !Number.isInteger(v.offset) || v.offset < 0) {
    throw ValidationError.field('cursor', 'not a cursor this API returned');
  }
  return v.offset;
}
