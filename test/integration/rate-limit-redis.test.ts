import { randomUUID } from 'node:crypto';
import { createServer, type Server, Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRateLimiter, type RateLimiter } from '../../src/limits/rate-limit.js';
import { freePort } from '../helpers/servers.js';
import { REDIS_URL } from '../helpers/shared-redis.js';

const PREFIX = `mcp-oidc-proxy-test:rl:${randomUUID()}`;

function limiter(options: Parameters<typeof createRateLimiter>[0]): RateLimiter {
  const created = createRateLimiter(options);
  if (!created) throw new Error('expected a limiter');
  return created;
}

async function consumeTimes(l: RateLimiter, key: string, times: number): Promise<boolean[]> {
  const out: boolean[] = [];
  for (let i = 0; i < times; i++) out.push((await l.consume(key)).allowed);
  return out;
}

/**
 * A TCP relay in front of the real Redis that can stop relaying: the connection stays open
 * and ready while Redis "stops answering", as in a network partition.
 */
async function startFreezableRelay(): Promise<{ port: number; freeze(): void; close(): Promise<void> }> {
  const target = new URL(REDIS_URL);
  const sockets = new Set<Socket>();
  let frozen = false;
  const server: Server = createServer((client) => {
    const upstream = new Socket();
    upstream.connect(Number(target.port || 6379), target.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (d: Buffer) => {
      if (!frozen) upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      if (!frozen) client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    freeze: () => {
      frozen = true;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('createRateLimiter with Redis', () => {
  // Two clients stand for two proxy instances.
  let instanceA: Redis;
  let instanceB: Redis;

  beforeAll(async () => {
    instanceA = new Redis(REDIS_URL, { lazyConnect: true });
    instanceB = new Redis(REDIS_URL, { lazyConnect: true });
    await Promise.all([instanceA.connect(), instanceB.connect()]);
  });

  afterAll(async () => {
    const keys = await instanceA.keys(`${PREFIX}*`);
    if (keys.length > 0) await instanceA.del(...keys);
    await Promise.all([instanceA.quit(), instanceB.quit()]);
  });

  it('two instances sharing Redis share one budget', async () => {
    const keyPrefix = `${PREFIX}:shared`;
    const a = limiter({ perMinute: 4, keyPrefix, redis: instanceA });
    const b = limiter({ perMinute: 4, keyPrefix, redis: instanceB });
    expect(await consumeTimes(a, '203.0.113.7', 2)).toEqual([true, true]);
    expect(await consumeTimes(b, '203.0.113.7', 2)).toEqual([true, true]);
    const refusedB = await b.consume('203.0.113.7');
    const refusedA = await a.consume('203.0.113.7');
    expect(refusedA.allowed).toBe(false);
    expect(refusedB.allowed).toBe(false);
    if (refusedA.allowed) return;
    expect(refusedA.retryAfterSeconds).toBeGreaterThanOrEqual(59);
    expect(refusedA.retryAfterSeconds).toBeLessThanOrEqual(60);
    // The count lives in Redis, not in either instance's memory.
    expect(Number(await instanceA.get(`${keyPrefix}:203.0.113.7`))).toBe(6);
    const ttl = await instanceA.pttl(`${keyPrefix}:203.0.113.7`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60_000);
    // Another key has its own budget.
    expect((await b.consume('203.0.113.8')).allowed).toBe(true);
  });

  it('different prefixes are separate budgets in the same Redis', async () => {
    const auth = limiter({ perMinute: 1, keyPrefix: `${PREFIX}:auth`, redis: instanceA });
    const api = limiter({ perMinute: 1, keyPrefix: `${PREFIX}:api`, redis: instanceA });
    expect(await consumeTimes(auth, 'k', 2)).toEqual([true, false]);
    expect(await consumeTimes(api, 'k', 2)).toEqual([true, false]);
  });

  it('a Redis error answered by a live Redis falls back to the insurance limiter', async () => {
    const keyPrefix = `${PREFIX}:error`;
    // A non-integer value makes the counter script fail in Redis itself.
    await instanceA.set(`${keyPrefix}:k`, 'not-a-number', 'EX', 60);
    const l = limiter({ perMinute: 2, keyPrefix, redis: instanceA });
    expect(await consumeTimes(l, 'k', 3)).toEqual([true, true, false]);
    expect(await instanceA.get(`${keyPrefix}:k`)).toBe('not-a-number');
  });

  it('with Redis down, each instance still limits from memory', async () => {
    const down = new Redis({
      host: '127.0.0.1',
      port: await freePort(),
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
    });
    const errors: Error[] = [];
    down.on('error', (err: Error) => errors.push(err));
    try {
      const l = limiter({ perMinute: 2, keyPrefix: `${PREFIX}:down`, redis: down });
      expect(await consumeTimes(l, 'k', 3)).toEqual([true, true, false]);
      const refused = await l.consume('k');
      expect(refused.allowed).toBe(false);
      if (!refused.allowed) expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(59);
      expect((await l.consume('other')).allowed).toBe(true);
      // Also while the client is trying (and failing) to connect, not only before.
      down.connect().catch(() => {});
      expect(await consumeTimes(l, 'k2', 3)).toEqual([true, true, false]);
    } finally {
      down.disconnect();
    }
  });

  it('with Redis connected but not answering, the insurance limiter answers after the timeout', async () => {
    const relay = await startFreezableRelay();
    const stalled = new Redis({ host: '127.0.0.1', port: relay.port, lazyConnect: true });
    stalled.on('error', () => {});
    try {
      await stalled.connect();
      const l = limiter({
        perMinute: 2,
        keyPrefix: `${PREFIX}:stalled`,
        redis: stalled,
        // Generous: the first call must be answered by Redis even on a loaded CI machine, or
        // the insurance limiter would already have counted it.
        redisTimeoutMs: 1000,
      });
      expect((await l.consume('k')).allowed).toBe(true);
      relay.freeze();
      expect(stalled.status).toBe('ready');
      expect(await consumeTimes(l, 'k', 3)).toEqual([true, true, false]);
    } finally {
      stalled.disconnect();
      await relay.close();
    }
  });
});
