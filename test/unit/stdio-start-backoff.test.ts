import { describe, expect, it } from 'vitest';
import { StartBackoff } from '../../src/stdio/start-backoff.js';

describe('StartBackoff', () => {
  it('waits 1 s after a failure, doubling to 60 s, and forgets it all after a start that works', () => {
    let now = 0;
    const backoff = new StartBackoff(() => now);
    expect(backoff.waiting()).toBeUndefined();

    const delays: number[] = [];
    for (let i = 0; i < 8; i++) {
      backoff.failed('exited with code 1');
      delays.push(backoff.waiting()!.retryAt - now);
      now = backoff.waiting()!.retryAt;
      expect(backoff.waiting()).toBeUndefined();
      expect(backoff.lastFailure()?.reason).toBe('exited with code 1');
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);

    backoff.succeeded();
    expect(backoff.lastFailure()).toBeUndefined();
    backoff.failed('again');
    expect(backoff.waiting()).toEqual({ reason: 'again', retryAt: now + 1000 });
  });
});
