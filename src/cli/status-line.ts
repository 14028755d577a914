import type { OutStream } from './io.js';

const FRAMES = ['|', '/', '-', '\\'];

/**
 * One line of live status under a job's streamed logs. On a terminal it is redrawn in place
 * (with a spinner) and cleared around every log line; anywhere else it prints one plain line
 * each time the status changes, so a log file or CI output stays readable.
 */
export class StatusLine {
  private text: string | (() => string) = '';
  private key = '';
  private frame = 0;
  private drawn = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly out: OutStream) {
    if (out.isTTY) {
      this.timer = setInterval(() => this.draw(), 120);
      this.timer.unref();
    }
  }

  /**
   * `key` says when the status changed: without a terminal, only changes are printed. A function
   * is called at each redraw, for text that moves on its own (a running time).
   */
  show(key: string, text: string | (() => string)): void {
    this.text = text;
    if (this.out.isTTY) {
      this.draw();
    } else if (key !== this.key) {
      this.out.write(`${typeof text === 'function' ? text() : text}\n`);
    }
    this.key = key;
  }

  /** Writes around the line: clear it, write, draw it again. */
  around(write: () => void): void {
    this.clear();
    write();
    if (this.out.isTTY && this.text !== '') this.draw();
  }

  /** Stops drawing; leaves `final` (if any) as an ordinary line. */
  stop(final?: string): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.clear();
    this.text = '';
    if (final !== undefined) this.out.write(`${final}\n`);
  }

  private draw(): void {
    if (this.text === '') return;
    this.frame = (this.frame + 1) % FRAMES.length;
    const width = Math.max(20, (this.out.columns || 80) - 1);
    const text = typeof this.text === 'function' ? this.text() : this.text;
    const line = `${FRAMES[this.frame]} ${text}`.slice(0, width);
    this.out.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }

  private clear(): void {
    if (!this.drawn) return;
    this.out.write('\r\x1b[2K');
    this.drawn = false;
  }
}
