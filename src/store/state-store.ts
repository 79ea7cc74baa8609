/**
 * The storage contract all of the proxy's state goes through: browser sessions, OAuth clients,
 * authorization codes, refresh-token families, consents, revocations and signing keys.
 * Implementations only store strings under keys with a time to live; what the strings mean (and
 * their encryption, see sealing-keys.ts) belongs to the layers above, and every key prefix is
 * named in key-prefixes.ts. Memory serves one instance, Redis serves many that share state across
 * restarts. One shared test suite (test/unit/state-store.suite.ts) pins the contract for every
 * implementation.
 */
export interface StateStore {
  readonly kind: 'memory' | 'redis';
  /** Stores `value` under `key`, replacing any value, for `ttlMs` milliseconds. */
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Stores only when `key` is absent; true when stored (a lock, a single-use marker). */
  setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean>;
  /** The value, or undefined when absent or expired. */
  get(key: string): Promise<string | undefined>;
  /**
   * The values of several keys, in order, each undefined when absent or expired: one round trip
   * (MGET) on Redis, for reads on every request such as the revocation checks of a bearer token.
   */
  getMany(keys: readonly string[]): Promise<Array<string | undefined>>;
  /** Reads and deletes in one step: of two concurrent callers only one gets the value. */
  take(key: string): Promise<string | undefined>;
  delete(key: string): Promise<void>;
  /** Live keys starting with `prefix`, in no particular order. */
  keys(prefix: string): Promise<string[]>;
  /** How many live keys start with `prefix`. */
  count(prefix: string): Promise<number>;
  /** Resolves when the store answers; rejects with a StoreUnavailableError otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The store cannot be reached (Redis down): callers answer 503, never fail open. */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}
