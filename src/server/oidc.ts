import { type AuditEvent, type AuditFields, AuditLog } from '../auth/audit.js';
import { BrowserLogin } from '../auth/browser/browser-login.js';
import { AuthorizationServer } from '../auth/facade/authorization-server.js';
import { ClientMetadataDocuments } from '../auth/facade/cimd.js';
import { ClientRegistry } from '../auth/facade/clients.js';
import { createProvider } from '../auth/oidc/presets.js';
import type { Provider } from '../auth/oidc/provider.js';
import { SessionAuthenticator } from '../auth/session-authenticator.js';
import type { Config } from '../config/types.js';
import { RateLimits } from '../limits/rate-limit.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Tracing } from '../observability/spans.js';
import { SessionManager } from '../session/sessions.js';
import { type ConfiguredStateStore, createStateStore } from '../store/index.js';
import { SealingKeys } from '../store/sealing-keys.js';

/**
 * Everything AUTH_MODE=oidc runs on, built once from the config. app.ts loads this module only in
 * oidc mode, so bypass mode never loads openid-client, ioredis or the authorization server.
 */
export interface OidcMode {
  /** The session store (SESSION_STORE); `store.kind === 'redis'` gives its connection. */
  store: ConfiguredStateStore;
  keys: SealingKeys;
  sessions: SessionManager;
  /** The upstream identity provider; its discovery starts at once and retries while it is down. */
  provider: Provider;
  /** Both request budgets, counted in the store's Redis when there is one (shared across instances). */
  rateLimits: RateLimits;
  audit: AuditLog;
  /** The OAuth 2.1 authorization server for MCP clients. */
  authorizationServer: AuthorizationServer;
  /** /login, /callback, /logout and the browser session check. */
  login: BrowserLogin;
  /** The pipeline's authentication stage; its close() releases the provider and the store. */
  authenticator: SessionAuthenticator;
}

export function buildOidcMode(config: Config, logger: Logger, metrics: Metrics, tracing: Tracing): OidcMode {
  const store = createStateStore({
    kind: config.session.store,
    redisUrl: config.session.redisUrl,
    redisCa: config.session.redisCa,
    keyPrefix: config.session.redisKeyPrefix,
    onConnectionError: throttled(
      (err: Error) => logger.error({ err: err.message }, 'session store connection error'),
      10_000,
    ),
  });
  const keys = new SealingKeys(config.session.secret);
  const sessions = new SessionManager(store, keys, {
    idleTimeoutMs: config.session.idleTimeoutMs,
    maxAgeMs: config.session.maxAgeMs,
    cookie: { secure: config.session.cookieSecure },
  });
  if (!config.session.secret) {
    logger.warn(
      'SESSION_SECRET is not set: a random key is used, so sessions end when the process restarts and are not shared between instances',
    );
  }
  const provider = createProvider(config, logger, tracing.root);
  const rateLimits = new RateLimits(config.auth, store.kind === 'redis' ? store.sharedCounters : undefined);
  const rateLimiter = rateLimits.authLimiter;
  const { dynamicRegistration, preRegistered } = config.auth.mcpClients;
  const clients = new ClientRegistry({
    store,
    dcrEnabled: dynamicRegistration,
    preRegistered,
    // Metadata document URLs are a form of open registration: off together with DCR.
    metadataDocuments: dynamicRegistration ? new ClientMetadataDocuments({ store }) : undefined,
  });
  // Every audit event also counts in mcp_oidc_proxy_auth_events_total, by client name.
  const audit = new AuditLog(logger, countAuthEvents(metrics, clients));
  const authorizationServer = new AuthorizationServer({
    config,
    logger,
    audit,
    store,
    keys,
    sessions,
    clients,
    rateLimiter,
  });
  const login = new BrowserLogin({ config, provider, sessions, audit, logger, rateLimiter });
  const authenticator = new SessionAuthenticator({
    config,
    login,
    authorizationServer,
    async close() {
      provider.close();
      await store.close();
    },
  });
  // Discovery starts now; while the provider is unreachable the proxy stays up, reports
  // itself unhealthy and retries with backoff (it never lets anyone through without login).
  provider.ready().catch(() => {});
  return { store, keys, sessions, provider, rateLimits, audit, authorizationServer, login, authenticator };
}

/** Distinct client names a metric label may take; past it, `other` (registration is open to anyone). */
const MAX_CLIENT_LABELS = 100;

function countAuthEvents(
  metrics: Metrics,
  registry: ClientRegistry,
): (event: AuditEvent, fields: AuditFields) => void {
  const seen = new Set<string>();
  const label = (name: string | undefined): string => {
    if (!name) return 'unknown';
    if (seen.has(name)) return name;
    if (seen.size >= MAX_CLIENT_LABELS) return 'other';
    seen.add(name);
    return name;
  };
  return (event, fields) => {
    // Admin actions and MCP calls are audited, but they are no login or authorization step (and
    // an MCP call, on every request, would cost a client lookup for its label).
    if (event.startsWith('admin_') || event === 'mcp_call') return;
    const clientId = typeof fields.client_id === 'string' ? fields.client_id : undefined;
    if (typeof fields.client_name === 'string' || !clientId) {
      metrics.authEvents.inc({ event, client: clientId ? label(fields.client_name as string) : 'browser' });
      return;
    }
    // The name comes from the registry; a lookup failure still counts the event.
    registry.get(clientId).then(
      (client) => metrics.authEvents.inc({ event, client: label(client?.client_name) }),
      () => metrics.authEvents.inc({ event, client: 'unknown' }),
    );
  };
}

function throttled<A extends unknown[]>(fn: (...args: A) => void, intervalMs: number): (...args: A) => void {
  let last = 0;
  return (...args) => {
    const now = Date.now();
    if (now - last < intervalMs) return;
    last = now;
    fn(...args);
  };
}
