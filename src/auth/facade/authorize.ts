import type { IncomingMessage, ServerResponse } from 'node:http';
import { StoreUnavailableError } from '../../store/state-store.js';
import type { AuthContext, RouteHandler } from '../authenticator.js';
import { page } from '../browser/pages.js';
import type { UpstreamIdentity } from '../oidc/provider.js';
import type { AuthorizationGrant } from './authorization-codes.js';
import type { AuthorizationServer } from './authorization-server.js';
import type { OAuthClient } from './clients.js';
import { consentPage, consentPageHeaders } from './consent-page.js';
import type { AuthorizationRequest, PendingAuthorization } from './consents.js';
import {
  AccessDeniedError,
  InvalidClientError,
  InvalidRequestError,
  InvalidTargetError,
  isOAuthError,
  type OAuthError,
  TemporarilyUnavailableError,
  UnsupportedResponseTypeError,
} from './errors.js';
import {
  FormBodyError,
  param,
  rateLimited,
  readFormBody,
  scopeParam,
  writeHtml,
  writeMethodNotAllowed,
  writeRedirect,
} from './http.js';
import { MCP_SCOPE } from './metadata.js';
import { redirectUriMatches } from './redirect-uris.js';
import type { ProtectedResource } from './resources.js';

/**
 * GET and POST /authorize: the authorization code flow's front half (OAuth 2.1 §4.1.1, PKCE S256,
 * RFC 8707 resource, RFC 9207 iss).
 *
 * GET checks the request, sends a browser without a session through /login (which returns here),
 * applies the allow-lists, and shows the consent page unless this user already approved this
 * client. The pending request is stored under a random id bound to the browser session; the
 * consent form posts that id back (POST), so approval only counts from the browser that saw the
 * page (a forged cross-site POST carries no SameSite=Lax session cookie, and cannot know the id).
 *
 * Nothing redirects to the client until its client_id and redirect_uri are known good: errors in
 * those two are shown as a page (an open redirector otherwise).
 */

/** `state` is echoed, not interpreted; this bounds what is stored for it. */
export const MAX_STATE_LENGTH = 2048;

const RANDOM_ID = /^[A-Za-z0-9_-]{43}$/;
/** base64url(SHA-256(verifier)): always 43 characters. */
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;

type CheckedRequest =
  | { kind: 'page'; status: number; title: string; message: string }
  | { kind: 'redirect'; redirectUri: string; state?: string; error: OAuthError }
  | { kind: 'ok'; client: OAuthClient; request: AuthorizationRequest };

/** `redirectUri` with the response parameters added to its query (the URI itself kept verbatim). */
export function authorizationResponseUrl(
  redirectUri: string,
  params: Record<string, string | undefined>,
): string {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined) query.append(name, value);
  const separator = !redirectUri.includes('?') ? '?' : /[?&]$/.test(redirectUri) ? '' : '&';
  return `${redirectUri}${separator}${query.toString()}`;
}

export function createAuthorizeHandler(server: AuthorizationServer): RouteHandler {
  const { issuer } = server;

  const errorPage = (res: ServerResponse, status: number, title: string, message: string): void =>
    writeHtml(res, status, page(title, message));

  const redirectError = (
    res: ServerResponse,
    status: 302 | 303,
    redirectUri: string,
    error: OAuthError,
    state: string | undefined,
  ): void => {
    const params = { error: error.code, error_description: error.description, state, iss: issuer };
    writeRedirect(res, status, authorizationResponseUrl(redirectUri, params));
  };

  async function check(params: URLSearchParams): Promise<CheckedRequest> {
    const refuse = (title: string, message: string): CheckedRequest => ({
      kind: 'page',
      status: 400,
      title,
      message,
    });
    let clientId: string | undefined;
    let redirectUri: string | undefined;
    try {
      clientId = param(params, 'client_id');
      redirectUri = param(params, 'redirect_uri');
    } catch (error) {
      if (error instanceof InvalidRequestError) return refuse('Invalid authorization request', error.message);
      throw error;
    }
    if (clientId === undefined) {
      return refuse(
        'Invalid authorization request',
        'The request names no application (client_id is missing).',
      );
    }
    let client: OAuthClient | undefined;
    try {
      client = await server.clients.get(clientId);
    } catch (error) {
      if (error instanceof InvalidClientError) {
        return refuse('Unknown application', `The application's metadata cannot be used: ${error.message}.`);
      }
      throw error;
    }
    if (client === undefined) {
      return refuse(
        'Unknown application',
        'This application is not registered here, or its registration expired. Start connecting again from the application.',
      );
    }
    if (redirectUri === undefined) {
      return refuse('Invalid authorization request', 'The request has no redirect_uri.');
    }
    const presented = redirectUri;
    if (!client.redirect_uris.some((registered) => redirectUriMatches(registered, presented))) {
      return refuse(
        'Invalid authorization request',
        'The address this request would return to is not one the application registered, so the request is refused.',
      );
    }

    // From here on, errors go back to the client.
    let state: string | undefined;
    try {
      state = param(params, 'state');
      if (state !== undefined && state.length > MAX_STATE_LENGTH) {
        state = undefined;
        throw new InvalidRequestError(`state is longer than ${MAX_STATE_LENGTH} characters`);
      }
      const responseType = param(params, 'response_type');
      if (responseType === undefined) throw new InvalidRequestError('response_type is missing; use code');
      if (responseType !== 'code') {
        throw new UnsupportedResponseTypeError('only response_type=code is supported');
      }
      const codeChallenge = param(params, 'code_challenge');
      if (codeChallenge === undefined) {
        throw new InvalidRequestError('code_challenge is required: this server requires PKCE with S256');
      }
      if (param(params, 'code_challenge_method') !== 'S256') {
        throw new InvalidRequestError('code_challenge_method must be S256');
      }
      if (!S256_CHALLENGE.test(codeChallenge)) {
        throw new InvalidRequestError(
          'code_challenge must be the base64url SHA-256 of the code verifier (43 characters)',
        );
      }
      const target = resourceOf(param(params, 'resource'));
      const resource = target.url;
      const scope = (scopeParam(params, server.scopesSupported(target)) ?? [MCP_SCOPE]).join(' ');
      return {
        kind: 'ok',
        client,
        request: { clientId, redirectUri, codeChallenge, resource, scope, ...(state ? { state } : {}) },
      };
    } catch (error) {
      if (isOAuthError(error)) return { kind: 'redirect', redirectUri, state, error };
      throw error;
    }
  }

  /**
   * RFC 8707: the MCP server a token is asked for, by its resource URL; without one, the first
   * server. Read at each request: a reload may add or remove servers.
   */
  function resourceOf(url: string | undefined): ProtectedResource {
    if (url === undefined) return server.resources.first();
    const resource = server.resources.byUrl(url);
    if (resource) return resource;
    const known = server.resources
      .all()
      .map((r) => r.url)
      .join(', ');
    throw new InvalidTargetError(`this server issues tokens only for the resources ${known}`);
  }

  /** The allow-lists, ALLOWED_* and the server's own; a refusal is answered by redirecting access_denied. */
  function allowed(identity: UpstreamIdentity, request: AuthorizationRequest, ctx: AuthContext): boolean {
    return server.admits(identity, request.resource, { client_id: request.clientId, ip: ctx.clientIp });
  }

  async function issueCode(
    res: ServerResponse,
    status: 302 | 303,
    request: AuthorizationRequest,
    identity: UpstreamIdentity,
    session: { id: string; signedInAt: number },
    consent: 'remembered' | 'granted',
    ctx: AuthContext,
  ): Promise<void> {
    const grant: AuthorizationGrant = {
      clientId: request.clientId,
      redirectUri: request.redirectUri,
      codeChallenge: request.codeChallenge,
      resource: request.resource,
      scope: request.scope,
      sub: identity.sub,
      ...(identity.email !== undefined ? { email: identity.email } : {}),
      ...(identity.emailVerified !== undefined ? { emailVerified: identity.emailVerified } : {}),
      groups: [...identity.groups],
      sessionId: session.id,
      signedInAt: session.signedInAt,
      approvedAt: Date.now(),
    };
    const code = await server.codes.issue(grant);
    server.audit.record('authorization_code_issued', {
      sub: identity.sub,
      client_id: request.clientId,
      scope: request.scope,
      consent,
      ip: ctx.clientIp,
    });
    writeRedirect(
      res,
      status,
      authorizationResponseUrl(request.redirectUri, { code, state: request.state, iss: issuer }),
    );
  }

  async function get(req: IncomingMessage, res: ServerResponse, ctx: AuthContext): Promise<void> {
    const checked = await check(new URLSearchParams(ctx.search));
    if (checked.kind === 'page') return errorPage(res, checked.status, checked.title, checked.message);
    if (checked.kind === 'redirect') {
      return redirectError(res, 302, checked.redirectUri, checked.error, checked.state);
    }
    const { client } = checked;
    const lookup = await server.sessions.load(req.headers.cookie);
    if (lookup.kind !== 'valid') {
      // /login sends the browser back to this very request once the user has signed in.
      return writeRedirect(res, 302, `/login?rd=${encodeURIComponent(`${ctx.path}${ctx.search}`)}`);
    }
    const { identity } = lookup.record;
    // Step-up scopes only for users a rule naming them allows; the rest are dropped here, so the
    // consent page, the code and the tokens all carry what was granted.
    const request = { ...checked.request };
    if (!allowed(identity, request, ctx)) {
      const denied = new AccessDeniedError('the signed-in user is not allowed to use this server');
      return redirectError(res, 302, request.redirectUri, denied, request.state);
    }
    const resource = server.resources.byUrl(request.resource) as ProtectedResource;
    request.scope = server.grantedScopes(request.scope.split(' '), identity, resource).join(' ');
    if (await server.consents.covers(identity.sub, request.clientId, request.resource, request.scope)) {
      const session = { id: lookup.id, signedInAt: lookup.record.createdAt };
      return issueCode(res, 302, request, identity, session, 'remembered', ctx);
    }
    const pending: PendingAuthorization = { ...request, sessionId: lookup.id };
    const requestId = await server.consents.hold(pending);
    writeHtml(
      res,
      200,
      consentPage({
        client,
        redirectUri: request.redirectUri,
        scopes: request.scope.split(' '),
        resource: request.resource,
        account: identity.email ?? identity.username ?? identity.sub,
        requestId,
      }),
      consentPageHeaders(request.redirectUri),
    );
  }

  async function post(req: IncomingMessage, res: ServerResponse, ctx: AuthContext): Promise<void> {
    let params: URLSearchParams;
    try {
      params = await readFormBody(req, res);
    } catch (error) {
      if (error instanceof FormBodyError)
        return errorPage(res, 400, 'Invalid consent request', error.message);
      throw error;
    }
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== issuer) {
      return errorPage(res, 403, 'Request refused', 'The consent form was submitted from another site.');
    }
    let requestId: string | undefined;
    let decision: string | undefined;
    try {
      requestId = param(params, 'request_id');
      decision = param(params, 'decision');
    } catch (error) {
      if (error instanceof InvalidRequestError)
        return errorPage(res, 400, 'Invalid consent request', error.message);
      throw error;
    }
    if (
      requestId === undefined ||
      !RANDOM_ID.test(requestId) ||
      (decision !== 'approve' && decision !== 'deny')
    ) {
      return errorPage(res, 400, 'Invalid consent request', 'The consent form was incomplete.');
    }
    const lookup = await server.sessions.load(req.headers.cookie);
    if (lookup.kind !== 'valid') {
      return errorPage(
        res,
        400,
        'Sign-in ended',
        'Your sign-in ended before you decided. Start connecting again from the application.',
      );
    }
    const pending = await server.consents.take(requestId);
    if (pending === undefined) {
      return errorPage(
        res,
        400,
        'Request expired',
        'This authorization request expired or was already answered. Start connecting again from the application.',
      );
    }
    if (pending.sessionId !== lookup.id) {
      return errorPage(
        res,
        400,
        'Request refused',
        'This authorization request was started in another browser session. Start connecting again from the application.',
      );
    }
    const { sessionId: _, ...request } = pending;
    const { identity } = lookup.record;
    if (!allowed(identity, request, ctx)) {
      const denied = new AccessDeniedError('the signed-in user is not allowed to use this server');
      return redirectError(res, 303, request.redirectUri, denied, request.state);
    }
    if (decision === 'deny') {
      server.audit.record('consent_denied', {
        sub: identity.sub,
        client_id: request.clientId,
        ip: ctx.clientIp,
      });
      const denied = new AccessDeniedError('the user denied the authorization request');
      return redirectError(res, 303, request.redirectUri, denied, request.state);
    }
    await server.consents.remember(identity.sub, request.clientId, request.resource, request.scope);
    server.audit.record('consent_granted', {
      sub: identity.sub,
      client_id: request.clientId,
      scope: request.scope,
      ip: ctx.clientIp,
    });
    const session = { id: lookup.id, signedInAt: lookup.record.createdAt };
    return issueCode(res, 303, request, identity, session, 'granted', ctx);
  }

  return async (req, res, ctx) => {
    if (await rateLimited(server, res, ctx)) return;
    if (req.method !== 'GET' && req.method !== 'POST')
      return writeMethodNotAllowed(res, 'GET, POST', ctx.requestId);
    try {
      if (req.method === 'GET') await get(req, res, ctx);
      else await post(req, res, ctx);
    } catch (error) {
      if (res.headersSent) throw error;
      if (error instanceof StoreUnavailableError || error instanceof TemporarilyUnavailableError) {
        server.logger.error({ req_id: ctx.requestId, err: error.message }, 'authorize: store unavailable');
        return writeHtml(
          res,
          503,
          page('Temporarily unavailable', 'Sign-in cannot be completed right now. Try again shortly.'),
          [['retry-after', '5']],
        );
      }
      server.logger.error({ req_id: ctx.requestId, err: (error as Error)?.message }, 'authorize failed');
      writeHtml(res, 500, page('Something went wrong', 'The authorization request could not be processed.'));
    }
  };
}
