import type { IncomingMessage } from 'node:http';
import type { Config } from '../../config/types.js';
import type { RateLimiter } from '../../limits/rate-limit.js';
import type { Logger } from '../../observability/logger.js';
import { NOOP_SPAN, type TraceSpan } from '../../observability/spans.js';
import type { SessionLookup, SessionManager, SessionRecord } from '../../session/sessions.js';
import type { AuditLog } from '../audit.js';
import type { Identity, RouteHandler } from '../authenticator.js';
import { type Challenge, htmlChallenge, jsonChallenge } from '../challenge.js';
import { MCP_SCOPE, protectedResourceMetadataUrl, wwwAuthenticateChallenge } from '../facade/metadata.js';
import type { ProtectedResource } from '../facade/resources.js';
import {
  LoginRejectedError,
  type Provider,
  ProviderUnavailableError,
  type UpstreamIdentity,
} from '../oidc/provider.js';
import { LoginEndpoints } from './login-endpoints.js';
import { page } from './pages.js';
import { policyRefusal, storeUnavailable, wantsHtml } from './refusals.js';

export type BrowserAuthResult =
  | { kind: 'allow'; identity: Identity; session: SessionRecord }
  | { kind: 'challenge'; challenge: Challenge };

export interface BrowserLoginDeps {
  config: Config;
  provider: Provider;
  sessions: SessionManager;
  audit: AuditLog;
  logger: Logger;
  /** Limits /login and /callback per client IP (AUTH_RATE_LIMIT_PER_MINUTE); undefined = off. */
  rateLimiter: RateLimiter | undefined;
}

const REFRESH_MARGIN_MS = 60_000;

/**
 * Browser login through the upstream provider: the session check on every request (a session
 * refreshed before its upstream tokens expire, the allow-lists applied each time), and the
 * `/login`, `/callback` and `/logout` endpoints (login-endpoints.ts).
 */
export class BrowserLogin {
  readonly routes: ReadonlyMap<string, RouteHandler>;
  /** The routes that spend the per-IP login budget (AUTH_RATE_LIMIT_PER_MINUTE). */
  readonly authLimitedPaths: ReadonlySet<string>;

  constructor(private readonly deps: BrowserLoginDeps) {
    const endpoints = new LoginEndpoints(deps);
    this.routes = endpoints.routes;
    this.authLimitedPaths = endpoints.authLimitedPaths;
  }

  /**
   * The session check: allow with an identity, or the challenge to answer with. `server` is the
   * MCP server the request is for: its metadata is named in the 401, its allow-lists apply.
   */
  async authenticate(
    req: IncomingMessage,
    clientIp: string,
    pathAndQuery: string,
    trace: TraceSpan = NOOP_SPAN,
    server?: ProtectedResource,
  ): Promise<BrowserAuthResult> {
    const unauthenticated = (stale?: boolean): Challenge =>
      this.unauthenticated(req, pathAndQuery, server, stale);
    const { sessions, audit } = this.deps;
    let lookup: SessionLookup;
    try {
      lookup = await trace.child('session.lookup', () => sessions.load(req.headers.cookie));
    } catch (err) {
      return { kind: 'challenge', challenge: storeUnavailable(this.deps.logger, req, err) };
    }
    if (trace.recording) trace.setAttributes({ 'mcp_oidc_proxy.session': lookup.kind });
    if (lookup.kind === 'expired' && lookup.reason !== 'gone') {
      audit.record('session_expired', {
        reason: lookup.reason,
        sub: lookup.record?.identity.sub,
        ip: clientIp,
      });
    }
    if (lookup.kind === 'none') return { kind: 'challenge', challenge: unauthenticated() };
    if (lookup.kind !== 'valid') return { kind: 'challenge', challenge: unauthenticated(true) };

    let record = lookup.record;
    if (needsRefresh(record)) {
      let refreshed: SessionRecord | 'ended';
      try {
        refreshed = await this.refresh(lookup.id, record, clientIp, trace);
      } catch (err) {
        return { kind: 'challenge', challenge: storeUnavailable(this.deps.logger, req, err) };
      }
      if (refreshed === 'ended') return { kind: 'challenge', challenge: unauthenticated(true) };
      record = refreshed;
    }
    const refusal = policyRefusal(this.deps, req, record.identity, clientIp, server);
    if (refusal) return { kind: 'challenge', challenge: refusal };
    return { kind: 'allow', identity: toIdentity(record.identity), session: record };
  }

  /**
   * Refreshes the upstream tokens before they expire, so identity and groups stay current.
   * A store lock makes one request (of any instance) do it; the others carry on with the
   * record they loaded. Store failures propagate (the caller answers 503).
   */
  private async refresh(
    id: string,
    loaded: SessionRecord,
    clientIp: string,
    trace: TraceSpan,
  ): Promise<SessionRecord | 'ended'> {
    const { sessions, provider, audit, logger } = this.deps;
    if (!(await sessions.lockRefresh(id))) return loaded;
    try {
      // Another request may have refreshed between this one's load and its lock: its record
      // then holds the new tokens, and spending the old (rotated) refresh token again would
      // make the provider refuse it, and revoke the whole grant.
      const current = await sessions.peek(id);
      if (!current) return 'ended';
      if (
        current.tokens.refreshToken !== loaded.tokens.refreshToken ||
        current.tokens.accessToken !== loaded.tokens.accessToken
      ) {
        return current;
      }
      let refreshed: Awaited<ReturnType<Provider['refresh']>>;
      try {
        refreshed = await provider.refresh(current.tokens, current.identity.sub, trace);
      } catch (err) {
        if (err instanceof ProviderUnavailableError) {
          // The provider is down: keep the session as it is rather than log everyone out.
          logger.warn({ err: err.message }, 'token refresh failed: identity provider unreachable');
          if (!err.tokens) return current;
          // The refresh itself went through (a later call failed): the old refresh token may be
          // spent, so the session keeps its identity with the new tokens.
          const kept: SessionRecord = { ...current, tokens: err.tokens };
          await sessions.save(id, kept);
          return kept;
        }
        await sessions.destroy(id);
        audit.record('session_expired', {
          reason: `refresh_failed: ${err instanceof LoginRejectedError ? err.reason : 'error'}`,
          sub: current.identity.sub,
          ip: clientIp,
        });
        return 'ended';
      }
      const updated: SessionRecord = { ...current, identity: refreshed.identity, tokens: refreshed.tokens };
      await sessions.save(id, updated);
      audit.record('session_refreshed', { sub: updated.identity.sub, ip: clientIp });
      return updated;
    } finally {
      await sessions.unlockRefresh(id).catch(() => {});
    }
  }

  /**
   * 302 to the login for a browser, 401 with the discovery challenge for anything else. With
   * `staleCookie` (the request carried a session cookie that is invalid, expired or ended) the
   * answer also deletes that cookie, so the browser stops sending a dead credential.
   */
  private unauthenticated(
    req: IncomingMessage,
    pathAndQuery: string,
    server: ProtectedResource | undefined,
    staleCookie = false,
  ): Challenge {
    const { publicUrl } = this.deps.config.server;
    const clear: Array<[string, string]> = staleCookie
      ? [['set-cookie', this.deps.sessions.clearSessionCookie()]]
      : [];
    if (wantsHtml(req)) {
      const location = `/login?rd=${encodeURIComponent(pathAndQuery)}`;
      return htmlChallenge(
        302,
        page('Sign in required', 'Redirecting to sign in…', { href: location, text: 'Sign in' }),
        'redirect_login',
        [['location', location], ...clear],
      );
    }
    // No credentials were sent, so no `error=` (RFC 6750 §3.1): MCP clients start discovery from here.
    const challenge = wwwAuthenticateChallenge({
      resourceMetadataUrl:
        server?.metadataUrl ?? protectedResourceMetadataUrl(publicUrl, this.deps.config.servers[0]!.path),
      scope: MCP_SCOPE,
    });
    return jsonChallenge(401, 'unauthorized', 'Authentication is required.', 'unauthenticated', [
      ['www-authenticate', challenge],
      ...clear,
    ]);
  }
}

/** True when the access token expires within the margin and a refresh token can renew it. */
function needsRefresh(record: SessionRecord): boolean {
  const { refreshToken, expiresAt } = record.tokens;
  return Boolean(refreshToken) && expiresAt !== undefined && Date.now() > expiresAt - REFRESH_MARGIN_MS;
}

function toIdentity(identity: UpstreamIdentity): Identity {
  return {
    user: identity.sub,
    email: identity.email,
    emailVerified: identity.emailVerified,
    groups: identity.groups,
  };
}
