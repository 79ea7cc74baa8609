import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Authenticator, BypassAuthenticator } from '../auth/authenticator.js';
import type { SessionAuthenticator } from '../auth/session-authenticator.js';
import type { Config } from '../config/types.js';
import { HealthChecker } from '../observability/health.js';
import type { Logger } from '../observability/logger.js';
import { BREAKER_STATE_VALUE, createMetrics, type Metrics } from '../observability/metrics.js';
import { TrustedProxies } from '../pipeline/client-address.js';
import { Pipeline } from '../pipeline/handler.js';
import { OriginGuard } from '../pipeline/origin-guard.js';
import { securityHeaders } from '../pipeline/security-headers.js';
import { CircuitBreaker } from '../proxy/breaker.js';
import { Forwarder, type LiveStream } from '../proxy/forward.js';
import { createUpstream } from '../proxy/upstream.js';
import { goingAwayFrame, rawResponseHead, type Tunnel } from '../proxy/websocket.js';
import { ConnectionTracker } from './connections.js';

export interface RunningProxy {
  server: Server;
  /** The URL the proxy listens on (with the real port when 0 was asked). */
  url: string;
  metrics: Metrics;
  breaker: CircuitBreaker;
  /** Graceful shutdown: stop accepting, end streams, let in-flight requests finish within the deadline. */
  shutdown(): Promise<void>;
}

export interface StartOptions {
  config: Config;
  logger: Logger;
  /** Replaces the authentication stage chosen from the config (tests, later auth modes). */
  authenticator?: Authenticator;
}

/** The session-backed stage, when there is one, for health and the sessions gauge. */
function sessionSourceOf(
  authenticator: Authenticator,
): { sessions: { count(): Promise<number> }; provider: { isReady(): boolean } } | undefined {
  const candidate = authenticator as Partial<SessionAuthenticator>;
  return candidate.sessions && candidate.provider
    ? { sessions: candidate.sessions, provider: candidate.provider }
    : undefined;
}

/**
 * Counts the store's sessions for /health and the gauge; concurrent callers share one count
 * (a SCAN on Redis) instead of starting one each.
 */
function sessionCounter(sessions: { count(): Promise<number> } | undefined): () => Promise<number> {
  if (!sessions) return () => Promise.resolve(0);
  let inFlight: Promise<number> | undefined;
  return () => {
    inFlight ??= sessions.count().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
}

/** A set that reports its size on every change (the active-streams gauge). */
function trackedSet<T>(onChange: (size: number) => void): {
  items: Set<T>;
  add(item: T): void;
  delete(item: T): void;
} {
  const items = new Set<T>();
  return {
    items,
    add(item) {
      items.add(item);
      onChange(items.size);
    },
    delete(item) {
      items.delete(item);
      onChange(items.size);
    },
  };
}

async function chooseAuthenticator(config: Config, logger: Logger, metrics: Metrics): Promise<Authenticator> {
  if (config.auth.mode === 'bypass') {
    logger.warn(
      'AUTH_MODE=bypass: NO LOGIN. Every request reaches the MCP server unauthenticated. Use only for local development.',
    );
    return new BypassAuthenticator();
  }
  // Loaded on demand: openid-client, the session stores and Redis are no weight in bypass mode.
  const { SessionAuthenticator } = await import('../auth/session-authenticator.js');
  return SessionAuthenticator.create(config, logger, metrics);
}

/** Composition root: builds every part from the config and starts listening. */
export async function startProxy(options: StartOptions): Promise<RunningProxy> {
  const { config, logger } = options;
  const metrics = createMetrics();
  const authenticator = options.authenticator ?? (await chooseAuthenticator(config, logger, metrics));
  const sessionSource = sessionSourceOf(authenticator);
  const breaker = new CircuitBreaker({
    threshold: config.target.breakerThreshold,
    resetMs: config.target.breakerResetMs,
    onStateChange: (state) => {
      metrics.breakerState.set(BREAKER_STATE_VALUE[state]);
      const log = state === 'open' ? logger.error.bind(logger) : logger.info.bind(logger);
      log({ breaker: state, target: config.target.url.origin }, `circuit breaker ${state.replace('_', '-')}`);
    },
  });
  metrics.breakerState.set(0);
  metrics.sessionsActive.set(0);

  const upstream = createUpstream(config.target);
  const streams = trackedSet<LiveStream>((n) => metrics.activeStreams.set({ kind: 'sse' }, n));
  const tunnels = trackedSet<Tunnel>((n) => metrics.activeStreams.set({ kind: 'websocket' }, n));
  const headers = securityHeaders(config.security.contentSecurityPolicy);
  const forwarder = new Forwarder(
    upstream,
    breaker,
    {
      retries: config.target.retries,
      idleTimeoutMs: config.target.idleTimeoutMs,
      sseKeepaliveMs: config.target.sseKeepaliveMs,
      responseDefaults: config.security.headersOnProxied ? headers : [],
      errorHeaders: headers,
      draining: () => draining,
    },
    streams,
  );
  const targetUrl = config.target.url;
  const countSessions = sessionCounter(sessionSource?.sessions);
  // The gauge is read from the store when /metrics is scraped, so every instance sharing a
  // Redis reports what the store holds now, not a copy from its last health check. While the
  // store is down it keeps its last value; /health says why.
  const sessionsGauge = metrics.sessionsActive as unknown as { collect?: () => Promise<void> };
  sessionsGauge.collect = async () => {
    try {
      metrics.sessionsActive.set(await countSessions());
    } catch {}
  };
  const health = new HealthChecker({
    targetHost: targetUrl.hostname,
    targetPort: Number(targetUrl.port) || (targetUrl.protocol === 'https:' ? 443 : 80),
    breakerState: () => breaker.state,
    activeSessions: async () => {
      const n = await countSessions();
      metrics.sessionsActive.set(n);
      return n;
    },
    identityProviderProblem: sessionSource
      ? () =>
          sessionSource.provider.isReady()
            ? undefined
            : 'identity provider not reachable yet (OIDC_DISCOVERY_URL); retrying'
      : undefined,
  });

  let draining = false;
  const server = createServer({
    // Uploads and tool calls may legitimately take long; idle sockets are reaped by keepAliveTimeout.
    requestTimeout: 0,
    headersTimeout: 30_000,
    keepAliveTimeout: 65_000,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.server.port, config.server.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  // With SERVER_PORT=0 the default public URL names the port actually chosen.
  const publicUrl =
    config.sources.PUBLIC_URL === undefined ? new URL(`http://localhost:${port}`) : config.server.publicUrl;
  const connections = new ConnectionTracker(server);
  const pipeline = new Pipeline({
    config,
    logger,
    metrics,
    health,
    guard: new OriginGuard(publicUrl, config.server.allowedOrigins),
    trusted: new TrustedProxies(config.server.trustedProxies),
    authenticator,
    forwarder,
    upstream,
    tunnels,
    securityHeaders: headers,
    draining: () => draining,
    onResponseDone: (socket) => connections.responseDone(socket),
  });
  server.on('request', pipeline.handle);
  server.on('upgrade', pipeline.handleUpgrade);
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || err.code === 'ECONNRESET') return socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    const body = JSON.stringify({
      error: 'invalid_request',
      error_description: 'The request could not be parsed.',
    });
    socket.end(
      rawResponseHead(status, status === 431 ? 'Request Header Fields Too Large' : 'Bad Request', [
        ['content-type', 'application/json'],
        ['content-length', String(Buffer.byteLength(body))],
        ['connection', 'close'],
        ...headers,
      ]) + body,
    );
  });

  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${address.port}`;
  logger.info(
    {
      listen: `${host}:${address.port}`,
      public_url: publicUrl.origin,
      target: targetUrl.href,
      auth_mode: authenticator.mode,
    },
    'mcp-oidc-proxy listening',
  );

  let shutdownPromise: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    shutdownPromise ??= (async () => {
      draining = true;
      logger.info(
        {
          in_flight_streams: streams.items.size + tunnels.items.size,
          deadline_ms: config.server.shutdownTimeoutMs,
        },
        'shutting down: no new connections; finishing in-flight requests',
      );
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // From now on every response head says `Connection: close` (the `draining` flag), and each
      // socket closes once its response is done, so keep-alive clients do not reuse it.
      connections.drain();
      for (const stream of [...streams.items]) stream.end();
      for (const tunnel of [...tunnels.items]) {
        // Stop relaying, say 1001 (going away) to both peers, and keep reading (discarding)
        // so each peer's closing reply and FIN arrive and the sockets can close.
        for (const [socket, frame] of [
          [tunnel.client, goingAwayFrame(false)],
          [tunnel.upstream, goingAwayFrame(true)],
        ] as const) {
          socket.unpipe();
          socket.end(frame);
          socket.resume();
        }
      }
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), config.server.shutdownTimeoutMs);
      });
      const outcome = await Promise.race([closed.then(() => 'done' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        logger.warn('shutdown deadline reached: closing the remaining connections');
        connections.destroyAll();
        for (const tunnel of tunnels.items) {
          tunnel.client.destroy();
          tunnel.upstream.destroy();
        }
        await closed;
      }
      await upstream.pool.close().catch(() => upstream.pool.destroy());
      await authenticator.close?.();
      logger.info('shutdown complete');
    })();
    return shutdownPromise;
  };

  return { server, url, metrics, breaker, shutdown };
}
