import { z } from 'zod';
import { isoTime } from './common.js';

/** `GET /users/{id}/webhook-secret` and its rotation: the secret that signs the user's job webhooks. */
export const webhookSecretView = z.object({
  user_id: z.string(),
  secret: z.string().describe('whsec_...: verify the signature header of each delivery with it'),
  created_at: isoTime(),
});
export type WebhookSecretView = z.infer<typeof webhookSecretView>;
