import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type StateStore, StoreUnavailableError } from '../../src/store/state-store.js';
import { type Clock, realClock, waitFor } from '../helpers/wait.js';

export interface StateStoreSuiteOptions {
  /**
   * The clock the stores from `factory` expire entries on, when they take one: a fake clock
   * whose `sleep` moves it at once, so TTLs pass without waiting. Unless given, time passes for
   * real (Redis expires keys on its own clock).
   */
  clock?: Clock;
}

/**
 * The contract every StateStore implementation must pass (after oauth2-proxy's
 * runStateStoreTests). `factory` returns a new store, ready to use; each test closes its own.
 * Tests work under a random key namespace and delete what they wrote.
 */
export function runStateStoreTests(
  name: string,
  factory: () => StateStore | Promise<StateStore>,
  options: StateStoreSuiteOptions = {},
): void {
  /** How long a short-lived entry lives: long enough to be seen, short enough to wait out. */
  const SHORT_TTL = 150;
  const LONG_TTL = 60_000;
  const clock = options.clock ?? realClock;
  /** A fake clock is stepped a millisecond at a time, so an expiry is seen the moment it happens. */
  const intervalMs = options.clock ? 1 : 10;

  /** Polls until `predicate` holds and returns the ms elapsed since `since`; fails after `timeoutMs`. */
  async function until(
    predicate: () => Promise<boolean>,
    what: string,
    since = clock.now(),
    timeoutMs = 3000,
  ): Promise<number> {
    await waitFor(predicate, timeoutMs, what, { clock, intervalMs });
    return clock.now() - since;
  }

  describe(`StateStore contract: ${name}`, () => {
    let store: StateStore;
    /** Every test works under its own namespace, so tests never see each other's keys. */
    let ns: string;

    beforeEach(async () => {
      store = await factory();
      ns = `t-${randomUUID()}:`;
    });

    afterEach(async () => {
      for (const key of await store.keys(ns)) await store.delete(key);
      expect(await store.count(ns)).toBe(0);
      await store.close();
    });

    it('has a kind', () => {
      expect(['memory', 'redis']).toContain(store.kind);
    });

    it('returns what was set and undefined for a key never set', async () => {
      await store.set(`${ns}a`, 'one', LONG_TTL);
      expect(await store.get(`${ns}a`)).toBe('one');
      expect(await store.get(`${ns}missing`)).toBeUndefined();
    });

    it('replaces the value on a second set', async () => {
      await store.set(`${ns}a`, 'one', LONG_TTL);
      await store.set(`${ns}a`, 'two', LONG_TTL);
      expect(await store.get(`${ns}a`)).toBe('two');
      expect(await store.count(ns)).toBe(1);
    });

    it('keeps an entry until its TTL and hides it from every read once it has passed', async () => {
      const start = clock.now();
      await store.set(`${ns}short`, 'v', SHORT_TTL);
      await store.set(`${ns}long`, 'v', LONG_TTL);
      expect(await store.get(`${ns}short`)).toBe('v');
      const elapsed = await until(async () => (await store.get(`${ns}short`)) === undefined, 'expiry', start);
      // Never early (1 ms of slack for clock rounding), and gone soon after.
      expect(elapsed).toBeGreaterThanOrEqual(SHORT_TTL - 1);
      expect(await store.take(`${ns}short`)).toBeUndefined();
      expect(await store.keys(ns)).toEqual([`${ns}long`]);
      expect(await store.count(ns)).toBe(1);
      expect(await store.get(`${ns}long`)).toBe('v');
    });

    it('gives a replaced entry the new TTL', async () => {
      const start = clock.now();
      await store.set(`${ns}a`, 'old', SHORT_TTL);
      await store.set(`${ns}a`, 'new', LONG_TTL);
      await store.set(`${ns}b`, 'long', LONG_TTL);
      await store.set(`${ns}b`, 'short', SHORT_TTL);
      await store.set(`${ns}witness`, 'w', SHORT_TTL);
      // Set after `a`'s first TTL started, the witness expires after it would have.
      await until(async () => (await store.get(`${ns}witness`)) === undefined, 'witness expiry', start);
      expect(clock.now() - start).toBeGreaterThanOrEqual(SHORT_TTL);
      expect(await store.get(`${ns}a`)).toBe('new');
      // Shortened before the witness was set, `b` expires on its new TTL too.
      await until(async () => (await store.get(`${ns}b`)) === undefined, 'shortened entry expiry');
    });

    it('rejects a TTL that is not a positive number', async () => {
      for (const ttl of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
        await expect(store.set(`${ns}a`, 'v', ttl)).rejects.toBeInstanceOf(RangeError);
        await expect(store.setIfAbsent(`${ns}a`, 'v', ttl)).rejects.toBeInstanceOf(RangeError);
      }
      expect(await store.get(`${ns}a`)).toBeUndefined();
    });

    describe('setIfAbsent', () => {
      it('stores only when the key is absent and never replaces', async () => {
        expect(await store.setIfAbsent(`${ns}lock`, 'first', LONG_TTL)).toBe(true);
        expect(await store.setIfAbsent(`${ns}lock`, 'second', LONG_TTL)).toBe(false);
        expect(await store.get(`${ns}lock`)).toBe('first');
        await store.delete(`${ns}lock`);
        expect(await store.setIfAbsent(`${ns}lock`, 'third', LONG_TTL)).toBe(true);
        expect(await store.get(`${ns}lock`)).toBe('third');
      });

      it('does not store over a value written by set', async () => {
        await store.set(`${ns}k`, 'set', LONG_TTL);
        expect(await store.setIfAbsent(`${ns}k`, 'nx', LONG_TTL)).toBe(false);
        expect(await store.get(`${ns}k`)).toBe('set');
      });

      it('gives what it stores the TTL, and an expired key counts as absent', async () => {
        const start = clock.now();
        expect(await store.setIfAbsent(`${ns}lock`, 'a', SHORT_TTL)).toBe(true);
        // A refused setIfAbsent leaves the TTL alone.
        expect(await store.setIfAbsent(`${ns}lock`, 'b', LONG_TTL)).toBe(false);
        const elapsed = await until(
          async () => (await store.get(`${ns}lock`)) === undefined,
          'expiry',
          start,
        );
        expect(elapsed).toBeGreaterThanOrEqual(SHORT_TTL - 1);
        expect(await store.setIfAbsent(`${ns}lock`, 'c', LONG_TTL)).toBe(true);
        expect(await store.get(`${ns}lock`)).toBe('c');
      });

      it('lets exactly one of 50 concurrent callers win', async () => {
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) => store.setIfAbsent(`${ns}race`, `caller-${i}`, LONG_TTL)),
        );
        const winners = results.flatMap((won, i) => (won ? [i] : []));
        expect(winners).toHaveLength(1);
        expect(await store.get(`${ns}race`)).toBe(`caller-${winners[0]}`);
      });
    });

    describe('getMany', () => {
      it('returns the values in the order asked, undefined for absent and expired keys', async () => {
        await store.set(`${ns}a`, 'one', LONG_TTL);
        await store.set(`${ns}b`, '', LONG_TTL);
        await store.set(`${ns}short`, 'gone soon', SHORT_TTL);
        await until(async () => (await store.get(`${ns}short`)) === undefined, 'expiry');
        expect(await store.getMany([`${ns}missing`, `${ns}b`, `${ns}short`, `${ns}a`, `${ns}a`])).toEqual([
          undefined,
          '',
          undefined,
          'one',
          'one',
        ]);
        expect(await store.getMany([])).toEqual([]);
      });
    });

    describe('take', () => {
      it('returns the value once and removes it', async () => {
        await store.set(`${ns}code`, 'c0de', LONG_TTL);
        expect(await store.take(`${ns}code`)).toBe('c0de');
        expect(await store.get(`${ns}code`)).toBeUndefined();
        expect(await store.take(`${ns}code`)).toBeUndefined();
        expect(await store.take(`${ns}never`)).toBeUndefined();
      });

      it('gives the value to exactly one of 50 concurrent callers', async () => {
        await store.set(`${ns}code`, 'single-use', LONG_TTL);
        const results = await Promise.all(Array.from({ length: 50 }, () => store.take(`${ns}code`)));
        expect(results.filter((r) => r === 'single-use')).toHaveLength(1);
        expect(results.filter((r) => r === undefined)).toHaveLength(49);
        expect(await store.get(`${ns}code`)).toBeUndefined();
      });
    });

    it('deletes a key, and deleting an absent key is not an error', async () => {
      await store.set(`${ns}a`, 'v', LONG_TTL);
      await store.set(`${ns}b`, 'v', LONG_TTL);
      await store.delete(`${ns}a`);
      expect(await store.get(`${ns}a`)).toBeUndefined();
      expect(await store.get(`${ns}b`)).toBe('v');
      await expect(store.delete(`${ns}a`)).resolves.toBeUndefined();
      await expect(store.delete(`${ns}never`)).resolves.toBeUndefined();
    });

    describe('keys and count', () => {
      it('list and count the live keys under a prefix, and only those', async () => {
        await store.set(`${ns}session:1`, 'v', LONG_TTL);
        await store.set(`${ns}session:2`, 'v', LONG_TTL);
        await store.set(`${ns}sessions`, 'v', LONG_TTL);
        await store.set(`${ns}code:1`, 'v', LONG_TTL);
        expect((await store.keys(`${ns}session:`)).sort()).toEqual([`${ns}session:1`, `${ns}session:2`]);
        expect(await store.count(`${ns}session:`)).toBe(2);
        expect(await store.count(`${ns}session`)).toBe(3);
        expect(await store.count(ns)).toBe(4);
        expect(await store.keys(`${ns}nothing:`)).toEqual([]);
        expect(await store.count(`${ns}nothing:`)).toBe(0);
      });

      it('leave out keys whose TTL has passed', async () => {
        await store.set(`${ns}s:long`, 'v', LONG_TTL);
        await store.set(`${ns}s:short`, 'v', SHORT_TTL);
        await store.setIfAbsent(`${ns}s:nx-short`, 'v', SHORT_TTL);
        expect(await store.count(`${ns}s:`)).toBe(3);
        await until(async () => (await store.count(`${ns}s:`)) === 1, 'count to drop the expired keys');
        expect(await store.keys(`${ns}s:`)).toEqual([`${ns}s:long`]);
      });

      it('match the prefix literally, glob characters included', async () => {
        for (const key of ['a*1', 'ab', 'a?', 'ax', 'a[b]', 'ab]', 'a\\x', 'ax2']) {
          await store.set(`${ns}${key}`, 'v', LONG_TTL);
        }
        expect(await store.keys(`${ns}a*`)).toEqual([`${ns}a*1`]);
        expect(await store.keys(`${ns}a?`)).toEqual([`${ns}a?`]);
        expect(await store.keys(`${ns}a[b]`)).toEqual([`${ns}a[b]`]);
        expect(await store.keys(`${ns}a\\`)).toEqual([`${ns}a\\x`]);
        expect(await store.count(`${ns}a`)).toBe(8);
      });

      it('see every key of a large set exactly once', async () => {
        const n = 2500;
        await Promise.all(Array.from({ length: n }, (_, i) => store.set(`${ns}bulk:${i}`, `${i}`, LONG_TTL)));
        const keys = await store.keys(`${ns}bulk:`);
        expect(keys).toHaveLength(n);
        expect(new Set(keys).size).toBe(n);
        expect(await store.count(`${ns}bulk:`)).toBe(n);
      });
    });

    it('keeps unicode, control characters and empty strings intact, in keys and values', async () => {
      const value = 'héllo wörld — 日本語 🔐👩‍👩‍👧 e\u0301 \u0000\u0001\n\r\t "quoted" \\ end';
      await store.set(`${ns}ключ-🔑`, value, LONG_TTL);
      expect(await store.get(`${ns}ключ-🔑`)).toBe(value);
      expect(await store.keys(`${ns}ключ`)).toEqual([`${ns}ключ-🔑`]);
      await store.set(`${ns}empty`, '', LONG_TTL);
      expect(await store.get(`${ns}empty`)).toBe('');
      expect(await store.setIfAbsent(`${ns}empty`, 'x', LONG_TTL)).toBe(false);
      expect(await store.take(`${ns}empty`)).toBe('');
    });

    it('stores a 100 KB value unchanged', async () => {
      const chunk = 'abcdefghij0123456789ÄÖÜ€🙂';
      const large = chunk.repeat(Math.ceil(100_000 / chunk.length)).slice(0, 100_000);
      expect(Buffer.byteLength(large)).toBeGreaterThan(100_000);
      await store.set(`${ns}large`, large, LONG_TTL);
      expect(await store.get(`${ns}large`)).toBe(large);
      expect(await store.take(`${ns}large`)).toBe(large);
    });

    it('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    it('refuses every call with StoreUnavailableError after close, and closes twice quietly', async () => {
      const closing = await factory();
      await closing.set(`${ns}k`, 'v', LONG_TTL);
      await closing.close();
      await expect(closing.close()).resolves.toBeUndefined();
      const calls: Array<() => Promise<unknown>> = [
        () => closing.ping(),
        () => closing.get(`${ns}k`),
        () => closing.getMany([`${ns}k`]),
        () => closing.set(`${ns}k`, 'v', LONG_TTL),
        () => closing.setIfAbsent(`${ns}k`, 'v', LONG_TTL),
        () => closing.take(`${ns}k`),
        () => closing.delete(`${ns}k`),
        () => closing.keys(ns),
        () => closing.count(ns),
      ];
      for (const call of calls) {
        const error = await call().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(StoreUnavailableError);
        expect((error as StoreUnavailableError).code).toBe('STORE_UNAVAILABLE');
      }
    });
  });
}
