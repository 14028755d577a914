import { z } from 'zod';

/** `POST /session`: a person's token, traded for a session cookie. */
export const sessionBody = z.strictObject({
  token: z.string().min(1).max(8192).describe("a person's JWT"),
});
