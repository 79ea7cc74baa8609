import { rootCertificates } from 'node:tls';
import type { Config } from '../config/types.js';
import { Pool } from './undici-pool.js';

/** The connection pool to the MCP server and how paths map onto it. */
export interface Upstream {
  pool: Pool;
  /** Origin of the target (scheme://host:port). */
  origin: string;
  /** Path prefix from PROXY_TARGET_URL, without a trailing slash ('' for none). */
  prefix: string;
  /** `Host` header value the backend gets (its own authority, so its DNS-rebinding check passes). */
  host: string;
  /** The PROXY_* settings the pool was built with: a reload that changes them builds a new one. */
  settings: string;
}

/**
 * A pool to `url` with the PROXY_* timeouts and CA; through `socketPath` (a Unix socket: the
 * stdio bridge) instead of TCP when given.
 */
export function createUpstream(url: URL, target: Config['target'], socketPath?: string): Upstream {
  const pool = new Pool(url.origin, {
    // No cap: every SSE stream or long tool call holds a connection for its whole life, and a
    // capped pool would queue the next request behind them with no answer.
    connections: null,
    pipelining: 1,
    keepAliveTimeout: 4_000,
    keepAliveMaxTimeout: 60_000,
    headersTimeout: target.headersTimeoutMs,
    // Idle body time is enforced by the forwarder, which knows whether a response is SSE.
    bodyTimeout: 0,
    connect: {
      timeout: target.connectTimeoutMs,
      ...(socketPath ? { socketPath } : {}),
      // A custom CA is added to the system roots, not put in their place.
      ...(target.ca ? { ca: [...rootCertificates, target.ca] } : {}),
    },
  });
  return {
    pool,
    origin: url.origin,
    prefix: url.pathname.replace(/\/+$/, ''),
    host: url.host,
    settings: JSON.stringify(target),
  };
}

/** The path sent upstream: the target's prefix followed by the request path, unchanged. */
export function upstreamPath(upstream: Upstream, pathAndQuery: string): string {
  return upstream.prefix + pathAndQuery;
}
