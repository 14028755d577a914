import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { signWebhook, WEBHOOK_EVENT_JOB_FINISHED, WEBHOOK_USER_AGENT, WebhookHeader } from '../../domain/webhooks.js';
import { type AddressPolicy, RefusedAddressError, type VettedAddress } from './address-policy.js';

/** How one attempt went. `refused`: the address may not be reached, so trying again is pointless. */
export interface AttemptOutcome {
  readonly statusCode: number | null;
  readonly error: string | null;
  readonly durationMs: number;
  readonly delivered: boolean;
  readonly refused: boolean;
}

/** Answers every lookup with the address that was vetted, so DNS cannot change between check and connect. */
function pinnedLookup(vetted: VettedAddress): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address: vetted.address, family: vetted.family }]);
    else callback(null, vetted.address, vetted.family);
  };
}

/**
 * Sends one signed delivery: resolves and vets the host, connects to the vetted address, and
 * follows no redirects. Only a 2xx answer within the time limit counts as delivered.
 */
export class WebhookSender {
  constructor(
    private readonly policy: AddressPolicy,
    private readonly timeoutMs: number,
  ) {}

  private get limitText(): string {
    return `${Math.round(this.timeoutMs / 100) / 10} s`;
  }

  /** `deliveryId` names the delivery (the same on every attempt), for receivers to drop repeats. */
  async send(urlText: string, secret: string, body: string, deliveryId: string): Promise<AttemptOutcome> {
    const started = Date.now();
    const done = (statusCode: number | null, error: string | null, refused = false): AttemptOutcome => ({
      statusCode,
      error,
      durationMs: Date.now() - started,
      delivered: error === null && statusCode !== null && statusCode >= 200 && statusCode < 300,
      refused,
    });
    let url: URL;
    let vetted: VettedAddress;
    let lookupTimer: NodeJS.Timeout | undefined;
    try {
      url = new URL(urlText);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') return done(null, 'only http and https URLs', true);
      // The time limit covers the name lookup too.
      const late = new Promise<never>((_, reject) => {
        lookupTimer = setTimeout(() => reject(new Error(`no answer within ${this.limitText}`)), this.timeoutMs);
      });
      vetted = await Promise.race([this.policy.vet(url), late]);
    } catch (err) {
      return done(null, (err as Error).message, err instanceof RefusedAddressError);
    } finally {
      clearTimeout(lookupTimer);
    }
    const remainingMs = Math.max(1, this.timeoutMs - (Date.now() - started));
    const timestamp = Math.floor(Date.now() / 1000);
    const headers = {
      'Content-Type': 'application/json',
      'Content-Length': String(Buffer.byteLength(body)),
      'User-Agent': WEBHOOK_USER_AGENT,
      [WebhookHeader.Event]: WEBHOOK_EVENT_JOB_FINISHED,
      // The same on every attempt of one job's delivery: receivers drop repeats by it.
      [WebhookHeader.Delivery]: deliveryId,
      [WebhookHeader.Timestamp]: String(timestamp),
      [WebhookHeader.Signature]: signWebhook(secret, timestamp, body),
    };
    const request = url.protocol === 'https:' ? https.request : http.request;
    return new Promise<AttemptOutcome>((resolve) => {
      let settled = false;
      const finish = (o: AttemptOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(o);
      };
      // agent: false, so no pooled socket to some earlier address is reused.
      const req = request(url, { method: 'POST', headers, agent: false, lookup: pinnedLookup(vetted) }, (res) => {
        const code = res.statusCode ?? 0;
        // The answer's body is not needed, but it is read so the socket closes cleanly.
        res.resume();
        res.on('end', () => {
          if (code >= 200 && code < 300) finish(done(code, null));
          else if (code >= 300 && code < 400) finish(done(code, 'redirects are not followed'));
          else finish(done(code, `the receiver answered ${code}`));
        });
        res.on('error', (err) => finish(done(code, err.message)));
      });
      const timer = setTimeout(() => {
        finish(done(null, `no answer within ${this.limitText}`));
        req.destroy();
      }, remainingMs);
      req.on('error', (err: NodeJS.ErrnoException) => finish(done(null, describeNetworkError(err))));
      req.end(body);
    });
  }
}

function describeNetworkError(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'connection refused';
    case 'ECONNRESET':
      return 'connection reset';
    case 'ETIMEDOUT':
      return 'connection timed out';
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return 'host unreachable';
    default:
      return err.code ? `${err.code}: ${err.message}` : err.message;
  }
}
