import { performance } from 'node:perf_hooks';

/** Where a wait reads the time and how it lets time pass. */
export interface Clock {
  /** Milliseconds on a monotonic scale. */
  now(): number;
  /** Lets `ms` pass: a real pause, or an instant step of a fake clock. */
  sleep(ms: number): Promise<void>;
}

export const realClock: Clock = {
  now: () => performance.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** A clock that stands still until moved; `sleep` moves it at once instead of waiting. */
export interface FakeClock extends Clock {
  advance(ms: number): void;
}

export function fakeClock(start = 0): FakeClock {
  let time = start;
  const advance = (ms: number): void => {
    time += ms;
  };
  return {
    now: () => time,
    advance,
    sleep: async (ms) => advance(ms),
  };
}

export interface WaitOptions {
  /** Pause between checks; 10 ms unless told. */
  intervalMs?: number;
  /** The clock the timeout and the pauses run on; the real one unless told. */
  clock?: Clock;
}

/**
 * Resolves once `predicate` holds, checking every `intervalMs`; after `timeoutMs` it rejects
 * with an error naming `what` was awaited. A predicate that throws ends the wait with its error.
 */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = 'condition',
  { intervalMs = 10, clock = realClock }: WaitOptions = {},
): Promise<void> {
  const deadline = clock.now() + timeoutMs;
  while (!(await predicate())) {
    if (clock.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await clock.sleep(intervalMs);
  }
}
