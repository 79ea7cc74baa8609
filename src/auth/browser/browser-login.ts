import type { IncomingMessage, ServerResponse } from 'node:http';
import * as client from 'openid-client';
import type { Config } from '../../config/types.js';
import { addressBudget, type RateLimiter, refuseOverLimit } from '../../limits/rate-limit.js';
import type { Logger } from '../../observability/logger.js';
import { NOOP_SPAN, type TraceSpan } from '../../observability/spans.js';
import type { SessionLookup, SessionManager, SessionRecord } from '../../session/sessions.js';
import { StoreUnavailableError } from '../../store/state-store.js';
import type { AuditLog } from '../audit.js';
import type { AuthContext, Identity, RouteHandler } from '../authenticator.js';
import { type Challenge, htmlChallenge, jsonChallenge, writeChallenge } from '../challenge.js';
import { MCP_SCOPE, protectedResourceMetadataUrl, wwwAuthenticateChallenge } from '../facade/metadata.js';
import {
  LoginRejectedError,
  type Provider,
  ProviderUnavailableError,
  type UpstreamIdentity,
} from '../oidc/provider.js';
import { evaluatePolicy } from '../policy/policy.js';
import { page } from './pages.js';
import { safeReturnTo } from './return-to.js';

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

function wantsHtml(req: IncomingMessage): boolean {
  const method = req.method ?? 'GET';
  return (method === 'GET' || method === 'HEAD') && /\btext\/html\b/i.test(req.headers.accept ?? '');
}

/**
 * Browser login through the upstream provider: `/login`, `/callback`, `/logout`, and the
 * session check on every other request.
 */
export class BrowserLogin {
  readonly routes: ReadonlyMap<string, RouteHandler>;
  /** The routes that spend the per-IP login budget (AUTH_RATE_LIMIT_PER_MINUTE). */
  readonly authLimitedPaths: ReadonlySet<string>;

  constructor(private readonly deps: BrowserLoginDeps) {
    const callback: RouteHandler = (req, res, ctx) => this.callback(req, res, ctx);
    // OIDC_REDIRECT_URL may name another path: the provider sends the browser there.
    const callbackPath = deps.config.auth.oidc.redirectUrl.pathname;
    this.routes = new Map([
      ['/login', (req, res, ctx) => this.login(req, res, ctx)],
      ['/callback', callback],
      [callbackPath, callback],
      ['/logout', (req, res, ctx) => this.logout(req, res, ctx)],
    ]);
    this.authLimitedPaths = new Set(['/login', '/callback', callbackPath]);
  }

  /** The session check: allow with an identity, or the challenge to answer with. */
  async authenticate(
    req: IncomingMessage,
    clientIp: string,
    pathAndQuery: string,
    trace: TraceSpan = NOOP_SPAN,
  ): Promise<BrowserAuthResult> {
    const { sessions, audit } = this.deps;
    let lookup: SessionLookup;
    try {
      lookup = await trace.child('session.lookup', () => sessions.load(req.headers.cookie));
    } catch (err) {
      return { kind: 'challenge', challenge: this.storeUnavailable(req, err) };
    }
    if (trace.recording) trace.setAttributes({ 'mcp_oidc_proxy.session': lookup.kind });
    if (lookup.kind === 'expired' && lookup.reason !== 'gone') {
      audit.record('session_expired', {
        reason: lookup.reason,
        sub: lookup.record?.identity.sub,
        ip: clientIp,
      });
    }
    if (lookup.kind === 'none')
      return { kind: 'challenge', challenge: this.unauthenticated(req, pathAndQuery) };
    if (lookup.kind !== 'valid')
      return { kind: 'challenge', challenge: this.unauthenticated(req, pathAndQuery, true) };

    let record = lookup.record;
    if (needsRefresh(record)) {
      let refreshed: SessionRecord | 'ended';
      try {
        refreshed = await this.refresh(lookup.id, record, clientIp, trace);
      } catch (err) {
        return { kind: 'challenge', challenge: this.storeUnavailable(req, err) };
      }
      if (refreshed === 'ended')
        return { kind: 'challenge', challenge: this.unauthenticated(req, pathAndQuery, true) };
      record = refreshed;
    }
    const refusal = this.checkPolicy(req, record.identity, clientIp);
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
  private unauthenticated(req: IncomingMessage, pathAndQuery: string, staleCookie = false): Challenge {
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
      resourceMetadataUrl: protectedResourceMetadataUrl(publicUrl, this.deps.config.mcpPath),
      scope: MCP_SCOPE,
    });
    return jsonChallenge(401, 'unauthorized', 'Authentication is required.', 'unauthenticated', [
      ['www-authenticate', challenge],
      ...clear,
    ]);
  }

  /** The allow-lists, applied at login and on every request; a refusal is audited. */
  private checkPolicy(
    req: IncomingMessage,
    identity: UpstreamIdentity,
    clientIp: string,
  ): Challenge | undefined {
    const verdict = evaluatePolicy(identity, this.deps.config.auth.policy);
    if (verdict.allowed) return undefined;
    this.deps.audit.record('access_denied', {
      sub: identity.sub,
      email: identity.email,
      reason: verdict.reason,
      ip: clientIp,
    });
    return this.denied(req, verdict.reason);
  }

  private denied(req: IncomingMessage, reason: string): Challenge {
    if (wantsHtml(req)) {
      return htmlChallenge(
        403,
        // prompt=login makes the provider ask for credentials again instead of reusing its
        // session, so the user can switch to an account that is allowed.
        page('Access denied', `You are signed in, but not allowed to use this server: ${reason}`, {
          href: '/login?prompt=login',
          text: 'Sign in with a different account',
        }),
        'denied',
      );
    }
    return jsonChallenge(403, 'access_denied', reason, 'denied');
  }

  private storeUnavailable(req: IncomingMessage, err: unknown): Challenge {
    this.deps.logger.error({ err: (err as Error).message }, 'session store unavailable');
    const message =
      'Sessions cannot be checked right now (the session store is unavailable). Try again shortly.';
    if (!(err instanceof StoreUnavailableError)) throw err;
    return wantsHtml(req)
      ? htmlChallenge(503, page('Temporarily unavailable', message), 'store_unavailable', [
          ['retry-after', '5'],
        ])
      : jsonChallenge(503, 'temporarily_unavailable', message, 'store_unavailable', [['retry-after', '5']]);
  }

  private limited(res: ServerResponse, ctx: AuthContext): Promise<boolean> {
    return refuseOverLimit(this.deps.rateLimiter, addressBudget(ctx.clientIp), res, ctx.requestId);
  }

  private async login(req: IncomingMessage, res: ServerResponse, ctx: AuthContext): Promise<void> {
    // Every request spends the budget, whatever its method: it counts requests, not logins.
    if (await this.limited(res, ctx)) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') return this.methodNotAllowed(res, ctx, 'GET');
    const { provider, sessions, config } = this.deps;
    try {
      await provider.ready();
    } catch {
      return writeChallenge(res, this.providerDown(), ctx.requestId);
    }
    const returnTo = safeReturnTo(new URLSearchParams(ctx.search).get('rd'), config.server.publicUrl);
    const codeVerifier = client.randomPKCECodeVerifier();
    const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
    const nonce = client.randomNonce();
    let started: { state: string; setCookie: string };
    try {
      started = await sessions.startLogin(req.headers.cookie, { nonce, codeVerifier, returnTo });
    } catch (err) {
      return writeChallenge(res, this.storeUnavailable(req, err), ctx.requestId);
    }
    const prompt = new URLSearchParams(ctx.search).get('prompt');
    const location = provider.authorizationUrl({
      state: started.state,
      nonce,
      codeVerifier,
      codeChallenge,
      prompt: prompt === 'login' || prompt === 'select_account' ? prompt : undefined,
    }).href;
    writeChallenge(
      res,
      htmlChallenge(
        302,
        page('Signing in', 'Redirecting to your identity provider…', { href: location, text: 'Continue' }),
        'login',
        [
          ['location', location],
          ['set-cookie', started.setCookie],
        ],
      ),
      ctx.requestId,
    );
  }

  private async callback(req: IncomingMessage, res: ServerResponse, ctx: AuthContext): Promise<void> {
    if (await this.limited(res, ctx)) return;
    if (req.method !== 'GET') return this.methodNotAllowed(res, ctx, 'GET');
    const { provider, sessions, audit, config } = this.deps;
    const params = new URLSearchParams(ctx.search);
    const fail = (status: number, reason: string, message: string): void => {
      audit.record('login_failure', { reason, ip: ctx.clientIp, provider: provider.name });
      writeChallenge(
        res,
        htmlChallenge(
          status,
          page('Sign-in failed', message, { href: '/login', text: 'Sign in again' }),
          'login_failed',
        ),
        ctx.requestId,
      );
    };
    const idpError = params.get('error');
    if (idpError) {
      const detail = (params.get('error_description') ?? '').slice(0, 200);
      return fail(
        401,
        `provider_error: ${idpError.slice(0, 64)}`,
        `The identity provider refused the sign-in (${idpError.slice(0, 64)}${detail ? `: ${detail}` : ''}).`,
      );
    }
    const state = params.get('state');
    if (!state || !params.get('code'))
      return fail(400, 'missing_state_or_code', 'The sign-in response is incomplete.');
    let finished: Awaited<ReturnType<SessionManager['finishLogin']>>;
    try {
      finished = await sessions.finishLogin(req.headers.cookie, state);
    } catch (err) {
      return writeChallenge(res, this.storeUnavailable(req, err), ctx.requestId);
    }
    if (!finished.ok) {
      return fail(
        400,
        finished.reason,
        finished.reason === 'browser_mismatch'
          ? 'This sign-in was started in another browser.'
          : 'This sign-in link has expired or was already used.',
      );
    }
    const { login } = finished;
    const callbackUrl = new URL(config.auth.oidc.redirectUrl.href);
    callbackUrl.search = ctx.search;
    let result: Awaited<ReturnType<Provider['redeem']>>;
    try {
      result = await provider.redeem(
        callbackUrl,
        { state, nonce: login.nonce, codeVerifier: login.codeVerifier },
        ctx.trace,
      );
    } catch (err) {
      if (err instanceof ProviderUnavailableError) {
        audit.record('login_failure', {
          reason: 'provider_unreachable',
          ip: ctx.clientIp,
          provider: provider.name,
        });
        return writeChallenge(res, this.providerDown(), ctx.requestId);
      }
      const reason = err instanceof LoginRejectedError ? err.reason : 'invalid_response';
      this.deps.logger.warn({ err: (err as Error).message }, 'login rejected');
      return fail(
        401,
        reason,
        (err instanceof LoginRejectedError && err.userMessage) ||
          'The sign-in response could not be verified.',
      );
    }
    const refusal = this.checkPolicy(req, result.identity, ctx.clientIp);
    if (refusal) return writeChallenge(res, refusal, ctx.requestId);
    let created: { id: string; setCookie: string };
    try {
      created = await sessions.create(provider.name, result.identity, result.tokens);
      // A login replaces whatever session this browser held: the old id is not left valid
      // beside the new one (it may be someone else's, or a copy an attacker kept).
      const previous = sessions.idFromCookie(req.headers.cookie);
      if (previous) await sessions.destroy(previous);
    } catch (err) {
      return writeChallenge(res, this.storeUnavailable(req, err), ctx.requestId);
    }
    audit.record('login_success', {
      sub: result.identity.sub,
      email: result.identity.email,
      ip: ctx.clientIp,
      provider: provider.name,
    });
    writeChallenge(
      res,
      htmlChallenge(
        302,
        page('Signed in', 'Redirecting…', { href: login.returnTo, text: 'Continue' }),
        'login_success',
        [
          ['location', login.returnTo],
          ['set-cookie', created.setCookie],
        ],
      ),
      ctx.requestId,
    );
  }

  private async logout(req: IncomingMessage, res: ServerResponse, ctx: AuthContext): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'POST') return this.methodNotAllowed(res, ctx, 'GET, POST');
    const { sessions, audit, provider, config } = this.deps;
    let lookup: SessionLookup = { kind: 'none' };
    try {
      lookup = await sessions.load(req.headers.cookie);
      if (lookup.kind === 'valid') await sessions.destroy(lookup.id);
    } catch (err) {
      // The session cannot be ended in the store now, but this browser forgets it at least.
      const unavailable = this.storeUnavailable(req, err);
      const clearCookies = sessions.clearCookies().map((c): [string, string] => ['set-cookie', c]);
      return writeChallenge(
        res,
        { ...unavailable, headers: [...unavailable.headers, ...clearCookies] },
        ctx.requestId,
      );
    }
    const clear = sessions.clearCookies().map((c): [string, string] => ['set-cookie', c]);
    if (lookup.kind === 'valid') {
      audit.record('logout', { sub: lookup.record.identity.sub, ip: ctx.clientIp });
      // RP-initiated logout ends the provider's session too; it sends the browser back here.
      const endSession = provider.endSessionUrl(
        lookup.record.tokens.idToken,
        `${config.server.publicUrl.origin}/logout`,
      );
      if (endSession) {
        return writeChallenge(
          res,
          htmlChallenge(302, page('Signing out', 'Redirecting to your identity provider…'), 'logout', [
            ['location', endSession.href],
            ...clear,
          ]),
          ctx.requestId,
        );
      }
    }
    writeChallenge(
      res,
      htmlChallenge(
        200,
        page('Signed out', 'You are signed out.', { href: '/login', text: 'Sign in again' }),
        'logout',
        clear,
      ),
      ctx.requestId,
    );
  }

  private providerDown(): Challenge {
    return htmlChallenge(
      503,
      page(
        'Identity provider unavailable',
        'The identity provider cannot be reached right now, so you cannot sign in. Try again in a minute.',
      ),
      'provider_unavailable',
      [['retry-after', '30']],
    );
  }

  private methodNotAllowed(res: ServerResponse, ctx: AuthContext, allow: string): void {
    writeChallenge(
      res,
      jsonChallenge(405, 'method_not_allowed', `Use ${allow}.`, 'method_not_allowed', [['allow', allow]]),
      ctx.requestId,
    );
  }
}

/** True when the access token expires within the margin and a refresh token can renew it. */
function needsRefresh(record: SessionRecord): boolean {
  const { refreshToken, expiresAt } = record.tokens;
  return Boolean(refreshToken) && expiresAt !== undefined && Date.now() > expiresAt - REFRESH_MARGIN_MS;
}

function toIdentity(identity: UpstreamIdentity): Identity {
  return { user: identity.sub, email: identity.email, groups: identity.groups };
}
