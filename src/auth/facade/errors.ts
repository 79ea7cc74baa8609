import type { ErrorAnswer, HeaderList } from '../../http/errors.js';
import { StoreUnavailableError } from '../../store/state-store.js';
/**
 * OAuth errors the authorization server facade and the bearer check answer with, one class per
 * error code (as in the MCP SDK's server/auth). Handlers throw them; each is an ErrorAnswer, so
 * the one error writer (http/errors.ts) answers it with its status, code, description and headers.
 * Descriptions are for the client developer reading the response: they say what was wrong and
 * what to send instead, and never carry a secret, a stack or an internal address.
 */

/** Every error code the facade emits: RFC 6749 §5.2, 6750 §3.1, 7591 §3.2.2, 7009 §2.2.1, 8707 §2. */
export type OAuthErrorCode =
  | 'invalid_request'
  | 'invalid_client'
  | 'invalid_grant'
  | 'unauthorized_client'
  | 'unsupported_grant_type'
  | 'unsupported_response_type'
  | 'unsupported_token_type'
  | 'invalid_scope'
  | 'invalid_target'
  | 'invalid_redirect_uri'
  | 'invalid_client_metadata'
  | 'access_denied'
  | 'server_error'
  | 'temporarily_unavailable'
  | 'invalid_token'
  | 'insufficient_scope';

export interface OAuthErrorOptions {
  cause?: unknown;
  /** Response headers the error is answered with (`Retry-After`, `WWW-Authenticate`, ...). */
  headers?: HeaderList;
  /**
   * Why, as a stable word for logs, metrics and callers that tell failures apart (a refresh
   * token's `reuse_detected`, an access token's `expired`); the client reads `error` only.
   */
  reason?: string;
}

export abstract class OAuthError extends Error implements ErrorAnswer {
  abstract readonly code: OAuthErrorCode;
  /** HTTP status when the error is answered directly (not through a redirect to the client). */
  abstract readonly status: number;
  readonly headers: HeaderList;
  readonly reason: string | undefined;

  constructor(description: string, options: OAuthErrorOptions = {}) {
    super(description, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.headers = options.headers ?? [];
    this.reason = options.reason;
  }

  /** The code, as ErrorAnswer names it. */
  get error(): OAuthErrorCode {
    return this.code;
  }

  get description(): string {
    return this.message;
  }
}

export function isOAuthError(value: unknown): value is OAuthError {
  return value instanceof OAuthError;
}

/** Missing, repeated or malformed parameter. */
export class InvalidRequestError extends OAuthError {
  readonly code = 'invalid_request';
  readonly status = 400;
}

/** Client authentication failed: unknown or deleted client, wrong secret, wrong method. 401, so
 * clients (Claude, the SDK) register again. */
export class InvalidClientError extends OAuthError {
  readonly code = 'invalid_client';
  readonly status = 401;
}

/** Code or refresh token invalid, expired, replayed, or issued to another client or redirect URI. */
export class InvalidGrantError extends OAuthError {
  readonly code = 'invalid_grant';
  readonly status = 400;
}

/** The client is not allowed to use this grant type (it did not register it). */
export class UnauthorizedClientError extends OAuthError {
  readonly code = 'unauthorized_client';
  readonly status = 400;
}

export class UnsupportedGrantTypeError extends OAuthError {
  readonly code = 'unsupported_grant_type';
  readonly status = 400;
}

/** /authorize with a response_type other than `code`. */
export class UnsupportedResponseTypeError extends OAuthError {
  readonly code = 'unsupported_response_type';
  readonly status = 400;
}

/** /revoke with a token_type_hint the server does not know (RFC 7009 §2.2.1). */
export class UnsupportedTokenTypeError extends OAuthError {
  readonly code = 'unsupported_token_type';
  readonly status = 400;
}

export class InvalidScopeError extends OAuthError {
  readonly code = 'invalid_scope';
  readonly status = 400;
}

/** RFC 8707: the `resource` asked for is not this proxy's MCP endpoint. */
export class InvalidTargetError extends OAuthError {
  readonly code = 'invalid_target';
  readonly status = 400;
}

/** RFC 7591: a redirect URI in a registration is missing, malformed or of a forbidden kind. */
export class InvalidRedirectUriError extends OAuthError {
  readonly code = 'invalid_redirect_uri';
  readonly status = 400;
}

/** RFC 7591: any other registration metadata field is invalid. */
export class InvalidClientMetadataError extends OAuthError {
  readonly code = 'invalid_client_metadata';
  readonly status = 400;
}

/** The user (or the operator's policy) refused. */
export class AccessDeniedError extends OAuthError {
  readonly code = 'access_denied';
  readonly status = 403;
}

export class ServerError extends OAuthError {
  readonly code = 'server_error';
  readonly status = 500;
}

/** How long a client is asked to wait when the store is down. */
const RETRY_AFTER_SECONDS = '5';

/** The session store or the upstream IdP is down: try again later (Retry-After); never fail open. */
export class TemporarilyUnavailableError extends OAuthError {
  readonly code = 'temporarily_unavailable';
  readonly status = 503;

  constructor(description: string, options: OAuthErrorOptions = {}) {
    super(description, { ...options, headers: options.headers ?? [['retry-after', RETRY_AFTER_SECONDS]] });
  }
}

/** RFC 6750: the bearer token is missing a valid signature, expired, revoked or for another audience. */
export class InvalidTokenError extends OAuthError {
  readonly code = 'invalid_token';
  readonly status = 401;
}

/** RFC 6750: the token is valid but lacks a scope the request needs. */
export class InsufficientScopeError extends OAuthError {
  readonly code = 'insufficient_scope';
  readonly status = 403;
}

/** Runs a store operation; the store being down is the client's "try again later" (503), not a 500. */
export async function unlessStoreDown<T>(operation: () => Promise<T>, what = 'client store'): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    if (error instanceof StoreUnavailableError) {
      throw new TemporarilyUnavailableError(`the ${what} is unavailable; try again shortly`, {
        cause: error,
      });
    }
    throw error;
  }
}
