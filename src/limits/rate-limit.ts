import type { ServerResponse } from 'node:http';
import { isIP } from 'node:net';
import type { Cluster, Redis } from 'ioredis';
import { type ErrorAnswer, sendError } from '../http/errors.js';
import { ipv6Network64 } from '../net/ip.js';
import { RATE_LIMIT_PREFIXES } from '../store/key-prefixes.js';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  RateLimiterRes,
  RLWrapperTimeouts,
} from './rate-limiter-flexible.js';

export type RateLimitDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/** Counts requests per key (user id or client IP) and says whether one more is allowed. */
export interface RateLimiter {
  consume(key: string): Promise<RateLimitDecision>;
  close?(): Promise<void> | void;
}

/** Where budgets are counted across proxy instances: the state store's Redis and its key prefix. */
export interface SharedCounters {
  /** The caller owns (connects and quits) the client. */
  redis: Redis | Cluster;
  /** REDIS_KEY_PREFIX: put in front of the budget's own prefix, as in front of every key. */
  keyPrefix: string;
}

export interface RateLimiterOptions {
  /** Requests allowed per key per minute; `0` turns limiting off. */
  perMinute: number;
  /**
   * Namespaces the counters, e.g. `mcp-oidc-proxy:rl:auth` (budgetOptions() builds it); limiters
   * sharing Redis and a prefix share budgets.
   */
  keyPrefix: string;
  /** Shared counters across proxy instances. The caller owns (connects and quits) the client. */
  redis?: Redis | Cluster;
  /** How long a Redis call may take before the in-memory insurance limiter answers instead. */
  redisTimeoutMs?: number;
}

/**
 * The options of one of the proxy's budgets (`budget` from RATE_LIMIT_PREFIXES): in the shared
 * Redis under REDIS_KEY_PREFIX when there is one, in memory otherwise.
 */
export function budgetOptions(
  perMinute: number,
  budget: string,
  shared: SharedCounters | undefined,
): RateLimiterOptions {
  return shared
    ? { perMinute, keyPrefix: shared.keyPrefix + budget, redis: shared.redis }
    : { perMinute, keyPrefix: budget };
}

const WINDOW_SECONDS = 60;
const DEFAULT_REDIS_TIMEOUT_MS = 500;

const ALLOWED: RateLimitDecision = Object.freeze({ allowed: true });

/**
 * Builds the limiter for one budget (`AUTH_RATE_LIMIT_PER_MINUTE`, `RATE_LIMIT_PER_MINUTE`), or
 * `undefined` when `perMinute` is 0. Windows are fixed: a key's 60 s window starts at its first
 * request, so a client can at most make 2 x perMinute requests across a window boundary.
 *
 * With Redis, every instance counts in the same keys, so N proxies share one budget. When Redis
 * fails, limiting neither fails open nor fails the request: the `insuranceLimiter` (in memory,
 * same budget) answers instead, so each instance still limits on its own (N instances then allow
 * up to N x perMinute in total) until Redis is back. That covers three failure shapes:
 * - Redis errors (refused, reset): rate-limiter-flexible falls back to the insurance limiter;
 * - the client is not connected (reconnecting, or a `lazyConnect` client nobody connected yet):
 *   `rejectIfRedisNotReady` skips Redis instead of queueing commands until it returns;
 * - Redis is connected but stops answering: `RLWrapperTimeouts` gives up after `redisTimeoutMs`.
 */
export function createRateLimiter(options: RateLimiterOptions): RateLimiter | undefined {
  const { perMinute, keyPrefix } = options;
  if (!Number.isInteger(perMinute) || perMinute < 0) {
    throw new RangeError(`rate limit must be a whole number of requests per minute >= 0, got ${perMinute}`);
  }
  if (perMinute === 0) return undefined;
  const memory = (): RateLimiterMemory =>
    new RateLimiterMemory({ points: perMinute, duration: WINDOW_SECONDS, keyPrefix });
  if (!options.redis) return new LibraryRateLimiter(memory());
  const shared = new RateLimiterRedis({
    storeClient: options.redis,
    points: perMinute,
    duration: WINDOW_SECONDS,
    keyPrefix,
    rejectIfRedisNotReady: true,
  });
  // The insurance sits on the wrapper only: a Redis failure or a timeout is then counted once
  // in memory, whichever comes first.
  const limiter = new RLWrapperTimeouts({
    limiter: shared,
    timeoutMs: options.redisTimeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS,
    insuranceLimiter: memory(),
  });
  return new LibraryRateLimiter(limiter);
}

class LibraryRateLimiter implements RateLimiter {
  constructor(private readonly limiter: RateLimiterAbstract | RLWrapperTimeouts) {}

  async consume(key: string): Promise<RateLimitDecision> {
    try {
      await this.limiter.consume(key);
      return ALLOWED;
    } catch (err) {
      // A RateLimiterRes rejection means "over the limit"; anything else is a real failure
      // (the insurance limiter already absorbed store errors) and propagates as a 500.
      if (!(err instanceof RateLimiterRes)) throw err;
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil(err.msBeforeNext / 1000)) };
    }
  }
}

export interface RateLimitSettings {
  /** AUTH_RATE_LIMIT_PER_MINUTE. */
  authRateLimitPerMinute: number;
  /** RATE_LIMIT_PER_MINUTE. */
  rateLimitPerMinute: number;
}

/**
 * The proxy's two budgets, replaced as a whole when a reload changes one, so readers take the
 * current limiter on every request:
 * - `auth` (AUTH_RATE_LIMIT_PER_MINUTE): per client IP, spent by the login and authorization
 *   endpoints themselves; they hold `authLimiter`, which follows reloads;
 * - `requests` (RATE_LIMIT_PER_MINUTE): per user, or client IP when anonymous, spent by the
 *   pipeline on every other route; `undefined` when off, so that costs one property read.
 * With Redis the counters live there, so a reload that changes a budget keeps the counts
 * (without it, a changed budget starts counting afresh).
 */
export class RateLimits {
  auth: RateLimiter | undefined;
  requests: RateLimiter | undefined;
  /** The auth budget as one limiter that always uses the current one (allows all while off). */
  readonly authLimiter: RateLimiter = {
    consume: (key) => (this.auth ? this.auth.consume(key) : Promise.resolve(ALLOWED)),
  };
  private settings: RateLimitSettings = { authRateLimitPerMinute: 0, rateLimitPerMinute: 0 };

  constructor(
    settings: RateLimitSettings,
    private readonly shared?: SharedCounters,
  ) {
    this.configure(settings);
  }

  /** Rebuilds the budgets whose per-minute number changed. */
  configure(settings: RateLimitSettings): void {
    const { shared } = this;
    if (settings.authRateLimitPerMinute !== this.settings.authRateLimitPerMinute) {
      const perMinute = settings.authRateLimitPerMinute;
      this.auth = createRateLimiter(budgetOptions(perMinute, RATE_LIMIT_PREFIXES.auth, shared));
    }
    if (settings.rateLimitPerMinute !== this.settings.rateLimitPerMinute) {
      const perMinute = settings.rateLimitPerMinute;
      this.requests = createRateLimiter(budgetOptions(perMinute, RATE_LIMIT_PREFIXES.requests, shared));
    }
    this.settings = {
      authRateLimitPerMinute: settings.authRateLimitPerMinute,
      rateLimitPerMinute: settings.rateLimitPerMinute,
    };
  }
}

/** A 429 with `Retry-After` (whole seconds, at least 1): nothing of the request is forwarded or served. */
export function tooManyRequests(retryAfterSeconds: number): ErrorAnswer {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  return {
    status: 429,
    error: 'rate_limited',
    description: `Too many requests; retry after ${seconds} s.`,
    headers: [['retry-after', String(seconds)]],
  };
}

/**
 * The budget a client address spends: an IPv4 address its own, an IPv6 address its /64 — the
 * smallest network one subscriber is given (RFC 6177, RFC 7421), so stepping through the 2^64
 * addresses of one's own network buys no fresh budgets. `ip` as the client-address stage
 * writes it (canonical; IPv4-mapped addresses already plain IPv4).
 */
export function addressBudget(ip: string): string {
  return (isIP(ip) === 6 && ipv6Network64(ip)) || ip;
}

/**
 * Spends one request of `key`'s budget; when it is used up, answers 429 (with Retry-After)
 * and returns true. No limiter (rate limiting off) never refuses.
 */
export async function refuseOverLimit(
  limiter: RateLimiter | undefined,
  key: string,
  res: ServerResponse,
  requestId: string,
): Promise<boolean> {
  if (!limiter) return false;
  const verdict = await limiter.consume(key);
  if (verdict.allowed) return false;
  sendError(res, tooManyRequests(verdict.retryAfterSeconds), requestId);
  return true;
}
