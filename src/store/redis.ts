import { Cluster, Redis } from 'ioredis';
import { DEFAULT_KEY_PREFIX } from './key-prefixes.js';
import {
  buildRedisClientConfig,
  DEFAULT_REDIS_TIMEOUT_MS,
  type RedisClientConfig,
  redactRedisUrl,
} from './redis-url.js';
import { type StateStore, StoreUnavailableError } from './state-store.js';
import { checkTtl } from './ttl.js';

export {
  buildRedisClientConfig,
  parseRedisUrl,
  type RedisClientConfig,
  RedisUrlError,
  redactRedisUrl,
} from './redis-url.js';

export interface RedisStateStoreOptions {
  /** See redis-url.ts for the accepted forms. */
  url: string;
  /** CA certificate (PEM) for rediss://. */
  ca?: string;
  /** Prepended to every key so several deployments can share one Redis. */
  keyPrefix?: string;
  /**
   * Upper bound in ms for one store call, waiting for a connection included; past it the call
   * rejects with StoreUnavailableError. Default 1000.
   */
  timeoutMs?: number;
  /** Connection errors as ioredis reports them (sanitised: no command arguments). */
  onConnectionError?: (error: Error) => void;
}

const SCAN_BATCH = 1000;

/** Escapes the glob characters of SCAN MATCH so a prefix is matched literally. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * A copy of an ioredis error without its `command` property: ioredis attaches the command's
 * arguments to errors, and those are session values or, for AUTH, the password.
 */
function sanitize(error: unknown): Error {
  if (!(error instanceof Error)) return new Error(String(error));
  const copy = new Error(error.message);
  copy.name = error.name;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') (copy as Error & { code: string }).code = code;
  return copy;
}

type Client = Redis | Cluster;

/**
 * StateStore on Redis (standalone, TLS, Sentinel or Cluster), through ioredis.
 *
 * Expiry is Redis's own (SET PX), so every instance sharing the Redis sees the same TTLs; `take`
 * is GETDEL (Redis >= 6.2), atomic on the server; `keys`/`count` walk SCAN MATCH on every master,
 * never KEYS, which would block Redis on a large keyspace.
 *
 * Availability: every call is bounded by `timeoutMs`. While the connection is being established
 * a call waits for it (within that bound); while Redis is known to be down (between reconnect
 * attempts) a call rejects at once with StoreUnavailableError. ioredis keeps reconnecting, so the
 * same store serves again as soon as Redis is back.
 */
export class RedisStateStore implements StateStore {
  readonly kind = 'redis' as const;
  readonly keyPrefix: string;
  /** The URL with its password masked, for messages and logs. */
  readonly target: string;
  private readonly client: Client;

  /** The connection, shared with the rate limiter so budgets are counted across instances too. */
  get redis(): Client {
    return this.client;
  }

  /** The connection and the key prefix, for counters written outside the store (rate limits). */
  get sharedCounters(): { redis: Client; keyPrefix: string } {
    return { redis: this.client, keyPrefix: this.keyPrefix };
  }
  private readonly timeoutMs: number;
  private lastError: Error | undefined;
  private readyWaiter: Promise<void> | undefined;
  private closed = false;

  constructor(options: RedisStateStoreOptions) {
    const config: RedisClientConfig = buildRedisClientConfig(options.url, {
      ca: options.ca,
      timeoutMs: options.timeoutMs,
    });
    this.keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.target = redactRedisUrl(options.url);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
    this.client =
      config.mode === 'cluster'
        ? new Cluster(
            config.nodes.map((n) => ({ host: n.host, port: n.port })),
            config.options,
          )
        : new Redis(config.options);
    // Without a listener ioredis prints every reconnect failure to stderr.
    this.client.on('error', (error: unknown) => {
      this.lastError = sanitize(error);
      options.onConnectionError?.(this.lastError);
    });
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    const px = checkTtl(ttlMs);
    await this.run('set', () => this.client.set(this.keyPrefix + key, value, 'PX', px));
  }

  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    const px = checkTtl(ttlMs);
    const reply = await this.run('setIfAbsent', () =>
      this.client.set(this.keyPrefix + key, value, 'PX', px, 'NX'),
    );
    return reply === 'OK';
  }

  async get(key: string): Promise<string | undefined> {
    const value = await this.run('get', () => this.client.get(this.keyPrefix + key));
    return value ?? undefined;
  }

  async getMany(keys: readonly string[]): Promise<Array<string | undefined>> {
    if (keys.length === 0) return [];
    const full = keys.map((key) => this.keyPrefix + key);
    const values = await this.run('getMany', () =>
      // A cluster refuses MGET across hash slots: there each key is read from its own master
      // (ioredis sends the GETs together, so it is still one round trip per node).
      this.client instanceof Cluster
        ? Promise.all(full.map((key) => this.client.get(key)))
        : this.client.mget(...full),
    );
    return values.map((value) => value ?? undefined);
  }

  async take(key: string): Promise<string | undefined> {
    const value = await this.run('take', () => this.client.getdel(this.keyPrefix + key));
    return value ?? undefined;
  }

  async delete(key: string): Promise<void> {
    await this.run('delete', () => this.client.del(this.keyPrefix + key));
  }

  keys(prefix: string): Promise<string[]> {
    return this.run('keys', async () => [...(await this.scan(prefix))]);
  }

  count(prefix: string): Promise<number> {
    return this.run('count', async () => (await this.scan(prefix)).size);
  }

  async ping(): Promise<void> {
    await this.run('ping', () => this.client.ping());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      // QUIT lets pending replies arrive; when Redis is unreachable just drop the socket.
      if (this.client.status === 'ready') await this.client.quit();
      else this.client.disconnect();
    } catch {
      this.client.disconnect();
    }
  }

  /** Distinct live keys under `prefix` (without the store's key prefix), from every master. */
  private async scan(prefix: string): Promise<Set<string>> {
    const fullPrefix = this.keyPrefix + prefix;
    const pattern = `${globEscape(fullPrefix)}*`;
    const nodes: Redis[] = this.client instanceof Cluster ? this.client.nodes('master') : [this.client];
    const found = new Set<string>();
    await Promise.all(
      nodes.map(async (node) => {
        let cursor = '0';
        do {
          const [next, batch] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_BATCH);
          // SCAN may return a key twice; the Set removes duplicates.
          for (const k of batch) found.add(k.slice(this.keyPrefix.length));
          cursor = next;
        } while (cursor !== '0');
      }),
    );
    return found;
  }

  /** Runs one operation within `timeoutMs`, turning every failure into StoreUnavailableError. */
  private async run<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new StoreUnavailableError(`Redis session store (${this.target}) is closed`);
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new Error(`no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
    });
    // A call that gave up while waiting for the connection must not run later: its caller has
    // been answered, and a late GETDEL would consume a value nobody receives.
    const work = this.whenReady().then(() => {
      if (timedOut) throw new Error('timed out waiting for the connection');
      return fn();
    });
    try {
      return await Promise.race([work, deadline]);
    } catch (error) {
      const cause = sanitize(error);
      throw new StoreUnavailableError(
        `Redis session store (${this.target}) unavailable: ${operation} failed: ${cause.message}`,
        { cause },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Resolves when the client can take commands. While a connection attempt is under way, waits
   * for its outcome (one shared listener set, however many callers); otherwise Redis is down or
   * the store is closed, and it rejects at once.
   */
  private whenReady(): Promise<void> {
    const status = this.client.status;
    if (status === 'ready') return Promise.resolve();
    if (status === 'wait' || status === 'connecting' || status === 'connect') {
      this.readyWaiter ??= new Promise<void>((resolve, reject) => {
        const settle = (error?: Error): void => {
          this.client.off('ready', onReady);
          this.client.off('close', onClose);
          this.client.off('end', onClose);
          this.readyWaiter = undefined;
          if (error) reject(error);
          else resolve();
        };
        const onReady = (): void => settle();
        const onClose = (): void =>
          settle(new Error(this.lastError?.message ?? 'the connection to Redis closed'));
        this.client.once('ready', onReady);
        this.client.once('close', onClose);
        this.client.once('end', onClose);
      });
      return this.readyWaiter;
    }
    const reason = this.lastError?.message ?? `connection is ${status}`;
    return Promise.reject(new Error(`not connected (${reason})`));
  }
}
