import { MemoryStateStore } from './memory.js';
import { RedisStateStore } from './redis.js';

export { DEFAULT_KEY_PREFIX, RATE_LIMIT_PREFIXES, STORE_KEY_PREFIXES } from './key-prefixes.js';
export { DEFAULT_MAX_ENTRIES, MemoryStateStore, type MemoryStateStoreOptions } from './memory.js';
export {
  buildRedisClientConfig,
  parseRedisUrl,
  RedisStateStore,
  type RedisStateStoreOptions,
  RedisUrlError,
  redactRedisUrl,
} from './redis.js';
export { type StateStore, StoreUnavailableError } from './state-store.js';

export const DEFAULT_REDIS_URL = 'redis://localhost:6379';

export interface StateStoreOptions {
  kind: 'memory' | 'redis';
  /** REDIS_URL; redis only. */
  redisUrl?: string;
  /** CA certificate (PEM) for rediss://; redis only. */
  redisCa?: string;
  /** Key prefix in Redis; redis only. */
  keyPrefix?: string;
  /** Bound on entries; memory only. */
  maxEntries?: number;
  /** Connection errors reported by the Redis client, for logging; redis only. */
  onConnectionError?: (error: Error) => void;
}

/**
 * A store SESSION_STORE can name, told apart by `kind`: narrowing to `redis` gives its connection
 * (`redis`), which the rate limits share, with no cast or instanceof outside this folder.
 */
export type ConfiguredStateStore = MemoryStateStore | RedisStateStore;

/** The store SESSION_STORE names. Throws RedisUrlError for an unusable REDIS_URL. */
export function createStateStore(options: StateStoreOptions): ConfiguredStateStore {
  if (options.kind === 'memory') {
    return new MemoryStateStore({ maxEntries: options.maxEntries });
  }
  return new RedisStateStore({
    url: options.redisUrl ?? DEFAULT_REDIS_URL,
    ca: options.redisCa,
    keyPrefix: options.keyPrefix,
    onConnectionError: options.onConnectionError,
  });
}
