import { MemorySessionStore } from './memory.js';
import { RedisSessionStore } from './redis.js';
import type { SessionStore } from './store.js';

export { DEFAULT_MAX_ENTRIES, MemorySessionStore, type MemorySessionStoreOptions } from './memory.js';
export {
  buildRedisClientConfig,
  DEFAULT_KEY_PREFIX,
  parseRedisUrl,
  RedisSessionStore,
  type RedisSessionStoreOptions,
  RedisUrlError,
  redactRedisUrl,
} from './redis.js';
export { type SessionStore, StoreUnavailableError } from './store.js';

export const DEFAULT_REDIS_URL = 'redis://localhost:6379';

export interface SessionStoreOptions {
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

/** The store SESSION_STORE names. Throws RedisUrlError for an unusable REDIS_URL. */
export function createSessionStore(options: SessionStoreOptions): SessionStore {
  if (options.kind === 'memory') {
    return new MemorySessionStore({ maxEntries: options.maxEntries });
  }
  return new RedisSessionStore({
    url: options.redisUrl ?? DEFAULT_REDIS_URL,
    ca: options.redisCa,
    keyPrefix: options.keyPrefix,
    onConnectionError: options.onConnectionError,
  });
}
