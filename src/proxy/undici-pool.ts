import { createRequire } from 'node:module';
import type { Pool as UndiciPool } from 'undici';

/**
 * undici's connection pool, loaded by itself rather than through the package index: the
 * index also loads fetch, web streams, caches and mocks the proxy never uses, which cost
 * about 13 MB of resident memory at idle. (undici publishes no `exports` map, so the module
 * path is part of its public layout; the types still come from the package.)
 */
export const Pool: typeof UndiciPool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js');
export type Pool = UndiciPool;
