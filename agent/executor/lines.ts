/**
 * Splits a byte stream into lines for the job log. A line longer than `maxLine` is cut into
 * pieces; a partial last line is flushed at the end.
 */
export class LineSplitter {
  private buf = '';
  private readonly decoder = new TextDecoder();

  constructor(
    private readonly onLine: (line: string) => void,
    private readonly maxLine = 16_000,
  ) {}

  push(chunk: Buffer | string): void {
    this.buf += typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    let nl = this.buf.indexOf('\n');
    while (nl >= 0) {
      this.emit(this.buf.slice(0, nl).replace(/\r$/, ''));
      this.buf = this.buf.slice(nl + 1);
      nl = this.buf.indexOf('\n');
    }
    while (this.buf.length > this.maxLine) {
      this.emit(this.buf.slice(0, this.maxLine));
      this.buf = this.buf.slice(this.maxLine);
    }
  }

  end(): void {
    this.buf += this.decoder.decode();
    if (this.buf !== '') this.emit(this.buf);
    this.buf = '';
  }

  private emit(line: string): void {
    for (let i = 0; i < line.length || i === 0; i += this.maxLine) {
      this.onLine(line.slice(i, i + this.maxLine));
      if (line.length === 0) break;
    }
  }
}
