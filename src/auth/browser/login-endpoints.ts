import type { IncomingMessage, ServerResponse } from 'node:http';
import * as client from 'openid-client';
import { addressBudget, refuseOverLimit } from '../../limits/rate-limit.js';
import type { SessionLookup, SessionManager } from '../../session/sessions.js';
import type { AuthContext, RouteHandler } from '../authenticator.js';
import { type Challenge, htmlChallenge, jsonChallenge, writeChallenge } from '../challenge.js';
import { LoginRejectedError, type Provider, ProviderUnavailableError } from '../oidc/provider.js';
import type { BrowserLoginDeps } from './browser-login.js';
import { page } from './pages.js';
import { policyRefusal, storeUnavailable } from './refusals.js';
import { safeReturnTo } from './return-to.js';

/**
 * The browser login's own endpoints: `/login` (to the provider, with PKCE, state and nonce),
 * `/callback` (the code redeemed, the allow-lists applied, a new session) and `/logout` (the
 * session ended here and, where the provider supports it, there too).
 */
export class LoginEndpoints {
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
      return writeChallenge(res, storeUnavailable(this.deps.logger, req, err), ctx.requestId);
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
      return writeChallenge(res, storeUnavailable(this.deps.logger, req, err), ctx.requestId);
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
    const refusal = policyRefusal(this.deps, req, result.identity, ctx.clientIp);
    if (refusal) return writeChallenge(res, refusal, ctx.requestId);
    let created: { id: string; setCookie: string };
    try {
      created = await sessions.create(provider.name, result.identity, result.tokens);
      // A login replaces whatever session this browser held: the old id is not left valid
      // beside the new one (it may be someone else's, or a copy an attacker kept).
      const previous = sessions.idFromCookie(req.headers.cookie);
      if (previous) await sessions.destroy(previous);
    } catch (err) {
      return writeChallenge(res, storeUnavailable(this.deps.logger, req, err), ctx.requestId);
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
      const unavailable = storeUnavailable(this.deps.logger, req, err);
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
