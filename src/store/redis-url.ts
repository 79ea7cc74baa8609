import type { ClusterOptions, RedisOptions } from 'ioredis';

/**
 * REDIS_URL forms understood by the Redis session store:
 *
 *   redis://[[user]:password@]host[:port][/db]            one server (port 6379, db 0 by default)
 *   rediss://[[user]:password@]host[:port][/db]           the same over TLS (a CA PEM may be given)
 *   redis+sentinel://[[user]:password@]host1[:port1],host2[:port2]/mastername[/db]
 *       Sentinel: the hosts are sentinels (port 26379 by default); the client asks them for the
 *       current master of `mastername` and follows failovers. The password authenticates to the
 *       master, not to the sentinels.
 *   redis+cluster://[[user]:password@]host1[:port1],host2[:port2]
 *       Redis Cluster: the hosts are seed nodes (port 6379 by default); the client discovers the
 *       rest. A cluster has only db 0, so no path is allowed.
 *
 * A password with reserved characters should be percent-encoded; a raw `@` in it still works
 * because the userinfo ends at the last `@`. Query parameters are not supported.
 */
export type RedisMode = 'standalone' | 'sentinel' | 'cluster';

export interface RedisHost {
  host: string;
  port: number;
}

export interface RedisTarget {
  mode: RedisMode;
  tls: boolean;
  hosts: RedisHost[];
  /** Sentinel only: the monitored master's name. */
  masterName?: string;
  db: number;
  username?: string;
  password?: string;
}

export type RedisClientConfig =
  | { mode: 'standalone' | 'sentinel'; target: RedisTarget; options: RedisOptions }
  | { mode: 'cluster'; target: RedisTarget; nodes: RedisHost[]; options: ClusterOptions };

export interface RedisClientConfigOptions {
  /** PEM of the CA that signed the server certificate (rediss:// only). */
  ca?: string;
  /** Upper bound, in ms, for connecting and for each command; see RedisStateStore. */
  timeoutMs?: number;
}

/** A REDIS_URL that cannot be used; the message never contains the password. */
export class RedisUrlError extends Error {
  readonly code = 'INVALID_REDIS_URL';
  constructor(message: string) {
    super(message);
    this.name = 'RedisUrlError';
  }
}

const SCHEMES: Record<string, { mode: RedisMode; tls: boolean; defaultPort: number }> = {
  redis: { mode: 'standalone', tls: false, defaultPort: 6379 },
  rediss: { mode: 'standalone', tls: true, defaultPort: 6379 },
  'redis+sentinel': { mode: 'sentinel', tls: false, defaultPort: 26379 },
  'redis+cluster': { mode: 'cluster', tls: false, defaultPort: 6379 },
};

export const DEFAULT_REDIS_TIMEOUT_MS = 1000;

/**
 * The URL with its password (and any userinfo without a user/password split) replaced by `***`,
 * for logs and check-config. Works on malformed input too: it never throws and never returns the
 * secret.
 */
export function redactRedisUrl(url: string): string {
  const schemeEnd = url.indexOf('://');
  if (schemeEnd < 0) return url.includes('@') ? `***@${url.slice(url.lastIndexOf('@') + 1)}` : url;
  const head = url.slice(0, schemeEnd + 3);
  const rest = url.slice(schemeEnd + 3);
  const at = rest.lastIndexOf('@');
  if (at < 0) return url;
  const userinfo = rest.slice(0, at);
  const colon = userinfo.indexOf(':');
  const masked = colon >= 0 ? `${userinfo.slice(0, colon)}:***` : '***';
  return `${head}${masked}${rest.slice(at)}`;
}

function fail(url: string, problem: string): never {
  throw new RedisUrlError(`REDIS_URL "${redactRedisUrl(url)}" is invalid: ${problem}`);
}

function decode(url: string, part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return fail(url, 'the user or password has a malformed percent-encoding');
  }
}

function parseHost(url: string, text: string, defaultPort: number): RedisHost {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(text);
  if (!match) return fail(url, `"${text}" is not host[:port]`);
  const host = (match[1] ?? match[2])!;
  const port = match[3] === undefined ? defaultPort : Number(match[3]);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    return fail(url, `port "${match[3]}" is out of range`);
  return { host, port };
}

function parseDb(url: string, text: string): number {
  if (!/^\d+$/.test(text)) return fail(url, `database "${text}" is not a number`);
  return Number(text);
}

/** Parses a REDIS_URL (see the forms above); throws RedisUrlError. */
export function parseRedisUrl(url: string): RedisTarget {
  const schemeMatch = /^([a-z][a-z0-9+.-]*):\/\/(.*)$/i.exec(url.trim());
  if (!schemeMatch) return fail(url, 'expected redis://, rediss://, redis+sentinel:// or redis+cluster://');
  const scheme = SCHEMES[schemeMatch[1]!.toLowerCase()];
  if (!scheme) {
    return fail(
      url,
      `scheme "${schemeMatch[1]}:" is not one of redis, rediss, redis+sentinel, redis+cluster`,
    );
  }
  let rest = schemeMatch[2]!;
  let username: string | undefined;
  let password: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userinfo.indexOf(':');
    const user = colon >= 0 ? userinfo.slice(0, colon) : userinfo;
    const pass = colon >= 0 ? userinfo.slice(colon + 1) : undefined;
    if (user !== '') username = decode(url, user);
    if (pass !== undefined && pass !== '') password = decode(url, pass);
  }
  if (/[?#]/.test(rest)) return fail(url, 'query parameters and fragments are not supported');
  const slash = rest.indexOf('/');
  const authority = slash >= 0 ? rest.slice(0, slash) : rest;
  const pathParts =
    slash >= 0
      ? rest
          .slice(slash + 1)
          .split('/')
          .filter((p) => p !== '')
      : [];
  if (authority === '') return fail(url, 'no host');
  const hostTexts = authority.split(',');
  if (scheme.mode === 'standalone' && hostTexts.length > 1) {
    return fail(url, 'several hosts need redis+sentinel:// or redis+cluster://');
  }
  const hosts = hostTexts.map((h) => parseHost(url, h, scheme.defaultPort));
  const target: RedisTarget = { mode: scheme.mode, tls: scheme.tls, hosts, db: 0 };
  if (username !== undefined) target.username = username;
  if (password !== undefined) target.password = password;

  if (scheme.mode === 'standalone') {
    if (pathParts.length > 1) return fail(url, 'the path can only be a database number');
    if (pathParts[0] !== undefined) target.db = parseDb(url, pathParts[0]);
  } else if (scheme.mode === 'sentinel') {
    if (pathParts.length === 0) return fail(url, 'a sentinel URL needs the master name as its path');
    if (pathParts.length > 2) return fail(url, 'the path is /mastername[/db]');
    target.masterName = decode(url, pathParts[0]!);
    if (pathParts[1] !== undefined) target.db = parseDb(url, pathParts[1]);
  } else if (pathParts.length > 0) {
    return fail(url, 'a cluster URL has no path (a cluster has only database 0)');
  }
  return target;
}

/** Reconnect soon after Redis returns: 100 ms, 200 ms, ... capped at 1 s; never give up. */
function retryDelay(attempt: number): number {
  return Math.min(attempt * 100, 1000);
}

/**
 * ioredis options for a REDIS_URL, tuned to fail fast while Redis is down and to recover by
 * itself: no offline queue (a command issued while disconnected is rejected at once rather than
 * run later, when its caller has long been answered), in-flight commands rejected when the
 * connection drops instead of being re-sent (a re-sent GETDEL would consume a value nobody
 * receives), connect and command timeouts of `timeoutMs`, and endless reconnects.
 */
export function buildRedisClientConfig(
  url: string,
  options: RedisClientConfigOptions = {},
): RedisClientConfig {
  const target = parseRedisUrl(url);
  const timeoutMs = options.timeoutMs ?? DEFAULT_REDIS_TIMEOUT_MS;
  if (options.ca !== undefined && !target.tls) {
    throw new RedisUrlError(
      `a Redis CA certificate was given but REDIS_URL "${redactRedisUrl(url)}" does not use rediss://`,
    );
  }
  const common: RedisOptions = {
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    autoResendUnfulfilledCommands: false,
    retryStrategy: retryDelay,
  };
  if (target.username !== undefined) common.username = target.username;
  if (target.password !== undefined) common.password = target.password;

  if (target.mode === 'cluster') {
    return {
      mode: 'cluster',
      target,
      nodes: target.hosts,
      options: {
        enableOfflineQueue: false,
        clusterRetryStrategy: retryDelay,
        slotsRefreshTimeout: timeoutMs,
        redisOptions: common,
      },
    };
  }
  const redisOptions: RedisOptions = { ...common, db: target.db };
  if (target.mode === 'sentinel') {
    redisOptions.sentinels = target.hosts.map((h) => ({ host: h.host, port: h.port }));
    redisOptions.name = target.masterName!;
    redisOptions.sentinelRetryStrategy = retryDelay;
  } else {
    const { host, port } = target.hosts[0]!;
    redisOptions.host = host;
    redisOptions.port = port;
    if (target.tls) redisOptions.tls = options.ca === undefined ? {} : { ca: options.ca };
  }
  return { mode: target.mode, target, options: redisOptions };
}
