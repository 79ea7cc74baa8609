const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 60_000;

/** Why starting the command last failed, and when the next start may be tried. */
export interface StartFailure {
  reason: string;
  retryAt: number;
}

/**
 * Start failures of a stdio server's command (it cannot be spawned, or exits before answering
 * `initialize`) back off: 1 s after the first, doubling to 60 s, reset by a start that works.
 * Without it every client retry would fork a process that fails the same way.
 */
export class StartBackoff {
  private failures = 0;
  private last: StartFailure | undefined;

  constructor(private readonly now: () => number = Date.now) {}

  failed(reason: string): void {
    const delay = Math.min(FIRST_DELAY_MS * 2 ** this.failures, MAX_DELAY_MS);
    this.failures++;
    this.last = { reason, retryAt: this.now() + delay };
  }

  succeeded(): void {
    this.failures = 0;
    this.last = undefined;
  }

  /** The last failure while its delay runs, else undefined (a start may be tried). */
  waiting(): StartFailure | undefined {
    return this.last && this.now() < this.last.retryAt ? this.last : undefined;
  }

  /** The last failure until a start works: the command is known not to start. */
  lastFailure(): StartFailure | undefined {
    return this.last;
  }
}
