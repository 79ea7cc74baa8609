import { performance } from 'node:perf_hooks';
import { type StateStore, StoreUnavailableError } from './state-store.js';
import { checkTtl } from './ttl.js';

export const DEFAULT_MAX_ENTRIES = 100_000;
export const DEFAULT_SWEEP_INTERVAL_MS = 60_000;

export interface MemoryStateStoreOptions {
  /** Most entries held at once; see the class comment for what happens when full. */
  maxEntries?: number;
  /** How often expired entries are reclaimed (they are invisible from the moment they expire). */
  sweepIntervalMs?: number;
  /** The clock expiry is measured on, in milliseconds; the monotonic `performance.now()` unless given. */
  now?: () => number;
}

interface Entry {
  value: string;
  expiresAt: number;
  /** Insertion number: identifies this version of the key in the heap and breaks ties. */
  seq: number;
}

interface HeapNode {
  expiresAt: number;
  seq: number;
  key: string;
}

/** Orders by expiry, then by insertion: the root is the entry that expires first (oldest on a tie). */
function before(a: HeapNode, b: HeapNode): boolean {
  return a.expiresAt < b.expiresAt || (a.expiresAt === b.expiresAt && a.seq < b.seq);
}

/**
 * StateStore in this process's memory: one instance only, lost on restart.
 *
 * Bounded: at most `maxEntries` entries. When a new key arrives and the store is full, the entry
 * closest to expiry is evicted (expired ones first, ties to the oldest). That entry is the one
 * whose loss costs least, and a flood of short-lived entries (login states from anonymous
 * /login hits) evicts its own kind rather than long-lived sessions of users who logged in. Values
 * are not size-limited here; the layers above bound what they store.
 *
 * Expiry is checked on every read, so an expired entry is invisible at once; a periodic sweep on
 * an unref'd timer (it never keeps the process alive) reclaims the memory. Times come from the
 * monotonic clock, so wall-clock jumps do not expire or revive entries.
 *
 * Every operation runs synchronously inside one turn of the event loop, so `take` (read and
 * delete) and `setIfAbsent` are atomic by construction.
 */
export class MemoryStateStore implements StateStore {
  readonly kind = 'memory' as const;
  readonly maxEntries: number;
  private readonly entries = new Map<string, Entry>();
  /** Min-heap on expiry. Replaced or deleted keys leave stale nodes, skipped by seq and compacted. */
  private heap: HeapNode[] = [];
  private seq = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly now: () => number;

  constructor(options: MemoryStateStoreOptions = {}) {
    const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`maxEntries must be a positive integer, got ${maxEntries}`);
    }
    const sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_INTERVAL_MS;
    if (!Number.isFinite(sweepIntervalMs) || sweepIntervalMs <= 0) {
      throw new RangeError(`sweepIntervalMs must be a positive number, got ${sweepIntervalMs}`);
    }
    this.maxEntries = maxEntries;
    this.now = options.now ?? (() => performance.now());
    this.sweepTimer = setInterval(() => this.sweep(), sweepIntervalMs);
    this.sweepTimer.unref();
  }

  /** Entries held, expired ones not yet swept included (for metrics and tests). */
  get size(): number {
    return this.entries.size;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.assertOpen();
    this.put(key, value, checkTtl(ttlMs));
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    this.assertOpen();
    const ttl = checkTtl(ttlMs);
    if (this.live(key, this.now()) !== undefined) return false;
    this.put(key, value, ttl);
    return true;
  }

  async get(key: string): Promise<string | undefined> {
    this.assertOpen();
    return this.live(key, this.now())?.value;
  }

  async getMany(keys: readonly string[]): Promise<Array<string | undefined>> {
    this.assertOpen();
    const now = this.now();
    return keys.map((key) => this.live(key, now)?.value);
  }

  async take(key: string): Promise<string | undefined> {
    this.assertOpen();
    const entry = this.live(key, this.now());
    if (entry === undefined) return undefined;
    this.entries.delete(key);
    return entry.value;
  }

  async delete(key: string): Promise<void> {
    this.assertOpen();
    this.entries.delete(key);
  }

  async keys(prefix: string): Promise<string[]> {
    this.assertOpen();
    const now = this.now();
    const found: string[] = [];
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now && key.startsWith(prefix)) found.push(key);
    }
    return found;
  }

  async count(prefix: string): Promise<number> {
    this.assertOpen();
    const now = this.now();
    let n = 0;
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now && key.startsWith(prefix)) n++;
    }
    return n;
  }

  async ping(): Promise<void> {
    this.assertOpen();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
    this.entries.clear();
    this.heap = [];
  }

  /** Removes expired entries; runs on the timer, callable directly. */
  sweep(): void {
    const now = this.now();
    while (this.heap.length > 0 && this.heap[0]!.expiresAt <= now) {
      const node = this.pop()!;
      if (this.entries.get(node.key)?.seq === node.seq) this.entries.delete(node.key);
    }
    this.compactIfBloated();
  }

  private assertOpen(): void {
    if (this.closed) throw new StoreUnavailableError('the memory session store is closed');
  }

  /** The entry when present and not expired; an expired one is dropped on the way. */
  private live(key: string, now: number): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  private put(key: string, value: string, ttlMs: number): void {
    if (!this.entries.has(key)) {
      while (this.entries.size >= this.maxEntries) this.evictOne();
    }
    const entry: Entry = { value, expiresAt: this.now() + ttlMs, seq: ++this.seq };
    this.entries.set(key, entry);
    this.push({ expiresAt: entry.expiresAt, seq: entry.seq, key });
    this.compactIfBloated();
  }

  /** Drops the entry that expires first (an expired one if any). */
  private evictOne(): void {
    for (;;) {
      const node = this.pop();
      if (node === undefined) return; // unreachable while entries is non-empty
      if (this.entries.get(node.key)?.seq === node.seq) {
        this.entries.delete(node.key);
        return;
      }
    }
  }

  /** Stale nodes (replaced or deleted keys) are skipped lazily; rebuild when they dominate. */
  private compactIfBloated(): void {
    if (this.heap.length <= 2 * this.entries.size + 1024) return;
    this.heap = [];
    for (const [key, entry] of this.entries) this.push({ expiresAt: entry.expiresAt, seq: entry.seq, key });
  }

  private push(node: HeapNode): void {
    const heap = this.heap;
    heap.push(node);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private pop(): HeapNode | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (top === undefined || last === undefined || heap.length === 0) return top;
    heap[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < heap.length && before(heap[left]!, heap[smallest]!)) smallest = left;
      if (right < heap.length && before(heap[right]!, heap[smallest]!)) smallest = right;
      if (smallest === i) break;
      [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
      i = smallest;
    }
    return top;
  }
}
