import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sendError } from '../../src/http/errors.js';
import {
  addressBudget,
  createRateLimiter,
  type RateLimiter,
  tooManyRequests,
} from '../../src/limits/rate-limit.js';

function memoryLimiter(perMinute: number): RateLimiter {
  const limiter = createRateLimiter({ perMinute, keyPrefix: 'test' });
  if (!limiter) throw new Error('expected a limiter');
  return limiter;
}

async function consumeTimes(limiter: RateLimiter, key: string, times: number): Promise<boolean[]> {
  const out: boolean[] = [];
  for (let i = 0; i < times; i++) out.push((await limiter.consume(key)).allowed);
  return out;
}

describe('createRateLimiter (memory)', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('allows perMinute requests, then refuses with a retry-after within the window', async () => {
    const limiter = memoryLimiter(3);
    expect(await consumeTimes(limiter, '10.0.0.1', 3)).toEqual([true, true, true]);
    const refused = await limiter.consume('10.0.0.1');
    expect(refused.allowed).toBe(false);
    if (refused.allowed) return;
    expect(Number.isInteger(refused.retryAfterSeconds)).toBe(true);
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(59);
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(60);
    expect((await limiter.consume('10.0.0.1')).allowed).toBe(false);
  });

  it('counts keys independently', async () => {
    const limiter = memoryLimiter(2);
    expect(await consumeTimes(limiter, 'alice', 3)).toEqual([true, true, false]);
    expect(await consumeTimes(limiter, 'bob', 3)).toEqual([true, true, false]);
  });

  it('limiters with different prefixes are separate budgets', async () => {
    const a = createRateLimiter({ perMinute: 1, keyPrefix: 'auth' });
    const b = createRateLimiter({ perMinute: 1, keyPrefix: 'api' });
    expect((await a?.consume('k'))?.allowed).toBe(true);
    expect((await b?.consume('k'))?.allowed).toBe(true);
    expect((await a?.consume('k'))?.allowed).toBe(false);
  });

  it('retry-after shrinks as the window passes, and the budget returns after a minute', async () => {
    vi.useFakeTimers({ now: new Date('2026-01-01T00:00:00Z') });
    const limiter = memoryLimiter(1);
    expect((await limiter.consume('k')).allowed).toBe(true);
    vi.advanceTimersByTime(45_500);
    expect(await limiter.consume('k')).toEqual({ allowed: false, retryAfterSeconds: 15 });
    vi.advanceTimersByTime(14_000);
    expect(await limiter.consume('k')).toEqual({ allowed: false, retryAfterSeconds: 1 });
    vi.advanceTimersByTime(1_000);
    expect((await limiter.consume('k')).allowed).toBe(true);
  });

  it('0 turns limiting off', () => {
    expect(createRateLimiter({ perMinute: 0, keyPrefix: 'off' })).toBeUndefined();
  });

  it.each([-1, 1.5, Number.NaN])('rejects perMinute %s', (perMinute) => {
    expect(() => createRateLimiter({ perMinute, keyPrefix: 'bad' })).toThrow(RangeError);
  });
});

describe('tooManyRequests', () => {
  it('is written as 429 with Retry-After, no-store and the JSON error body with the request id', async () => {
    const server = createServer((_req, res) => sendError(res, tooManyRequests(42), 'req-1'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const res = await fetch(`http://127.0.0.1:${port}/token`);
      expect(res.status).toBe(429);
      expect(res.headers.get('retry-after')).toBe('42');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(await res.json()).toEqual({
        error: 'rate_limited',
        error_description: 'Too many requests; retry after 42 s.',
        request_id: 'req-1',
      });
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('addressBudget', () => {
  it.each([
    ['198.51.100.7', '198.51.100.7'],
    ['2001:db8:1:2::1', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64'],
    ['2001:db8::', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
    ['::', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::198.51.100.7', '64:ff9b:0:0::/64'],
    ['2001:db8:0:0:1::1', '2001:db8:0:0::/64'],
    ['', ''],
  ])('%s spends the budget of %s', (ip, budget) => {
    expect(addressBudget(ip)).toBe(budget);
  });
});
