const LINES_PER_SECOND = 20;
const WINDOW_MS = 1000;

/**
 * A child's stderr lines to the log, at most 20 a second: a server stuck printing in a loop must
 * not flood the proxy's log. Lines over the rate are counted, and one line says how many went.
 */
export class StderrLog {
  private windowStart = 0;
  private inWindow = 0;
  private dropped = 0;
  private reportTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly write: (line: string) => void,
    private readonly reportDropped: (count: number) => void,
  ) {}

  line(line: string): void {
    const now = Date.now();
    if (now - this.windowStart >= WINDOW_MS) {
      this.flush();
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (this.inWindow < LINES_PER_SECOND) {
      this.inWindow++;
      this.write(line);
      return;
    }
    this.dropped++;
    // Said when the window ends even if no further line comes to trigger it.
    this.reportTimer ??= setTimeout(() => this.flush(), this.windowStart + WINDOW_MS - now).unref();
  }

  /** Reports lines dropped so far (at a window's end, and when the child is gone). */
  flush(): void {
    clearTimeout(this.reportTimer);
    this.reportTimer = undefined;
    if (this.dropped === 0) return;
    const count = this.dropped;
    this.dropped = 0;
    this.reportDropped(count);
  }
}
