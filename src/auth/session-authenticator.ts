import type { IncomingMessage } from 'node:http';
import type { Config } from '../config/types.js';
import type { Logger } from '../observability/logger.js';
import { createRateLimiter } from '../pipeline/rate-limit.js';
import { createSessionStore, RedisSessionStore, type SessionStore } from '../session/index.js';
import { SessionKeys } from '../session/keys.js';
import { SessionManager } from '../session/sessions.js';
import { AuditLog } from './audit.js';
import type { AuthContext, AuthDecision, Authenticator, RouteHandler } from './authenticator.js';
import { BrowserLogin } from './browser/browser-login.js';
import { createProvider } from './oidc/presets.js';
import type { Provider } from './oidc/provider.js';

/**
 * AUTH_MODE=oidc: a browser session (cookie) identifies the caller; `/login`, `/callback`
 * and `/logout` run the upstream login. Everything it needs is built here from the config.
 */
export class SessionAuthenticator implements Authenticator {
  readonly mode = 'oidc';
  readonly routes: ReadonlyMap<string, RouteHandler>;
  readonly cookieNames: ReadonlySet<string>;

  private constructor(
    private readonly config: Config,
    readonly store: SessionStore,
    readonly sessions: SessionManager,
    readonly provider: Provider,
    private readonly login: BrowserLogin,
  ) {
    this.routes = login.routes;
    this.cookieNames = sessions.cookieNames;
  }

  static create(config: Config, logger: Logger): SessionAuthenticator {
    const store = createSessionStore({
      kind: config.session.store,
      redisUrl: config.session.redisUrl,
      redisCa: config.session.redisCa,
      onConnectionError: throttled(
        (err: Error) => logger.error({ err: err.message }, 'session store connection error'),
        10_000,
      ),
    });
    const sessions = new SessionManager(store, new SessionKeys(config.session.secret), {
      idleTimeoutMs: config.session.idleTimeoutMs,
      maxAgeMs: config.session.maxAgeMs,
      cookie: { secure: config.session.cookieSecure },
    });
    if (!config.session.secret) {
      logger.warn(
        'SESSION_SECRET is not set: a random key is used, so sessions end when the process restarts and are not shared between instances',
      );
    }
    const provider = createProvider(config, logger);
    const rateLimiter = createRateLimiter({
      perMinute: config.auth.authRateLimitPerMinute,
      keyPrefix: 'mcp-oidc-proxy:rl:auth',
      redis: store instanceof RedisSessionStore ? store.redis : undefined,
    });
    const login = new BrowserLogin({
      config,
      provider,
      sessions,
      audit: new AuditLog(logger),
      logger,
      rateLimiter,
    });
    // Discovery starts now; while the provider is unreachable the proxy stays up, reports
    // itself unhealthy and retries with backoff (it never lets anyone through without login).
    provider.ready().catch(() => {});
    return new SessionAuthenticator(config, store, sessions, provider, login);
  }

  async authenticate(req: IncomingMessage, ctx: AuthContext): Promise<AuthDecision> {
    const result = await this.login.authenticate(req, ctx.clientIp, ctx.path + ctx.search);
    if (result.kind === 'challenge') return result;
    const { forwardAccessToken, forwardIdToken } = this.config.auth.identityHeaders;
    const extra: Array<[string, string]> = [];
    if (forwardAccessToken) extra.push(['x-forwarded-access-token', result.session.tokens.accessToken]);
    if (forwardIdToken && result.session.tokens.idToken)
      extra.push(['x-forwarded-id-token', result.session.tokens.idToken]);
    return { kind: 'allow', identity: result.identity, credentialsConsumed: true, extraHeaders: extra };
  }

  async close(): Promise<void> {
    this.provider.close();
    await this.store.close();
  }
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
