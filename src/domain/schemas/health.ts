import { z } from 'zod';

/** `GET /healthz`: the process answers. */
export const healthView = z.object({ status: z.literal('ok') });
export type HealthView = z.infer<typeof healthView>;

/** `GET /readyz`: 200 when Redis answers, 503 when it does not or when this API is stopping. */
export const readyView = z.object({ status: z.literal('ready'), redis: z.literal('ok') });
export const notReadyView = z.object({
  status: z.literal('not_ready'),
  redis: z.enum(['ok', 'unreachable']),
  stopping: z.boolean().optional().describe('true once this process is shutting down: send new requests elsewhere'),
});
export type ReadyView = z.infer<typeof readyView>;
export type NotReadyView = z.infer<typeof notReadyView>;
