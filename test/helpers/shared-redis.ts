import { Redis } from 'ioredis';
import { afterAll } from 'vitest';

/** The Redis the tests share (a CI service, or one on the developer's machine). */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Every key matching the SCAN `pattern`, each once (SCAN may return a key twice). */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const found = new Set<string>();
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    for (const key of batch) found.add(key);
    cursor = next;
  } while (cursor !== '0');
  return [...found];
}

/**
 * A direct connection to the shared Redis, to look behind a store's back; it connects on first
 * use. Call it in a describe block: after the block's tests, every key under `prefix` is
 * deleted and the connection closed.
 */
export function rawRedis(prefix: string): Redis {
  const raw = new Redis(REDIS_URL, { lazyConnect: true });
  afterAll(async () => {
    const leftovers = await scanKeys(raw, `${prefix}*`);
    if (leftovers.length > 0) await raw.del(...leftovers);
    await raw.quit();
  });
  return raw;
}
