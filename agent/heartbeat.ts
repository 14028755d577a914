import type { Logger } from 'pino';
import type { HeartbeatAck, HeartbeatBody } from '../src/domain/schemas/node.js';
import { type ApiClient, ApiError } from './api-client.js';

export interface HeartbeatDeps {
  readonly api: ApiClient;
  readonly nodeId: string;
  readonly intervalMs: number;
  readonly collect: () => Promise<HeartbeatBody>;
  readonly onAck: (ack: HeartbeatAck) => void;
  /** The API no longer knows this node (an admin deleted it) or its key. */
  readonly onForgotten: () => void;
  /** A beat that did not get through (for the metrics). */
  readonly onFailed?: () => void;
  readonly logger: Logger;
}

/**
 * Beats every interval, whatever happens: a beat that fails is logged (once per outage) and the
 * next one comes on time, so an API or network outage ends by itself. Jobs do not depend on
 * beats: a missed one only risks the node showing offline after the TTL.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private stopped = false;
  private inFlight: Promise<void> | null = null;

  constructor(private readonly d: HeartbeatDeps) {}

  start(): void {
    void this.beat();
  }

  /** Beats now (after a change worth telling at once), unless a beat is on its way. */
  async beat(): Promise<void> {
    if (this.inFlight) return this.inFlight;
    if (this.timer) clearTimeout(this.timer);
    this.inFlight = this.once().finally(() => {
      this.inFlight = null;
      if (!this.stopped) this.timer = setTimeout(() => void this.beat(), this.d.intervalMs);
    });
    return this.inFlight;
  }

  /**
   * Beats within a second, to publish freed capacity promptly without a beat per finished job
   * (a busy node ends many jobs a second).
   */
  soon(): void {
    if (this.stopped || this.soonTimer !== null) return;
    this.soonTimer = setTimeout(() => {
      this.soonTimer = null;
      void this.beat();
    }, 1000);
    this.soonTimer.unref();
  }

  private soonTimer: NodeJS.Timeout | null = null;

  stop(): void {
    if (this.soonTimer) clearTimeout(this.soonTimer);
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async once(): Promise<void> {
    try {
      const body = await this.d.collect();
      const ack = await this.d.api.heartbeat(this.d.nodeId, body);
      if (this.failing) this.d.logger.info('heartbeats delivered again');
      this.failing = false;
      this.d.onAck(ack);
    } catch (err) {
      this.d.onFailed?.();
      if (err instanceof ApiError && (err.status === 401 || err.code === 'node_not_registered')) {
        this.d.logger.error({ status: err.status }, 'the API does not know this node any more');
        this.d.onForgotten();
        return;
      }
      if (!this.failing) this.d.logger.warn({ err: (err as Error).message }, 'heartbeat not delivered; retrying every interval');
      this.failing = true;
    }
  }
}
