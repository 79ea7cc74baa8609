import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerConfig } from '../config/types.js';
import type { TraceSpan } from '../observability/spans.js';
import type { Challenge } from './challenge.js';

/** Who the caller is, as the backend learns it through identity headers. */
export interface Identity {
  user: string;
  email?: string;
  /** The provider's `email_verified` (false: the allow-lists do not match the email). */
  emailVerified?: boolean;
  groups?: readonly string[];
}

/**
 * The authentication stage's verdict. `allow` lets the request be forwarded (with the
 * identity, if any); `challenge` is how to answer instead (401, 302 to login, 403, 503).
 */
export type AuthDecision =
  | {
      kind: 'allow';
      identity?: Identity;
      /** The request carried the proxy's credentials (its Authorization), not the backend's. */
      credentialsConsumed: boolean;
      /** Further headers for the backend (forwarded upstream tokens, when configured). */
      extraHeaders?: ReadonlyArray<[string, string]>;
      /** The bearer token's scopes; absent for a browser session (judged by the rules' `allow` alone). */
      scopes?: readonly string[];
      /** The OAuth client the bearer token was issued to (audit). */
      clientId?: string;
    }
  | { kind: 'challenge'; challenge: Challenge };

/** What the pipeline already knows about a request when it asks the stage. */
export interface AuthContext {
  clientIp: string;
  requestId: string;
  path: string;
  /** Including the leading `?`, or empty. */
  search: string;
  /** The request's span: the parent of the stage's own (session lookup, token checks, IdP calls). */
  trace?: TraceSpan;
  /**
   * The MCP server the request is for (its own resource, challenge and allow-lists); absent for
   * the proxy's own endpoints.
   */
  server?: ServerConfig;
}

/** An endpoint the stage answers itself (/login, /callback, /logout): never forwarded. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse, ctx: AuthContext) => Promise<void>;

export interface Authenticator {
  readonly mode: string;
  /** Owned endpoints by exact path. */
  readonly routes?: ReadonlyMap<string, RouteHandler>;
  /**
   * Owned endpoints any web origin may call (CORS `*`, no Origin check): they take no
   * cookies, so a foreign page gains nothing (discovery, JWKS, /register, /token, /revoke).
   */
  readonly publicPaths?: ReadonlySet<string>;
  /** Cookies that belong to the proxy: removed from the Cookie header the backend gets. */
  readonly cookieNames?: ReadonlySet<string>;
  /**
   * Owned endpoints that spend the per-IP login budget (AUTH_RATE_LIMIT_PER_MINUTE) themselves:
   * the per-user budget (RATE_LIMIT_PER_MINUTE) leaves them out.
   */
  readonly authLimitedPaths?: ReadonlySet<string>;
  /**
   * Sync or async: a stage that decides from the request alone (bypass) returns the
   * decision directly, so the request is forwarded in the same tick; one that must wait
   * (a session store) returns a promise.
   */
  authenticate(req: IncomingMessage, ctx: AuthContext): AuthDecision | Promise<AuthDecision>;
  /**
   * The step-up challenge (MCP authorization, scope challenges): 403 insufficient_scope naming
   * every scope `required`, so the client re-authorizes for them. Absent where there are no tokens.
   */
  insufficientScope?(required: readonly string[], description: string, server?: ServerConfig): Challenge;
  close?(): Promise<void>;
}

/** Shared and frozen: an anonymous `allow` carries nothing request-specific. */
const ALLOW_ANONYMOUS: AuthDecision = Object.freeze({ kind: 'allow', credentialsConsumed: false });

/**
 * AUTH_MODE=bypass: every request passes without login (local development). The client's
 * Authorization header is left alone, since no credential of the proxy's was consumed.
 */
export class BypassAuthenticator implements Authenticator {
  readonly mode = 'bypass';

  authenticate(): AuthDecision {
    return ALLOW_ANONYMOUS;
  }
}
