import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { inspect, promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createStateStore } from '../../src/store/index.js';
import { DEFAULT_KEY_PREFIX } from '../../src/store/key-prefixes.js';
import {
  buildRedisClientConfig,
  parseRedisUrl,
  RedisStateStore,
  RedisUrlError,
  redactRedisUrl,
} from '../../src/store/redis.js';
import { type StateStore, StoreUnavailableError } from '../../src/store/state-store.js';
import { startRedisServer, stopAllRedisServers } from '../helpers/redis-server.js';
import { freePort } from '../helpers/servers.js';
import { REDIS_URL, rawRedis } from '../helpers/shared-redis.js';
import { makeTestPki, type TestPki } from '../helpers/tls.js';
import { waitFor } from '../helpers/wait.js';
import { runStateStoreTests } from '../unit/state-store.suite.js';

/**
 * The contract suites send bursts of thousands of commands; on a busy machine (a CI runner, three
 * cluster masters on two cores) a burst can outlast the 1 s fail-fast default without anything
 * being wrong. Their subject is what the store answers, not how fast: the timeouts have tests of
 * their own below.
 */
const CONTRACT_TIMEOUT_MS = 10_000;

/** Every key this run writes to the shared Redis lives under this prefix, and is deleted after. */
const RUN_PREFIX = `mcp-oidc-proxy-test:session:${randomUUID()}:`;

/** Whether the store answers a ping now (false while it cannot reach Redis). */
function answers(s: StateStore): () => Promise<boolean> {
  return () =>
    s.ping().then(
      () => true,
      () => false,
    );
}

/** Resolves with what the call rejected with, and how long it took; fails if it resolved. */
async function rejection(call: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const start = performance.now();
  const outcome = await call().then(
    (value) => ({ resolved: true as const, value }),
    (error: unknown) => ({ resolved: false as const, error }),
  );
  const ms = performance.now() - start;
  if (outcome.resolved) throw new Error(`expected a rejection, got ${inspect(outcome.value)}`);
  return { error: outcome.error, ms };
}

runStateStoreTests(
  'redis',
  () => new RedisStateStore({ url: REDIS_URL, keyPrefix: RUN_PREFIX, timeoutMs: CONTRACT_TIMEOUT_MS }),
);

describe('RedisStateStore on the shared Redis', () => {
  const raw = rawRedis(RUN_PREFIX);
  const stores: StateStore[] = [];
  const store = (keyPrefix = RUN_PREFIX): RedisStateStore => {
    const s = new RedisStateStore({ url: REDIS_URL, keyPrefix });
    stores.push(s);
    return s;
  };

  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  it('writes under the key prefix with a millisecond TTL (SET PX), and SET NX PX for setIfAbsent', async () => {
    const s = store();
    await s.set('ttl-check', 'v', 5_000);
    expect(await raw.get(`${RUN_PREFIX}ttl-check`)).toBe('v');
    const pttl = await raw.pttl(`${RUN_PREFIX}ttl-check`);
    expect(pttl).toBeGreaterThan(4_000);
    expect(pttl).toBeLessThanOrEqual(5_000);
    expect(await s.setIfAbsent('nx-check', 'v', 7_000)).toBe(true);
    expect(await raw.pttl(`${RUN_PREFIX}nx-check`)).toBeGreaterThan(6_000);
    await s.delete('ttl-check');
    await s.delete('nx-check');
    expect(await raw.exists(`${RUN_PREFIX}ttl-check`, `${RUN_PREFIX}nx-check`)).toBe(0);
  });

  it('keeps deployments with different prefixes apart', async () => {
    const a = store(`${RUN_PREFIX}deployment-a:`);
    const b = store(`${RUN_PREFIX}deployment-b:`);
    await a.set('session:1', 'from-a', 60_000);
    await b.set('session:1', 'from-b', 60_000);
    await b.set('session:2', 'from-b', 60_000);
    expect(await a.get('session:1')).toBe('from-a');
    expect(await b.get('session:1')).toBe('from-b');
    expect(await a.keys('session:')).toEqual(['session:1']);
    expect(await b.count('session:')).toBe(2);
    expect(await a.take('session:2')).toBeUndefined();
    await a.delete('session:1');
    await b.delete('session:1');
    await b.delete('session:2');
  });

  it('gives a value to one taker and one lock to one claimant across 5 instances and 50 callers', async () => {
    const instances = Array.from({ length: 5 }, () => store());
    await instances[0]!.set('race:code', 'single-use', 60_000);
    const taken = await Promise.all(
      Array.from({ length: 50 }, (_, i) => instances[i % 5]!.take('race:code')),
    );
    expect(taken.filter((v) => v === 'single-use')).toHaveLength(1);
    expect(taken.filter((v) => v === undefined)).toHaveLength(49);
    const claimed = await Promise.all(
      Array.from({ length: 50 }, (_, i) => instances[i % 5]!.setIfAbsent('race:lock', `${i}`, 60_000)),
    );
    expect(claimed.filter(Boolean)).toHaveLength(1);
    await instances[0]!.delete('race:lock');
  });

  it('is what createStateStore gives for kind redis, with the default prefix unless told', async () => {
    const s = createStateStore({ kind: 'redis', redisUrl: REDIS_URL });
    stores.push(s);
    expect(s).toBeInstanceOf(RedisStateStore);
    expect(s.kind).toBe('redis');
    expect((s as RedisStateStore).keyPrefix).toBe(DEFAULT_KEY_PREFIX);
    expect(DEFAULT_KEY_PREFIX).toBe('mcp-oidc-proxy:');
    const key = `test-${randomUUID()}`;
    await s.set(key, 'v', 60_000);
    expect(await raw.get(`${DEFAULT_KEY_PREFIX}${key}`)).toBe('v');
    await s.delete(key);

    const prefixed = createStateStore({ kind: 'redis', redisUrl: REDIS_URL, keyPrefix: RUN_PREFIX });
    stores.push(prefixed);
    await prefixed.set('via-factory', 'v', 60_000);
    expect(await raw.get(`${RUN_PREFIX}via-factory`)).toBe('v');
    await prefixed.delete('via-factory');
  });
});

describe('RedisStateStore when Redis goes away (own redis-server)', () => {
  const stores: StateStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    await stopAllRedisServers();
  });

  const operations = (s: StateStore): Array<[string, () => Promise<unknown>]> => [
    ['ping', () => s.ping()],
    ['get', () => s.get('k')],
    ['set', () => s.set('k', 'v', 60_000)],
    ['setIfAbsent', () => s.setIfAbsent('k', 'v', 60_000)],
    ['take', () => s.take('k')],
    ['delete', () => s.delete('k')],
    ['keys', () => s.keys('')],
    ['count', () => s.count('')],
  ];

  async function expectAllUnavailable(s: StateStore): Promise<void> {
    for (const [name, call] of operations(s)) {
      const { error, ms } = await rejection(call);
      expect(error, name).toBeInstanceOf(StoreUnavailableError);
      expect(ms, name).toBeLessThan(1500);
    }
  }

  it('rejects every call within 1.5 s while Redis is down, then recovers without a new store', async () => {
    const port = await freePort();
    let server = await startRedisServer(port);
    const errors: Error[] = [];
    const s = new RedisStateStore({
      url: `redis://127.0.0.1:${port}`,
      onConnectionError: (e) => errors.push(e),
    });
    stores.push(s);
    await s.set('k', 'before', 60_000);
    expect(await s.get('k')).toBe('before');

    await server.stop();
    await expectAllUnavailable(s);
    // Still down a moment later, while ioredis keeps retrying in the background.
    await expectAllUnavailable(s);
    // The failed reconnect attempts reach the error reporter (the logger, in the server).
    await waitFor(
      () => errors.some((e) => /ECONNREFUSED/.test(e.message)),
      10_000,
      'a reported connection error',
    );
    const { error } = await rejection(() => s.get('k'));
    expect((error as Error).message).toMatch(
      /^Redis session store \(redis:\/\/127\.0\.0\.1:\d+\) unavailable: get failed/,
    );

    server = await startRedisServer(port);
    await waitFor(answers(s), 5000, 'the store to reconnect');
    await s.set('k', 'after', 60_000);
    expect(await s.get('k')).toBe('after');
    expect(await s.take('k')).toBe('after');
  });

  it('rejects within 1.5 s when Redis stops answering on an open connection, and recovers', async () => {
    const port = await freePort();
    const server = await startRedisServer(port);
    const s = new RedisStateStore({ url: `redis://127.0.0.1:${port}` });
    stores.push(s);
    await s.set('k', 'v', 60_000);

    server.child.kill('SIGSTOP'); // frozen: TCP stays up, nothing answers
    try {
      const { error, ms } = await rejection(() => s.get('k'));
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(ms).toBeLessThan(1500);
      const ping = await rejection(() => s.ping());
      expect(ping.error).toBeInstanceOf(StoreUnavailableError);
      expect(ping.ms).toBeLessThan(1500);
    } finally {
      server.child.kill('SIGCONT');
    }
    await waitFor(
      () =>
        s.get('k').then(
          (v) => v === 'v',
          () => false,
        ),
      5000,
      'answers again',
    );
  });

  it('never runs a call later that gave up waiting for the connection', async () => {
    const port = await freePort();
    const server = await startRedisServer(port);
    const raw = new Redis({ port, host: '127.0.0.1' });
    try {
      await raw.set(`${DEFAULT_KEY_PREFIX}code`, 'single-use');
      server.child.kill('SIGSTOP'); // the kernel accepts the connection; the handshake hangs
      const s = new RedisStateStore({ url: `redis://127.0.0.1:${port}` });
      stores.push(s);
      const { error, ms } = await rejection(() => s.take('code'));
      expect(error).toBeInstanceOf(StoreUnavailableError);
      expect(ms).toBeLessThan(1500);
      server.child.kill('SIGCONT');
      await waitFor(answers(s), 5000, 'the store to connect');
      // The abandoned take did not consume the value once the connection came up.
      expect(await raw.get(`${DEFAULT_KEY_PREFIX}code`)).toBe('single-use');
      expect(await s.take('code')).toBe('single-use');
    } finally {
      server.child.kill('SIGCONT');
      raw.disconnect();
    }
  });

  it('starts while Redis is down, answering StoreUnavailableError, and works once Redis is up', async () => {
    const port = await freePort();
    const s = new RedisStateStore({ url: `redis://127.0.0.1:${port}` });
    stores.push(s);
    await expectAllUnavailable(s);

    await startRedisServer(port);
    await waitFor(answers(s), 5000, 'the store to connect');
    await s.set('k', 'v', 60_000);
    expect(await s.get('k')).toBe('v');
  });

  it('never reveals the password, in errors, their causes or connection error reports', async () => {
    const port = await freePort();
    await startRedisServer(port, { password: 'right-pass-123' });

    const good = new RedisStateStore({ url: `redis://:right-pass-123@127.0.0.1:${port}` });
    stores.push(good);
    await good.set('k', 'v', 60_000);
    expect(await good.get('k')).toBe('v');
    expect(good.target).toBe(`redis://:***@127.0.0.1:${port}`);

    const reported: Error[] = [];
    const wrong = new RedisStateStore({
      url: `redis://default:wr0ng-secret-456@127.0.0.1:${port}`,
      onConnectionError: (e) => reported.push(e),
    });
    stores.push(wrong);
    const { error } = await rejection(() => wrong.get('k'));
    expect(error).toBeInstanceOf(StoreUnavailableError);
    const text = inspect(error, { depth: 10 });
    expect(text).toContain('redis://default:***@127.0.0.1');
    expect(text).not.toContain('wr0ng-secret-456');
    expect(inspect(reported, { depth: 10 })).not.toContain('wr0ng-secret-456');

    const deadPort = await freePort();
    const down = new RedisStateStore({ url: `redis://:dead-secret-789@127.0.0.1:${deadPort}` });
    stores.push(down);
    const dead = await rejection(() => down.ping());
    expect(dead.error).toBeInstanceOf(StoreUnavailableError);
    expect(inspect(dead.error, { depth: 10 })).not.toContain('dead-secret-789');
  });
});

describe('RedisStateStore over TLS (rediss://, own redis-server)', () => {
  let pki: TestPki;
  let port: number;
  const stores: StateStore[] = [];
  beforeAll(async () => {
    pki = makeTestPki();
    port = await freePort();
    await startRedisServer(port, {
      tls: {
        certFile: join(pki.dir, 'server.pem'),
        keyFile: join(pki.dir, 'server.key'),
        caFile: pki.caFile,
      },
    });
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });
  afterAll(async () => {
    await stopAllRedisServers();
    pki.cleanup();
  });

  it('works with the CA given, and refuses a server it cannot verify', async () => {
    const trusted = createStateStore({
      kind: 'redis',
      redisUrl: `rediss://localhost:${port}`,
      redisCa: pki.ca,
    });
    stores.push(trusted);
    await trusted.set('k', 'over tls', 60_000);
    expect(await trusted.take('k')).toBe('over tls');

    const untrusted = createStateStore({ kind: 'redis', redisUrl: `rediss://localhost:${port}` });
    stores.push(untrusted);
    const { error } = await rejection(() => untrusted.ping());
    expect(error).toBeInstanceOf(StoreUnavailableError);

    const plain = createStateStore({ kind: 'redis', redisUrl: `redis://localhost:${port}` });
    stores.push(plain);
    expect((await rejection(() => plain.ping())).error).toBeInstanceOf(StoreUnavailableError);
  });
});

describe('RedisStateStore on a Redis Cluster (3 own masters)', () => {
  let dir: string;
  let ports: number[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-cluster-'));
    const busPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      ports.push(await freePort());
      busPorts.push(await freePort());
    }
    await Promise.all(ports.map((p, i) => startRedisServer(p, { cluster: { busPort: busPorts[i]!, dir } })));
    await promisify(execFile)('redis-cli', [
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    const probes = ports.map((p) => new Redis({ port: p, host: '127.0.0.1', lazyConnect: true }));
    try {
      await waitFor(
        async () => {
          const infos = await Promise.all(probes.map((c) => c.cluster('INFO') as Promise<string>));
          return infos.every((info) => info.includes('cluster_state:ok'));
        },
        10_000,
        'the cluster to be ok',
      );
    } finally {
      for (const c of probes) c.disconnect();
    }
  }, 60_000);
  afterAll(async () => {
    await stopAllRedisServers();
    rmSync(dir, { recursive: true, force: true });
    ports = [];
  });

  runStateStoreTests(
    'redis cluster',
    () =>
      new RedisStateStore({
        url: `redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}`,
        keyPrefix: 'cluster-test:',
        timeoutMs: CONTRACT_TIMEOUT_MS,
      }),
  );

  it('spreads keys over the masters and still lists them all', async () => {
    const s = new RedisStateStore({
      url: `redis+cluster://127.0.0.1:${ports[0]}`,
      keyPrefix: 'cluster-spread:',
      timeoutMs: CONTRACT_TIMEOUT_MS,
    });
    try {
      await Promise.all(Array.from({ length: 300 }, (_, i) => s.set(`k${i}`, 'v', 60_000)));
      const perNode = await Promise.all(
        ports.map(async (p) => {
          const c = new Redis({ port: p, host: '127.0.0.1' });
          try {
            return await c.dbsize();
          } finally {
            c.disconnect();
          }
        }),
      );
      expect(perNode.every((n) => n > 0 && n < 300)).toBe(true);
      expect(await s.count('k')).toBe(300);
    } finally {
      await s.close();
    }
  });
});

describe('REDIS_URL parsing and ioredis options', () => {
  it('builds TLS options for rediss://, with the CA when given', () => {
    const withCa = buildRedisClientConfig('rediss://:pw@redis.example.com:6380/2', { ca: 'PEM-CA' });
    expect(withCa.mode).toBe('standalone');
    if (withCa.mode === 'cluster') throw new Error('unexpected');
    expect(withCa.options).toMatchObject({
      host: 'redis.example.com',
      port: 6380,
      db: 2,
      password: 'pw',
      tls: { ca: 'PEM-CA' },
    });
    const withoutCa = buildRedisClientConfig('rediss://redis.example.com');
    if (withoutCa.mode === 'cluster') throw new Error('unexpected');
    expect(withoutCa.options.tls).toEqual({});
    expect(withoutCa.options.port).toBe(6379);
    const plain = buildRedisClientConfig('redis://redis.example.com');
    if (plain.mode === 'cluster') throw new Error('unexpected');
    expect(plain.options.tls).toBeUndefined();
    expect(() => buildRedisClientConfig('redis://:secret-pw@h', { ca: 'PEM' })).toThrow(RedisUrlError);
  });

  it('builds fail-fast options: no offline queue, no resend, bounded connect and command time', () => {
    const config = buildRedisClientConfig('redis://127.0.0.1:6379');
    if (config.mode === 'cluster') throw new Error('unexpected');
    expect(config.options).toMatchObject({
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 1000,
      commandTimeout: 1000,
    });
    expect(config.options.retryStrategy?.(50)).toBe(1000);
  });

  it('parses a sentinel URL into ioredis sentinel options', () => {
    const config = buildRedisClientConfig(
      'redis+sentinel://:s3cret@sentinel-a:26380,sentinel-b,[::1]:26381/mymaster/3',
    );
    expect(config.mode).toBe('sentinel');
    if (config.mode === 'cluster') throw new Error('unexpected');
    expect(config.options.sentinels).toEqual([
      { host: 'sentinel-a', port: 26380 },
      { host: 'sentinel-b', port: 26379 },
      { host: '::1', port: 26381 },
    ]);
    expect(config.options).toMatchObject({ name: 'mymaster', db: 3, password: 's3cret' });
    expect(config.options.host).toBeUndefined();
    expect(parseRedisUrl('redis+sentinel://s1/primary').db).toBe(0);
  });

  it('parses a cluster URL into seed nodes', () => {
    const config = buildRedisClientConfig('redis+cluster://user:p%40ss@n1:7000,n2:7001,n3');
    expect(config.mode).toBe('cluster');
    if (config.mode !== 'cluster') throw new Error('unexpected');
    expect(config.nodes).toEqual([
      { host: 'n1', port: 7000 },
      { host: 'n2', port: 7001 },
      { host: 'n3', port: 6379 },
    ]);
    expect(config.options.redisOptions).toMatchObject({ username: 'user', password: 'p@ss' });
    expect(config.options.enableOfflineQueue).toBe(false);
  });

  it('takes user, percent-encoded or raw password, IPv6 host and db from redis://', () => {
    expect(parseRedisUrl('redis://alice:pa%3Ass@[::1]:6390/5')).toEqual({
      mode: 'standalone',
      tls: false,
      hosts: [{ host: '::1', port: 6390 }],
      db: 5,
      username: 'alice',
      password: 'pa:ss',
    });
    expect(parseRedisUrl('redis://:p@ss:w/rd@host').password).toBe('p@ss:w/rd');
    expect(parseRedisUrl('REDIS://localhost')).toMatchObject({
      hosts: [{ host: 'localhost', port: 6379 }],
      db: 0,
    });
  });

  it('refuses unusable URLs with RedisUrlError that masks the password', () => {
    const bad = [
      'http://:topsecret@host',
      'localhost:6379',
      'redis://:topsecret@',
      'redis://:topsecret@h1,h2',
      'redis://:topsecret@host:99999',
      'redis://:topsecret@host/notanumber',
      'redis://:topsecret@host/1/2',
      'redis://:topsecret@host?tls=true',
      'redis+sentinel://:topsecret@s1,s2',
      'redis+sentinel://:topsecret@s1/m/x',
      'redis+cluster://:topsecret@n1/0',
    ];
    for (const url of bad) {
      let thrown: unknown;
      try {
        parseRedisUrl(url);
      } catch (error) {
        thrown = error;
      }
      expect(thrown, url).toBeInstanceOf(RedisUrlError);
      expect((thrown as RedisUrlError).code).toBe('INVALID_REDIS_URL');
      expect((thrown as Error).message, url).not.toContain('topsecret');
      expect((thrown as Error).message, url).toContain('REDIS_URL');
    }
  });

  it('redacts the password for logs, whatever the URL looks like', () => {
    expect(redactRedisUrl('redis://:secret@host:6379/0')).toBe('redis://:***@host:6379/0');
    expect(redactRedisUrl('rediss://user:secret@host')).toBe('rediss://user:***@host');
    expect(redactRedisUrl('redis://secret@host')).toBe('redis://***@host');
    expect(redactRedisUrl('redis+sentinel://:se@cret@s1,s2/m')).toBe('redis+sentinel://:***@s1,s2/m');
    expect(redactRedisUrl('redis://host:6379')).toBe('redis://host:6379');
    expect(redactRedisUrl('user:secret@host')).not.toContain('secret');
  });
});
