import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { AuditLog } from '../auth/audit.js';
import { type Authenticator, BypassAuthenticator } from '../auth/authenticator.js';
import { packageVersion } from '../cli/version.js';
import { type SettingValues, settingValues } from '../config/load.js';
import {
  type ConfigChanges,
  compareSettings,
  describeChanges,
  takeReloadable,
  valuesAfterReload,
} from '../config/reload.js';
import type { Config } from '../config/types.js';
import { endSocketWithError } from '../http/errors.js';
import { RateLimits } from '../limits/rate-limit.js';
import { McpCallAudit } from '../mcp/call-audit.js';
import { HealthChecker } from '../observability/health.js';
import type { Logger } from '../observability/logger.js';
import { createMetrics, type Metrics } from '../observability/metrics.js';
import { startTracing, type Tracing } from '../observability/spans.js';
import { TrustedProxies } from '../pipeline/client-address.js';
import { Pipeline } from '../pipeline/handler.js';
import { OriginGuard } from '../pipeline/origin-guard.js';
import { securityHeaders } from '../pipeline/security-headers.js';
import type { LiveStream } from '../proxy/forward.js';
import { goingAwayFrame, type Tunnel } from '../proxy/websocket.js';
import { Backends, describeServer } from './backends.js';
import { ConnectionTracker } from './connections.js';
import { closed, httpServer, listen, listeningAt } from './listen.js';
import type { OidcMode } from './oidc.js';

export interface RunningProxy {
  server: Server;
  /** The URL the proxy listens on (with the real port when 0 was asked). */
  url: string;
  /** ADMIN_LISTEN's listener and the URL it listens on; undefined without ADMIN_LISTEN. */
  admin?: { server: Server; url: string };
  metrics: Metrics;
  /** The MCP servers behind the proxy (pools, breakers, stdio bridges). */
  backends: Backends;
  /** Graceful shutdown: stop accepting, end streams, let in-flight requests finish within the deadline. */
  shutdown(): Promise<void>;
  /**
   * Takes over the reloadable settings of `next` (a new load of the --config file) without
   * dropping connections or sessions; every other setting keeps its running value. The config
   * given to startProxy is the running one: it is updated in place. Logs one line.
   */
  reload(next: Config, trigger?: string): ConfigChanges;
}

export interface StartOptions {
  config: Config;
  logger: Logger;
  /** Replaces the authentication stage chosen from the config (tests, later auth modes). */
  authenticator?: Authenticator;
  /**
   * In a worker (SERVER_WORKERS > 1): shares the metrics registry with the primary and returns
   * what the metrics path serves, every worker's metrics aggregated (src/cluster/worker.ts).
   */
  aggregateMetrics?: (registry: Registry) => () => Promise<string>;
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

/** The authentication stage, and in oidc mode the parts it is built of (sessions, provider, limits...). */
interface AuthStage {
  authenticator: Authenticator;
  oidc?: OidcMode;
}

async function chooseAuthenticator(
  config: Config,
  logger: Logger,
  metrics: Metrics,
  tracing: Tracing,
): Promise<AuthStage> {
  if (config.auth.mode === 'bypass') {
    logger.warn(
      'AUTH_MODE=bypass: NO LOGIN. Every request reaches the MCP server unauthenticated. Use only for local development.',
    );
    return { authenticator: new BypassAuthenticator() };
  }
  // Loaded on demand: openid-client, the session stores and Redis are no weight in bypass mode.
  const { buildOidcMode } = await import('./oidc.js');
  const oidc = buildOidcMode(config, logger, metrics, tracing);
  // Before the first request: an instance started with a new SESSION_SECRET replaces what it
  // cannot open (the signing key) only once the store is claimed for its secret.
  await oidc.claimStore();
  return { authenticator: oidc.authenticator, oidc };
}

/**
 * ADMIN_PUBLIC_URL's default: ADMIN_LISTEN's host as written (localhost for a wildcard, as for
 * PUBLIC_URL) with the port bound. Browsers must use exactly this origin: its Origin is checked.
 */
function derivedAdminUrl(host: string, port: number): URL {
  const name = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  return new URL(`http://${name}:${port}`);
}

/** Composition root: builds every part from the config and starts listening. */
export async function startProxy(options: StartOptions): Promise<RunningProxy> {
  const { config, logger } = options;
  // Until oidc mode's store exists (and always in bypass mode) there are no sessions to count.
  let countSessions = (): Promise<number> => Promise.resolve(0);
  const metrics = createMetrics({
    activeSessions: () => countSessions(),
    aggregate: options.aggregateMetrics,
  });
  // Before the authenticator: identity provider discovery, which starts with it, is traced.
  const tracing = await startTracing(config, logger);
  const { authenticator, oidc }: AuthStage = options.authenticator
    ? { authenticator: options.authenticator }
    : await chooseAuthenticator(config, logger, metrics, tracing);
  countSessions = sessionCounter(oidc?.sessions);
  // Loaded on demand, before listening: the admin API and page weigh nothing while ADMIN_ENABLED is off.
  const adminModule = config.admin.enabled ? await import('../admin/admin.js') : undefined;
  metrics.sessionsActive.set(0);

  const streams = trackedSet<LiveStream>((n) => metrics.activeStreams.set({ kind: 'sse' }, n));
  const tunnels = trackedSet<Tunnel>((n) => metrics.activeStreams.set({ kind: 'websocket' }, n));
  let headers = securityHeaders(config.security.contentSecurityPolicy);
  let draining = false;
  let backends: Backends;
  try {
    backends = await Backends.start({
      config,
      logger,
      metrics,
      streams,
      // Read whenever a forwarder is built: a reload may change the headers and timeouts.
      forwardOptions: () => ({
        retries: config.target.retries,
        idleTimeoutMs: config.target.idleTimeoutMs,
        sseKeepaliveMs: config.target.sseKeepaliveMs,
        responseDefaults: config.security.headersOnProxied ? headers : [],
        errorHeaders: headers,
        draining: () => draining,
      }),
    });
  } catch (err) {
    await authenticator.close?.();
    await tracing.shutdown();
    throw err;
  }
  const health = new HealthChecker({
    targets: (timeoutMs) => backends.health(timeoutMs),
    singleTarget: () => config.singleTarget,
    activeSessions: async () => {
      const n = await countSessions();
      metrics.sessionsActive.set(n);
      return n;
    },
    identityProviderProblem: oidc
      ? () =>
          oidc.provider.isReady()
            ? undefined
            : 'identity provider not reachable yet (OIDC_DISCOVERY_URL); retrying'
      : undefined,
  });

  const server = httpServer();
  const adminListener = config.admin.enabled ? config.admin.listener : undefined;
  const adminServer = adminListener ? httpServer() : undefined;
  try {
    await listen(server, config.server.port, config.server.host);
    if (adminServer && adminListener) {
      const { host, port } = adminListener.address;
      await listen(adminServer, port, host).catch(async (err: Error & { setting?: string }) => {
        // Named, so the start-up error says which setting to change.
        err.setting = 'ADMIN_LISTEN';
        await closed(server);
        throw err;
      });
    }
  } catch (err) {
    // Port taken, say: release what was built (store connection, discovery retries, pools,
    // stdio bridges) so the caller can report the error and exit, or try again, without
    // leftovers keeping it alive.
    await backends.close(0);
    await authenticator.close?.();
    await tracing.shutdown();
    throw err;
  }
  const { port, url, listen: listenAddress } = listeningAt(server);
  // With SERVER_PORT=0 the default public URL names the port actually chosen.
  const publicUrl =
    config.sources.PUBLIC_URL === undefined ? new URL(`http://localhost:${port}`) : config.server.publicUrl;
  const adminAt = adminServer ? listeningAt(adminServer) : undefined;
  const adminUrl =
    adminAt && adminListener
      ? (adminListener.publicUrl ?? derivedAdminUrl(adminListener.address.host, adminAt.port))
      : undefined;
  const connections = new ConnectionTracker(server);
  const adminConnections = adminServer ? new ConnectionTracker(adminServer) : undefined;
  // Bypass mode has no store (and no Redis): its budgets count in memory.
  const rateLimits = oidc?.rateLimits ?? new RateLimits(config.auth);
  // In bypass mode there is no audit log to share: MCP calls get their own.
  const mcpCalls = new McpCallAudit(oidc?.audit ?? new AuditLog(logger), metrics);
  const admin = adminModule
    ? new adminModule.AdminApi({
        config,
        logger,
        metrics,
        health,
        backends,
        publicUrl,
        adminUrl,
        authMode: authenticator.mode,
        version: packageVersion(),
        oidc,
        mcpCalls,
      })
    : undefined;
  const pipelineDeps = {
    config,
    logger,
    metrics,
    health,
    trusted: new TrustedProxies(config.server.trustedProxies),
    authenticator,
    backends,
    tunnels,
    tracing,
    rateLimits,
    securityHeaders: headers,
    draining: () => draining,
    mcpCalls,
  };
  const pipeline = new Pipeline({
    ...pipelineDeps,
    guard: new OriginGuard(publicUrl, config.server.allowedOrigins),
    onResponseDone: (socket) => connections.responseDone(socket),
    admin: adminServer ? 'elsewhere' : admin?.handle,
  });
  // ADMIN_LISTEN: the admin surface alone, guarded by its own origin (ALLOWED_ORIGINS are the
  // main listener's browser clients, never the admin's).
  const adminPipeline =
    adminServer && adminUrl && admin
      ? new Pipeline({
          ...pipelineDeps,
          guard: new OriginGuard(adminUrl, []),
          onResponseDone: (socket) => adminConnections?.responseDone(socket),
          admin: admin.handle,
          adminOnly: true,
        })
      : undefined;
  const onClientError = (err: NodeJS.ErrnoException, socket: Duplex): void => {
    if (!socket.writable || err.code === 'ECONNRESET') return void socket.destroy();
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
    endSocketWithError(
      socket,
      { status, error: 'invalid_request', description: 'The request could not be parsed.' },
      undefined,
      headers,
    );
  };
  for (const [listener, handler] of [
    [server, pipeline],
    [adminServer, adminPipeline],
  ] as const) {
    if (!listener || !handler) continue;
    listener.on('request', handler.handle);
    listener.on('upgrade', handler.handleUpgrade);
    listener.on('clientError', onClientError);
  }

  logger.info(
    {
      listen: listenAddress,
      public_url: publicUrl.origin,
      servers: config.servers.map(describeServer),
      auth_mode: authenticator.mode,
      ...(adminAt && adminUrl ? { admin_listen: adminAt.listen, admin_url: adminUrl.origin } : {}),
    },
    'mcp-oidc-proxy listening',
  );

  let running: SettingValues | undefined;
  /** The last reload's change of servers (started in the background: stdio servers start async). */
  let serversApplied: Promise<void> = Promise.resolve();
  const reload = (next: Config, trigger = 'reload'): ConfigChanges => {
    running ??= settingValues(config);
    const nextValues = settingValues(next);
    const changes = compareSettings(running, nextValues);
    takeReloadable(config, next);
    running = valuesAfterReload(running, nextValues, changes.applied);
    rateLimits.configure(config.auth);
    if (changes.applied.length > 0) {
      headers = securityHeaders(config.security.contentSecurityPolicy);
      pipeline.reconfigure({
        guard: new OriginGuard(publicUrl, config.server.allowedOrigins),
        trusted: new TrustedProxies(config.server.trustedProxies),
        securityHeaders: headers,
      });
      adminPipeline?.reconfigure({
        trusted: new TrustedProxies(config.server.trustedProxies),
        securityHeaders: headers,
      });
      backends.settingsChanged();
      // New, changed and removed servers: the others keep their pools, children and streams.
      serversApplied = serversApplied.then(() =>
        backends.apply(config).then(
          () => oidc?.authenticator.serversChanged(),
          (err: Error) => {
            // The running servers stay, and so does what the authorization server says of them.
            config.servers = backends.all().map((backend) => backend.server);
            oidc?.authenticator.serversChanged();
            logger.error(
              { err: err.message },
              'reload: the servers could not be started; the running ones stay',
            );
          },
        ),
      );
    }
    // Written at the more verbose of the old and new levels: turning logging down still says so.
    const level = config.log.level;
    if (logger.levelVal > logger.levels.values[level]!) logger.level = level;
    const log = changes.needsRestart.length > 0 ? logger.warn.bind(logger) : logger.info.bind(logger);
    log({ trigger, applied: changes.applied, needs_restart: changes.needsRestart }, describeChanges(changes));
    logger.level = level;
    metrics.configReloads.inc({ result: 'applied' });
    return changes;
  };

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
      // Both listeners stop accepting; the shutdown is done once each one's connections ended.
      const allClosed = Promise.all([closed(server), adminServer ? closed(adminServer) : undefined]);
      // From now on every response head says `Connection: close` (the `draining` flag), and each
      // socket closes once its response is done, so keep-alive clients do not reuse it.
      connections.drain();
      adminConnections?.drain();
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
      const deadlineAt = Date.now() + config.server.shutdownTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), config.server.shutdownTimeoutMs);
      });
      const outcome = await Promise.race([allClosed.then(() => 'done' as const), deadline]);
      clearTimeout(timer);
      if (outcome === 'timeout') {
        logger.warn('shutdown deadline reached: closing the remaining connections');
        connections.destroyAll();
        adminConnections?.destroyAll();
        for (const tunnel of tunnels.items) {
          tunnel.client.destroy();
          tunnel.upstream.destroy();
        }
        await allClosed;
      }
      await serversApplied;
      await backends.close(Math.max(0, deadlineAt - Date.now()));
      await authenticator.close?.();
      // Last: the spans of the requests that just finished are exported too (bounded in time).
      await tracing.shutdown();
      logger.info('shutdown complete');
    })();
    return shutdownPromise;
  };

  const adminRunning = adminServer && adminAt ? { server: adminServer, url: adminAt.url } : undefined;
  return { server, url, admin: adminRunning, metrics, backends, shutdown, reload };
}
