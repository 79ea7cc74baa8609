import { describe, expect, it } from 'vitest';
import { type BreakerState, CircuitBreaker } from '../../src/proxy/breaker.js';

function breaker(threshold = 3, resetMs = 1000) {
  let now = 0;
  const states: BreakerState[] = [];
  const b = new CircuitBreaker({ threshold, resetMs, now: () => now, onStateChange: (s) => states.push(s) });
  return { b, states, advance: (ms: number) => (now += ms) };
}

describe('CircuitBreaker', () => {
  it('opens after the threshold of consecutive failures and refuses while open', () => {
    const { b, states } = breaker(3);
    for (let i = 0; i < 2; i++) {
      expect(b.tryAcquire()).toBe(true);
      b.recordFailure();
    }
    expect(b.state).toBe('closed');
    expect(b.tryAcquire()).toBe(true);
    b.recordFailure();
    expect(b.state).toBe('open');
    expect(b.tryAcquire()).toBe(false);
    expect(b.retryAfterMs()).toBe(1000);
    expect(states).toEqual(['open']);
  });

  it('a success in between resets the count', () => {
    const { b } = breaker(2);
    b.recordFailure();
    b.recordSuccess();
    b.recordFailure();
    expect(b.state).toBe('closed');
  });

  it('half-opens after the reset time, lets exactly one probe through, and closes on its success', () => {
    const { b, states, advance } = breaker(1, 500);
    b.recordFailure();
    advance(499);
    expect(b.tryAcquire()).toBe(false);
    advance(1);
    expect(b.tryAcquire()).toBe(true);
    expect(b.state).toBe('half_open');
    expect(b.tryAcquire()).toBe(false);
    b.recordSuccess();
    expect(b.state).toBe('closed');
    expect(b.tryAcquire()).toBe(true);
    expect(states).toEqual(['open', 'half_open', 'closed']);
  });

  it('re-opens when the probe fails, and a released probe frees the slot', () => {
    const { b, advance } = breaker(1, 100);
    b.recordFailure();
    advance(100);
    expect(b.tryAcquire()).toBe(true);
    b.recordFailure();
    expect(b.state).toBe('open');
    advance(100);
    expect(b.tryAcquire()).toBe(true);
    b.release();
    expect(b.tryAcquire()).toBe(true);
  });

  it('threshold 0 turns the breaker off', () => {
    const { b } = breaker(0);
    for (let i = 0; i < 100; i++) b.recordFailure();
    expect(b.state).toBe('closed');
    expect(b.tryAcquire()).toBe(true);
  });
});
