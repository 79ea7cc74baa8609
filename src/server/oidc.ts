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
import { SealingCheck, type SealingClaim } from '../store/sealing-check.js';
import { SealingKeys } from '../store/sealing-keys.js';
import { StoreUnavailableError } from '../store/state-store.js';

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
  /**
   * Claims the store for this instance's SESSION_SECRET (store/sealing-check.ts) and logs what
   * it held. While the store is unreachable it tries again in the background (close() stops it).
   */
  claimStore(): Promise<void>;
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
  const sealingCheck = new SealingCheck(store, keys);
  const claim = storeClaim(sealingCheck, config, logger);
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
    sealingCheck,
  });
  const login = new BrowserLogin({ config, provider, sessions, audit, logger, rateLimiter });
  const authenticator = new SessionAuthenticator({
    config,
    login,
    authorizationServer,
    async close() {
      claim.stop();
      provider.close();
      await store.close();
    },
  });
  // Discovery starts now; while the provider is unreachable the proxy stays up, reports
  // itself unhealthy and retries with backoff (it never lets anyone through without login).
  provider.ready().catch(() => {});
  return {
    store,
    keys,
    sessions,
    provider,
    rateLimits,
    audit,
    authorizationServer,
    login,
    authenticator,
    claimStore: claim.start,
  };
}

/** How often a claim the store could not answer at start is tried again. */
const CLAIM_RETRY_MS = 5000;

/**
 * The start's claim of the store for this SESSION_SECRET, with its log line: state sealed with
 * another secret is not an error that stops the proxy (a restart with a new secret is one way to
 * end every session at once) but the operator is told, with the fix for the case where it is not
 * meant (another deployment, or instances, on the same Redis and REDIS_KEY_PREFIX).
 */
function storeClaim(
  check: SealingCheck,
  config: Config,
  logger: Logger,
): { start(): Promise<void>; stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const report = (claim: SealingClaim): void => {
    if (claim !== 'other' || config.session.store !== 'redis') return;
    logger.error(
      { problem: 'STORE_SEALED_WITH_ANOTHER_SECRET', key_prefix: config.session.redisKeyPrefix },
      'The Redis at REDIS_URL holds state under this REDIS_KEY_PREFIX sealed with another SESSION_SECRET. ' +
        'It cannot be read here: those sessions, grants and codes count as absent (users sign in again, ' +
        'MCP clients get new tokens) and the token signing key is replaced. If instances still run with ' +
        'the other secret, give every instance the same SESSION_SECRET, or give each deployment its own REDIS_KEY_PREFIX.',
    );
  };
  const attempt = async (): Promise<void> => {
    try {
      report(await check.claim());
    } catch (error) {
      if (!(error instanceof StoreUnavailableError)) throw error;
      if (stopped) return;
      logger.warn(
        { err: error.message },
        'session store not reachable at start; checking its SESSION_SECRET later',
      );
      timer = setTimeout(() => void attempt().catch(() => {}), CLAIM_RETRY_MS);
      timer.unref();
    }
  };
  return {
    start: attempt,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
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
