import { createHmac, timingSafeEqual } from 'node:crypto';

/** Where a job's webhook stands: a closed set. A job without a webhook_url shows null. */
export const WebhookStatus = {
  /** The job has not ended yet, or it has and a delivery is still being tried. */
  Pending: 'pending',
  /** The receiver answered 2xx. */
  Delivered: 'delivered',
  /** Every attempt failed, or the URL was refused. */
  Failed: 'failed',
} as const;
export type WebhookStatus = (typeof WebhookStatus)[keyof typeof WebhookStatus];
export const WEBHOOK_STATUSES = Object.values(WebhookStatus) as [WebhookStatus, ...WebhookStatus[]];

export function parseWebhookStatus(s: string | undefined): WebhookStatus | undefined {
  return WEBHOOK_STATUSES.find((v) => v === s);
}

/** One attempt to deliver a job's webhook, as the job shows it. */
export interface WebhookDelivery {
  readonly attempt: number;
  /** ISO time the attempt started. */
  readonly at: string;
  /** The receiver's HTTP status, or null when there was no answer (refused address, timeout, network). */
  readonly status_code: number | null;
  readonly error: string | null;
  readonly duration_ms: number;
}

/** The headers every delivery carries. */
export const WebhookHeader = {
  Event: 'X-ImagePod-Event',
  Delivery: 'X-ImagePod-Delivery',
  Timestamp: 'X-ImagePod-Timestamp',
  Signature: 'X-ImagePod-Signature',
} as const;

export const WEBHOOK_EVENT_JOB_FINISHED = 'job.finished';
export const WEBHOOK_USER_AGENT = 'ImagePod-Webhook/1';

/**
 * The signature scheme: HMAC-SHA256 with the owner's secret over `<unix seconds>.<raw body>`,
 * sent as `sha256=<hex>`. Signing the timestamp with the body lets a receiver refuse replays of an
 * old delivery by checking the timestamp is recent.
 */
export function signWebhook(secret: string, timestampSeconds: number, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(`${timestampSeconds}.${body}`).digest('hex')}`;
}

/** What a receiver does (also used by the tests): constant-time comparison of the expected signature. */
export function verifyWebhook(secret: string, timestamp: string, body: string, signature: string): boolean {
  if (!/^\d{1,12}$/.test(timestamp)) return false;
  const expected = Buffer.from(signWebhook(secret, Number(timestamp), body));
  const given = Buffer.from(signature);
  return expected.length === given.length && timingSafeEqual(expected, given);
}
