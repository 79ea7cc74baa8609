import type { IncomingMessage } from 'node:http';
import type { Config, ServerConfig } from '../config/types.js';
import type { TraceSpan } from '../observability/spans.js';
import { StoreUnavailableError } from '../store/state-store.js';
import type { AuthContext, AuthDecision, Authenticator, RouteHandler } from './authenticator.js';
import type { BrowserAuthResult, BrowserLogin } from './browser/browser-login.js';
import { type Challenge, errorChallenge } from './challenge.js';
import type { AuthorizationServer } from './facade/authorization-server.js';
import { resourceMetadataRoutes } from './facade/discovery.js';
import { authorizationServerEndpoints } from './facade/endpoints.js';
import {
  AccessDeniedError,
  InsufficientScopeError,
  InvalidTokenError,
  isOAuthError,
  type OAuthError,
  TemporarilyUnavailableError,
} from './facade/errors.js';
import { FACADE_PATHS, MCP_SCOPE, wwwAuthenticateChallenge } from './facade/metadata.js';
import { type ProtectedResource, serverPolicyRefusal } from './facade/resources.js';
import { evaluatePolicy } from './policy/policy.js';
import type { AccessTokenClaims } from './tokens/access-tokens.js';

/** What the stage is made of; server/oidc.ts builds the parts from the config. */
export interface SessionAuthenticatorParts {
  config: Config;
  login: BrowserLogin;
  authorizationServer: AuthorizationServer;
  /** Releases what oidc mode holds (the provider's discovery retries, the store's connection). */
  close(): Promise<void>;
}

/**
 * AUTH_MODE=oidc: a browser session (cookie) identifies the caller, `/login`, `/callback` and
 * `/logout` run the upstream login; MCP clients present the authorization server's access tokens.
 */
export class SessionAuthenticator implements Authenticator {
  readonly mode = 'oidc';
  /** Changed only by serversChanged (a reload): the servers' metadata documents come and go. */
  readonly routes: Map<string, RouteHandler>;
  readonly cookieNames: ReadonlySet<string>;
  /** Endpoints any origin may call (no cookies involved): discovery, JWKS, /register, /token, /revoke. */
  readonly publicPaths: Set<string>;
  readonly authLimitedPaths: ReadonlySet<string>;
  readonly close: () => Promise<void>;
  private readonly config: Config;
  private readonly login: BrowserLogin;
  private readonly server: AuthorizationServer;
  /** `sub NUL client_id` pairs that already made their first call, for `mcp_first_call`. */
  private readonly calledBefore = new Set<string>();

  constructor(parts: SessionAuthenticatorParts) {
    const { login, authorizationServer } = parts;
    this.config = parts.config;
    this.login = login;
    this.server = authorizationServer;
    this.close = parts.close;
    const endpoints = authorizationServerEndpoints(authorizationServer);
    this.routes = new Map([...login.routes, ...endpoints.routes]);
    this.publicPaths = new Set(endpoints.publicPaths);
    this.authLimitedPaths = new Set([...login.authLimitedPaths, ...endpoints.authLimitedPaths]);
    this.cookieNames = authorizationServer.sessions.cookieNames;
  }

  /**
   * A bearer token (MCP clients) is verified as one of this proxy's own access tokens for
   * this resource; without one, the browser session decides.
   */
  async authenticate(req: IncomingMessage, ctx: AuthContext): Promise<AuthDecision> {
    const resource = this.resourceOf(ctx.server);
    const authorization = req.headers.authorization;
    if (authorization !== undefined && /^bearer /i.test(authorization)) {
      return this.authenticateBearer(authorization.slice(7).trim(), resource, ctx.trace);
    }
    const { clientIp, path, search, trace } = ctx;
    const result = await this.login.authenticate(req, clientIp, path + search, trace, resource);
    if (result.kind === 'challenge') return result;
    const { forwardAccessToken, forwardIdToken } = this.config.auth.identityHeaders;
    const extra: Array<[string, string]> = [];
    if (forwardAccessToken) extra.push(['x-forwarded-access-token', result.session.tokens.accessToken]);
    if (forwardIdToken && result.session.tokens.idToken)
      extra.push(['x-forwarded-id-token', result.session.tokens.idToken]);
    return { kind: 'allow', identity: result.identity, credentialsConsumed: true, extraHeaders: extra };
  }

  /**
   * A reload changed the servers: each one's metadata document is served at its path from now
   * on, and a removed server's is gone.
   */
  serversChanged(): void {
    for (const path of [...this.routes.keys()]) {
      if (path.startsWith(FACADE_PATHS.protectedResourceMetadata)) {
        this.routes.delete(path);
        this.publicPaths.delete(path);
      }
    }
    for (const [path, handler] of resourceMetadataRoutes(this.server)) {
      this.routes.set(path, handler);
      this.publicPaths.add(path);
    }
  }

  /** The browser session check alone (no bearer token): the admin API's group members log in this way. */
  authenticateBrowser(req: IncomingMessage, ctx: AuthContext): Promise<BrowserAuthResult> {
    return this.login.authenticate(req, ctx.clientIp, ctx.path + ctx.search);
  }

  /** The protected resource of the server a request is for; the first server's otherwise. */
  private resourceOf(server: ServerConfig | undefined): ProtectedResource {
    const { resources } = this.server;
    return (server && resources.byName(server.name)) ?? resources.first();
  }

  private async authenticateBearer(
    token: string,
    resource: ProtectedResource,
    trace: TraceSpan | undefined,
  ): Promise<AuthDecision> {
    let claims: AccessTokenClaims;
    try {
      claims = await this.bearerClaims(token, resource, trace);
    } catch (error) {
      if (!isOAuthError(error)) throw error;
      return { kind: 'challenge', challenge: this.bearerChallenge(error, resource) };
    }
    this.noteFirstCall(claims.sub, claims.clientId);
    return {
      kind: 'allow',
      identity: {
        user: claims.sub,
        email: claims.email,
        emailVerified: claims.emailVerified,
        groups: claims.groups,
      },
      credentialsConsumed: true,
      scopes: claims.scope.split(' '),
      clientId: claims.clientId,
    };
  }

  /**
   * The claims of a token that may call the MCP server now; otherwise the OAuthError that says
   * why: invalid_token (not one of ours for this resource, expired, revoked), insufficient_scope,
   * access_denied (the allow-lists, ALLOWED_* and the server's own, applied to every request so
   * removing a user takes effect at once), or temporarily_unavailable (the store is down: never
   * fail open).
   */
  private async bearerClaims(
    token: string,
    resource: ProtectedResource,
    trace: TraceSpan | undefined,
  ): Promise<AccessTokenClaims> {
    const { accessTokens } = this.server;
    const verify = (): Promise<AccessTokenClaims> =>
      accessTokens.verifyAccessToken(token, { audience: resource.url });
    let claims: AccessTokenClaims;
    try {
      claims = await (trace ? trace.child('token.verify', verify) : verify());
    } catch (error) {
      throw bearerFailure(error);
    }
    if (!claims.scope.split(' ').includes(MCP_SCOPE)) {
      throw new InsufficientScopeError(`The access token lacks the "${MCP_SCOPE}" scope.`);
    }
    const subject = { email: claims.email, emailVerified: claims.emailVerified, groups: claims.groups ?? [] };
    const verdict = evaluatePolicy(subject, this.config.auth.policy);
    const refusal = verdict.allowed ? serverPolicyRefusal(resource, subject) : verdict.reason;
    if (refusal !== undefined) throw new AccessDeniedError(refusal, { reason: 'denied' });
    return claims;
  }

  /**
   * The answer to a refused bearer request: the error, and for RFC 6750's own codes the
   * `WWW-Authenticate: Bearer` challenge that names the resource metadata and the scope needed,
   * so the client knows where to get (or how to widen) a token. Labelled by the error's reason,
   * or its code.
   */
  insufficientScope(required: readonly string[], description: string, server?: ServerConfig): Challenge {
    return this.bearerChallenge(new InsufficientScopeError(description), this.resourceOf(server), required);
  }

  private bearerChallenge(
    error: OAuthError,
    resource: ProtectedResource,
    scope: readonly string[] = [MCP_SCOPE],
  ): Challenge {
    const { code } = error;
    const challenge =
      code === 'invalid_token' || code === 'insufficient_scope'
        ? wwwAuthenticateChallenge({
            resourceMetadataUrl: resource.metadataUrl,
            scope,
            error: code,
            description: error.description,
          })
        : undefined;
    const headers = challenge ? [...error.headers, ['www-authenticate', challenge] as const] : error.headers;
    const answer = { status: error.status, error: code, description: error.description, headers };
    return errorChallenge(answer, error.reason ?? code);
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
    this.server.audit.record('mcp_first_call', { sub, client_id: clientId });
  }
}

/** How many user and client pairs `mcp_first_call` remembers. */
const MAX_FIRST_CALL_PAIRS = 10_000;

/** A failed token check as the bearer path answers it (the failure named in the description). */
function bearerFailure(error: unknown): OAuthError {
  if (error instanceof StoreUnavailableError) {
    return new TemporarilyUnavailableError('Tokens cannot be checked right now.', {
      cause: error,
      reason: 'store_unavailable',
    });
  }
  const description =
    error instanceof InvalidTokenError
      ? `The access token is not valid (${error.reason}).`
      : 'The access token is not valid.';
  return new InvalidTokenError(description, { cause: error });
}
