import type { Logger } from 'pino';
import type { ApiClient } from './api-client.js';

type Stream = 'stdout' | 'stderr' | 'system';

const FLUSH_EVERY_MS = 250;
const BATCH_LINES = 500;

/**
 * Ships one job's log lines to the API in batches, a few times a second, so they can be read
 * while the job runs. Lines past the job's cap are dropped with one note saying so; a batch the
 * API does not take within its retries is dropped and counted, never blocking the job.
 */
export class LogShipper {
  private buffer: { stream: Stream; text: string; time: number }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> = Promise.resolve();
  private accepted = 0;
  private dropped = 0;
  private truncated = false;

  constructor(
    private readonly api: ApiClient,
    private readonly jobId: string,
    private readonly lockToken: string,
    private readonly maxLines: number,
    private readonly logger: Logger,
  ) {}

  add(stream: Stream, text: string): void {
    if (this.accepted >= this.maxLines) {
      if (!this.truncated) {
        this.truncated = true;
        this.buffer.push({ stream: 'system', text: `log truncated: this job wrote more than ${this.maxLines} lines`, time: Date.now() });
      }
      return;
    }
    this.accepted++;
    this.buffer.push({ stream, text, time: Date.now() });
    if (this.buffer.length >= BATCH_LINES) this.send();
    else this.timer ??= setTimeout(() => this.send(), FLUSH_EVERY_MS);
  }

  private send(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.buffer.length === 0) return;
    const lines = this.buffer;
    this.buffer = [];
    this.inFlight = this.inFlight.then(() =>
      this.api.appendLogs(this.jobId, { lock_token: this.lockToken, lines }, { deadlineMs: 30_000 }).catch((err: Error) => {
        this.dropped += lines.length;
        this.logger.warn({ jobId: this.jobId, lines: lines.length, err: err.message }, 'dropped log lines the API did not take');
      }),
    );
  }

  /** Sends what is buffered and waits until every batch has been answered. */
  async flush(): Promise<void> {
    this.send();
    await this.inFlight;
  }

  get droppedLines(): number {
    return this.dropped;
  }
}
