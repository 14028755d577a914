/**
 * Counts jobs that failed to start for reasons of the node, not of the job (the runtime refused
 * to create or start the container). After `threshold` in a row the node is in a crash loop: it
 * says so in its health, so "why is my job not running" has an answer, and it stops claiming for
 * a backoff that doubles while the failures go on, so one broken node does not fail a queue.
 */
export class CrashLoop {
  private consecutive = 0;
  private lastError = '';
  private pausedUntil = 0;

  constructor(
    private readonly threshold: number,
    private readonly backoffMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  failedToStart(message: string): void {
    this.consecutive++;
    this.lastError = message;
    if (this.consecutive >= this.threshold) {
      const factor = 2 ** Math.min(6, this.consecutive - this.threshold);
      this.pausedUntil = this.now() + Math.min(10 * 60_000, this.backoffMs * factor);
    }
  }

  started(): void {
    this.consecutive = 0;
    this.pausedUntil = 0;
  }

  get inLoop(): boolean {
    return this.consecutive >= this.threshold;
  }

  /** True while claiming should pause. */
  get backingOff(): boolean {
    return this.inLoop && this.now() < this.pausedUntil;
  }

  get reason(): string | null {
    if (!this.inLoop) return null;
    return `crash loop: the last ${this.consecutive} jobs failed to start here (${this.lastError})`;
  }
}
