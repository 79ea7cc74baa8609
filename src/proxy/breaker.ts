export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerOptions {
  /** Consecutive failures that open the circuit; 0 disables the breaker. */
  threshold: number;
  /** How long the circuit stays open before one probe is allowed. */
  resetMs: number;
  onStateChange?: (state: BreakerState) => void;
  now?: () => number;
}

/**
 * A consecutive-failure circuit breaker. While open, requests are refused at once
 * instead of piling up on a dead backend; after `resetMs` one probe is let through
 * (half-open) and its result closes or re-opens the circuit.
 */
export class CircuitBreaker {
  private failures = 0;
  private openedAt = 0;
  private probeInFlight = false;
  private current: BreakerState = 'closed';

  constructor(private options: BreakerOptions) {}

  /**
   * A reload: a new threshold and reset time apply from the next request. For a new target,
   * `reset` closes the circuit: the old target's failures say nothing about the new one.
   */
  reconfigure(settings: Pick<BreakerOptions, 'threshold' | 'resetMs'>, reset: boolean): void {
    this.options = { ...this.options, threshold: settings.threshold, resetMs: settings.resetMs };
    if (!reset) return;
    this.failures = 0;
    this.probeInFlight = false;
    if (this.current !== 'closed') this.transition('closed');
  }

  get state(): BreakerState {
    return this.current;
  }

  /** Milliseconds until a probe is allowed (0 when requests may pass). */
  retryAfterMs(): number {
    if (this.current !== 'open') return 0;
    return Math.max(0, this.openedAt + this.options.resetMs - this.now());
  }

  /** Whether a request may go upstream now; a `true` in half-open is the single probe. */
  tryAcquire(): boolean {
    if (this.options.threshold === 0 || this.current === 'closed') return true;
    if (this.current === 'open') {
      if (this.now() - this.openedAt < this.options.resetMs) return false;
      this.transition('half_open');
    }
    if (this.probeInFlight) return false;
    this.probeInFlight = true;
    return true;
  }

  recordSuccess(): void {
    this.failures = 0;
    this.probeInFlight = false;
    if (this.current !== 'closed') this.transition('closed');
  }

  recordFailure(): void {
    if (this.options.threshold === 0) return;
    this.probeInFlight = false;
    this.failures += 1;
    if (this.current === 'half_open' || this.failures >= this.options.threshold) {
      this.openedAt = this.now();
      if (this.current !== 'open') this.transition('open');
    }
  }

  /** A request that ended without telling anything about the backend (client went away). */
  release(): void {
    this.probeInFlight = false;
  }

  private transition(state: BreakerState): void {
    this.current = state;
    this.options.onStateChange?.(state);
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }
}
