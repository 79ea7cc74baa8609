import { afterEach, describe, expect, it } from 'vitest';
import { createStateStore } from '../../src/store/index.js';
import { DEFAULT_MAX_ENTRIES, MemoryStateStore } from '../../src/store/memory.js';
import { fakeClock, waitFor } from '../helpers/wait.js';
import { runStateStoreTests } from './state-store.suite.js';

const contractClock = fakeClock();
runStateStoreTests('memory', () => new MemoryStateStore({ now: contractClock.now }), {
  clock: contractClock,
});

describe('MemoryStateStore only', () => {
  const stores: MemoryStateStore[] = [];
  const memory = (options?: ConstructorParameters<typeof MemoryStateStore>[0]): MemoryStateStore => {
    const s = new MemoryStateStore(options);
    stores.push(s);
    return s;
  };
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  it('is what createStateStore gives for kind memory, bounded by default', async () => {
    const s = createStateStore({ kind: 'memory' });
    expect(s).toBeInstanceOf(MemoryStateStore);
    expect(s.kind).toBe('memory');
    expect((s as MemoryStateStore).maxEntries).toBe(DEFAULT_MAX_ENTRIES);
    await s.close();
    const small = createStateStore({ kind: 'memory', maxEntries: 7 });
    expect((small as MemoryStateStore).maxEntries).toBe(7);
    await small.close();
  });

  it('refuses a bound that is not a positive integer', () => {
    for (const maxEntries of [0, -1, 1.5, Number.NaN]) {
      expect(() => new MemoryStateStore({ maxEntries })).toThrow(RangeError);
    }
  });

  it('when full, evicts the entry closest to expiry to make room', async () => {
    const s = memory({ maxEntries: 3 });
    await s.set('long', 'v', 60_000);
    await s.set('soonest', 'v', 10_000);
    await s.set('middle', 'v', 30_000);
    await s.set('new', 'v', 45_000);
    expect(s.size).toBe(3);
    expect(await s.get('soonest')).toBeUndefined();
    expect((await s.keys('')).sort()).toEqual(['long', 'middle', 'new']);
    // Next in line is `middle` (30 s), not the entry inserted first (`long`).
    await s.set('newer', 'v', 50_000);
    expect((await s.keys('')).sort()).toEqual(['long', 'new', 'newer']);
  });

  it('evicts the oldest entry among equal expiries', async () => {
    // A clock that stands still, so the three expiries are exactly equal.
    const s = memory({ maxEntries: 2, now: fakeClock().now });
    await s.set('first', 'v', 60_000);
    await s.set('second', 'v', 60_000);
    await s.set('third', 'v', 60_000);
    expect((await s.keys('')).sort()).toEqual(['second', 'third']);
  });

  it('uses the TTL an entry has now, not the one it was first stored with', async () => {
    const s = memory({ maxEntries: 2 });
    await s.set('a', 'v', 1_000);
    await s.set('b', 'v', 20_000);
    await s.set('a', 'v2', 60_000); // a now outlives b
    expect(s.size).toBe(2);
    await s.set('c', 'v', 40_000);
    expect((await s.keys('')).sort()).toEqual(['a', 'c']);
    expect(await s.get('a')).toBe('v2');
  });

  it('replacing or claiming an existing key evicts nothing', async () => {
    const s = memory({ maxEntries: 2 });
    await s.set('a', 'v', 60_000);
    await s.set('b', 'v', 60_000);
    await s.set('a', 'v2', 60_000);
    expect(await s.setIfAbsent('b', 'x', 60_000)).toBe(false);
    expect((await s.keys('')).sort()).toEqual(['a', 'b']);
  });

  it('stays within the bound under a flood, keeping the long-lived entries', async () => {
    const s = memory({ maxEntries: 100 });
    for (let i = 0; i < 20; i++) await s.set(`session:${i}`, 'v', 86_400_000);
    for (let i = 0; i < 10_000; i++) {
      await s.set(`state:${i}`, 'v', 600_000);
      expect(s.size).toBeLessThanOrEqual(100);
    }
    expect(await s.count('session:')).toBe(20);
    expect(await s.count('state:')).toBe(80);
    // The survivors of the flood are its newest entries.
    expect(await s.get('state:9999')).toBe('v');
    expect(await s.get('state:0')).toBeUndefined();
  });

  it('reclaims expired entries before live ones when full', async () => {
    const clock = fakeClock();
    const s = memory({ maxEntries: 2, now: clock.now });
    await s.set('live', 'v', 60_000);
    await s.set('short', 'v', 50);
    clock.advance(60);
    await s.set('new', 'v', 1_000);
    // `new` expires before `live`, yet the expired entry is the one that made room.
    expect((await s.keys('')).sort()).toEqual(['live', 'new']);
  });

  it('sweeps expired entries out of memory on its timer', async () => {
    const clock = fakeClock();
    const s = memory({ sweepIntervalMs: 20, now: clock.now });
    await s.set('gone', 'v', 50);
    await s.set('kept', 'v', 60_000);
    expect(s.size).toBe(2);
    clock.advance(50);
    // The sweep runs on a real timer: only the entries' expiry is on the fake clock.
    await waitFor(() => s.size === 1, 3000, 'the sweep to reclaim the expired entry');
    expect(await s.get('kept')).toBe('v');
  });

  it('keeps memory use bounded when the same keys are rewritten many times', async () => {
    const s = memory({ maxEntries: 10 });
    for (let i = 0; i < 50_000; i++) await s.set(`k${i % 5}`, `${i}`, 60_000);
    expect(s.size).toBe(5);
    // Stale heap nodes from rewrites are compacted away.
    expect((s as unknown as { heap: unknown[] }).heap.length).toBeLessThanOrEqual(2 * 5 + 1024);
    expect(await s.get('k4')).toBe('49999');
  });

  it('does not keep the process alive and stops its sweep on close', async () => {
    const s = memory({ sweepIntervalMs: 10 });
    const timer = (s as unknown as { sweepTimer: NodeJS.Timeout | undefined }).sweepTimer;
    expect(timer?.hasRef()).toBe(false);
    await s.close();
    expect((s as unknown as { sweepTimer: NodeJS.Timeout | undefined }).sweepTimer).toBeUndefined();
    expect(s.size).toBe(0);
  });
});
