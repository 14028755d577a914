import { parseWebhookStatus, type WebhookDelivery, WebhookStatus } from '../../domain/webhooks.js';

/**
 * How a job's webhook deliveries sit in its record (so they expire with it):
 *   webhook_status      pending | delivered | failed (absent: pending)
 *   webhook_attempts    how many attempts were made
 *   webhook_attempt:<n> json {at, status_code, error, duration_ms} of attempt n
 * Written by record-webhook-attempt-1.lua.
 */
export const WEBHOOK_ATTEMPT_FIELD = 'webhook_attempt:';

/** The attempt as stored (its number is the field's). */
export type StoredAttempt = Omit<WebhookDelivery, 'attempt'>;

export function webhookViewOf(
  fields: Readonly<Record<string, string>>,
  hasWebhook: boolean,
): { webhook_status: WebhookStatus | null; webhook_deliveries: WebhookDelivery[] } {
  if (!hasWebhook) return { webhook_status: null, webhook_deliveries: [] };
  const count = Number(fields.webhook_attempts ?? 0);
  const deliveries: WebhookDelivery[] = [];
  for (let n = 1; n <= count; n++) {
    const raw = fields[`${WEBHOOK_ATTEMPT_FIELD}${n}`];
    if (raw === undefined) continue;
    try {
      const a = JSON.parse(raw) as StoredAttempt;
      deliveries.push({ attempt: n, at: a.at, status_code: a.status_code, error: a.error, duration_ms: a.duration_ms });
    } catch {
      /* a damaged entry is left out rather than failing the job's view */
    }
  }
  return { webhook_status: parseWebhookStatus(fields.webhook_status) ?? WebhookStatus.Pending, webhook_deliveries: deliveries };
}
