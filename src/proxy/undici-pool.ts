import type { Pool as UndiciPool } from 'undici';
import PoolModule from 'undici/lib/dispatcher/pool.js';

/**
 * undici's connection pool, loaded by itself rather than through the package index: the
 * index also loads fetch, web streams, caches and mocks the proxy never uses, which cost
 * about 13 MB of resident memory at idle. (undici publishes no `exports` map, so the module
 * path is part of its public layout; the types still come from the package, see
 * src/types/undici-pool.d.ts.) A static import, so that esbuild can bundle it too.
 */
export const Pool: typeof UndiciPool = PoolModule;
export type Pool = UndiciPool;
