import type * as Library from 'rate-limiter-flexible';
import RateLimiterMemoryModule from 'rate-limiter-flexible/lib/RateLimiterMemory.js';
import RateLimiterRedisModule from 'rate-limiter-flexible/lib/RateLimiterRedis.js';
import RateLimiterResModule from 'rate-limiter-flexible/lib/RateLimiterRes.js';
import RLWrapperTimeoutsModule from 'rate-limiter-flexible/lib/RLWrapperTimeouts.js';

/**
 * The four rate-limiter-flexible classes the proxy uses, each loaded by itself rather than
 * through the package index, which also loads every other store (Mongo, MySQL, Postgres,
 * Memcache, DynamoDB, Prisma, Drizzle, Valkey, SQLite, etcd, cluster IPC): at start that is 36
 * modules instead of 13 and ~5 MB more resident memory. (The package publishes no `exports`
 * map, so these paths are part of its public layout; the types still come from the package, see
 * src/types/rate-limiter-flexible.d.ts.) Static imports, so that esbuild bundles them too.
 */
export const RateLimiterMemory: typeof Library.RateLimiterMemory = RateLimiterMemoryModule;
export type RateLimiterMemory = Library.RateLimiterMemory;
export const RateLimiterRedis: typeof Library.RateLimiterRedis = RateLimiterRedisModule;
export type RateLimiterRedis = Library.RateLimiterRedis;
export const RateLimiterRes: typeof Library.RateLimiterRes = RateLimiterResModule;
export type RateLimiterRes = Library.RateLimiterRes;
export const RLWrapperTimeouts: typeof Library.RLWrapperTimeouts = RLWrapperTimeoutsModule;
export type RLWrapperTimeouts = Library.RLWrapperTimeouts;
export type { RateLimiterAbstract } from 'rate-limiter-flexible';
