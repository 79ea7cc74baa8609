import type { IncomingMessage } from 'node:http';
import type { Config } from '../config/types.js';
import { RateLimits } from '../limits/rate-limit.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { TraceSpan, Tracing } from '../observability/spans.js';
import { SessionManager } from '../session/sessions.js';
import { createStateStore, RedisStateStore, type StateStore, StoreUnavailableError } from '../store/index.js';
import { SealingKeys } from '../store/sealing-keys.js';
import { type AuditEvent, type AuditFields, AuditLog } from './audit.js';
import type { AuthContext, AuthDecision, Authenticator, RouteHandler } from './authenticator.js';
import { type BrowserAuthResult, BrowserLogin } from './browser/browser-login.js';
import { jsonChallenge } from './challenge.js';
import { AuthorizationServer } from './facade/authorization-server.js';
import { ClientMetadataDocuments } from './facade/cimd.js';
import { ClientRegistry } from './facade/clients.js';
import { authorizationServerEndpoints } from './facade/endpoints.js';
import { InvalidTokenError } from './facade/errors.js';
import { MCP_SCOPE, wwwAuthenticateChallenge } from './facade/metadata.js';
import { createProvider } from './oidc/presets.js';
import type { Provider } from './oidc/provider.js';
import { evaluatePolicy } from './policy/policy.js';
import type { AccessTokens } from './tokens/access-tokens.js';

/**
 * AUTH_MODE=oidc: a browser session (cookie) identifies the caller; `/login`, `/callback`
 * and `/logout` run the upstream login. Everything it needs is built here from the config.
 */
export class SessionAuthenticator implements Authenticator {
  readonly mode = 'oidc';
  readonly routes: ReadonlyMap<string, RouteHandler>;
  readonly cookieNames: ReadonlySet<string>;
  /** Endpoints any origin may call (no cookies involved): discovery, JWKS, /register, /token, /revoke. */
  readonly publicPaths: ReadonlySet<string>;
  readonly authLimitedPaths: ReadonlySet<string>;
  /** `sub NUL client_id` pairs that already made their first call, for `mcp_first_call`. */
  private readonly calledBefore = new Set<string>();

  private constructor(
    private readonly config: Config,
    readonly store: StateStore,
    readonly sessions: SessionManager,
    readonly provider: Provider,
    private readonly login: BrowserLogin,
    /** The OAuth server for MCP clients; the admin API lists and revokes through it. */
    readonly authorizationServer: AuthorizationServer,
    readonly rateLimits: RateLimits,
  ) {
    const endpoints = authorizationServerEndpoints(authorizationServer);
    this.routes = new Map([...login.routes, ...endpoints.routes]);
    this.publicPaths = endpoints.publicPaths;
    this.authLimitedPaths = new Set([...login.authLimitedPaths, ...endpoints.authLimitedPaths]);
    this.cookieNames = sessions.cookieNames;
  }

  static create(config: Config, logger: Logger, metrics?: Metrics, tracing?: Tracing): SessionAuthenticator {
    const store = createStateStore({
      kind: config.session.store,
      redisUrl: config.session.redisUrl,
      redisCa: config.session.redisCa,
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
    const provider = createProvider(config, logger, tracing?.root);
    // Both budgets count in the session store's Redis, when there is one, across instances.
    const rateLimits = new RateLimits(
      config.auth,
      store instanceof RedisStateStore ? store.redis : undefined,
    );
    const rateLimiter = rateLimits.authLimiter;
    // Every audit event also counts in mcp_oidc_proxy_auth_events_total, by client name.
    const { dynamicRegistration, preRegistered } = config.auth.mcpClients;
    const clients = new ClientRegistry({
      store,
      dcrEnabled: dynamicRegistration,
      preRegistered,
      // Metadata document URLs are a form of open registration: off together with DCR.
      metadataDocuments: dynamicRegistration ? new ClientMetadataDocuments({ store }) : undefined,
    });
    const audit = new AuditLog(logger, metrics ? countAuthEvents(metrics, clients) : undefined);
    const login = new BrowserLogin({ config, provider, sessions, audit, logger, rateLimiter });
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
    // Discovery starts now; while the provider is unreachable the proxy stays up, reports
    // itself unhealthy and retries with backoff (it never lets anyone through without login).
    provider.ready().catch(() => {});
    return new SessionAuthenticator(
      config,
      store,
      sessions,
      provider,
      login,
      authorizationServer,
      rateLimits,
    );
  }

  /**
   * A bearer token (MCP clients) is verified as one of this proxy's own access tokens for
   * this resource; without one, the browser session decides.
   */
  async authenticate(req: IncomingMessage, ctx: AuthContext): Promise<AuthDecision> {
    const authorization = req.headers.authorization;
    if (authorization !== undefined && /^bearer /i.test(authorization)) {
      return this.authenticateBearer(authorization.slice(7).trim(), ctx.trace);
    }
    const result = await this.login.authenticate(req, ctx.clientIp, ctx.path + ctx.search, ctx.trace);
    if (result.kind === 'challenge') return result;
    const { forwardAccessToken, forwardIdToken } = this.config.auth.identityHeaders;
    const extra: Array<[string, string]> = [];
    if (forwardAccessToken) extra.push(['x-forwarded-access-token', result.session.tokens.accessToken]);
    if (forwardIdToken && result.session.tokens.idToken)
      extra.push(['x-forwarded-id-token', result.session.tokens.idToken]);
    return { kind: 'allow', identity: result.identity, credentialsConsumed: true, extraHeaders: extra };
  }

  /** The browser session check alone (no bearer token): the admin API's group members log in this way. */
  authenticateBrowser(req: IncomingMessage, ctx: AuthContext): Promise<BrowserAuthResult> {
    return this.login.authenticate(req, ctx.clientIp, ctx.path + ctx.search);
  }

  private async authenticateBearer(token: string, trace: TraceSpan | undefined): Promise<AuthDecision> {
    let claims: Awaited<ReturnType<AccessTokens['verifyAccessToken']>>;
    const verify = (): Promise<typeof claims> =>
      this.authorizationServer.accessTokens.verifyAccessToken(token, {
        audience: this.authorizationServer.resource,
      });
    try {
      claims = await (trace ? trace.child('token.verify', verify) : verify());
    } catch (err) {
      if (err instanceof StoreUnavailableError) {
        return {
          kind: 'challenge',
          challenge: jsonChallenge(
            503,
            'temporarily_unavailable',
            'Tokens cannot be checked right now.',
            'store_unavailable',
            [['retry-after', '5']],
          ),
        };
      }
      const description =
        err instanceof InvalidTokenError
          ? `The access token is not valid (${err.reason}).`
          : 'The access token is not valid.';
      return this.bearerChallenge(401, 'invalid_token', description);
    }
    if (!claims.scope.split(' ').includes(MCP_SCOPE)) {
      return this.bearerChallenge(
        403,
        'insufficient_scope',
        `The access token lacks the "${MCP_SCOPE}" scope.`,
      );
    }
    // The allow-lists apply to every request, so removing a user takes effect at once.
    const verdict = evaluatePolicy(
      { email: claims.email, emailVerified: claims.emailVerified, groups: claims.groups ?? [] },
      this.config.auth.policy,
    );
    if (!verdict.allowed) {
      return { kind: 'challenge', challenge: jsonChallenge(403, 'access_denied', verdict.reason, 'denied') };
    }
    this.noteFirstCall(claims.sub, claims.clientId);
    return {
      kind: 'allow',
      identity: { user: claims.sub, email: claims.email, groups: claims.groups },
      credentialsConsumed: true,
    };
  }

  /**
   * The login funnel's last step: the first authenticated request of a user through a client,
   * as this instance sees it (a bounded set; the oldest pairs are forgotten first).
   */
  private noteFirstCall(sub: string, clientId: string): void {
    const pair = `${sub}\u0000${clientId}`;
    if (this.calledBefore.has(pair)) return;
    if (this.calledBefore.size >= MAX_FIRST_CALL_PAIRS) {
      this.calledBefore.delete(this.calledBefore.values().next().value as string);
    }
    this.calledBefore.add(pair);
    this.authorizationServer.audit.record('mcp_first_call', { sub, client_id: clientId });
  }

  private bearerChallenge(
    status: 401 | 403,
    error: 'invalid_token' | 'insufficient_scope',
    description: string,
  ): AuthDecision {
    const header = wwwAuthenticateChallenge({
      resourceMetadataUrl: this.authorizationServer.resourceMetadataUrl,
      scope: MCP_SCOPE,
      error,
      description,
    });
    return {
      kind: 'challenge',
      challenge: jsonChallenge(status, error, description, error, [['www-authenticate', header]]),
    };
  }

  async close(): Promise<void> {
    this.provider.close();
    await this.store.close();
  }
}

/** How many user and client pairs `mcp_first_call` remembers. */
const MAX_FIRST_CALL_PAIRS = 10_000;

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
    // Admin actions are audited, but they are no login or authorization step.
    if (event.startsWith('admin_')) return;
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
