import type { IncomingMessage, ServerResponse } from 'node:http';
import { BodyError, discardBody, mediaType, readBody } from '../../http/body.js';
import { type ErrorAnswer, sendError } from '../../http/errors.js';
import { type HeaderList, sendBody, sendJson } from '../../http/respond.js';
import { addressBudget, refuseOverLimit } from '../../limits/rate-limit.js';
import { StoreUnavailableError } from '../../store/state-store.js';
import type { AuthContext } from '../authenticator.js';
import { SigningKeyError } from '../tokens/signing-keys.js';
import type { AuthorizationServer } from './authorization-server.js';
import {
  InvalidRequestError,
  InvalidScopeError,
  isOAuthError,
  ServerError,
  TemporarilyUnavailableError,
} from './errors.js';

/**
 * What the facade's endpoints (/authorize, /token, /revoke) share: a bounded form body, parameters
 * that may appear once, and the JSON and HTML responses. Every header is written with setHeader,
 * so a header the endpoint sets replaces the pipeline's default (the consent page's CSP must
 * replace the default `form-action 'self'`, not be added beside it: two CSPs both apply).
 */

/** Form bodies of /authorize, /token and /revoke are small; more is refused unread. */
export const MAX_FORM_BODY_BYTES = 16 * 1024;

/** A form body could not be read as one (wrong type, too large, cut off). */
export class FormBodyError extends InvalidRequestError {}

/**
 * The `application/x-www-form-urlencoded` body, at most `limit` bytes. Throws FormBodyError for
 * another content type or a larger body (the rest is discarded, and the connection closed after
 * the answer).
 */
export async function readFormBody(
  req: IncomingMessage,
  res: ServerResponse,
  limit = MAX_FORM_BODY_BYTES,
): Promise<URLSearchParams> {
  if (mediaType(req) !== 'application/x-www-form-urlencoded') {
    discardBody(req, res);
    throw new FormBodyError('the request body must be application/x-www-form-urlencoded');
  }
  try {
    return new URLSearchParams((await readBody(req, limit)).toString('utf8'));
  } catch (error) {
    if (error instanceof BodyError) {
      res.setHeader('connection', 'close');
      throw new FormBodyError(error.message, { cause: error });
    }
    throw error;
  }
}

/**
 * One parameter, or undefined when absent. A repeated parameter is an invalid_request
 * (RFC 6749 §3.1): which copy counts would depend on the parser. An empty value counts as absent.
 */
export function param(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  if (values.length > 1) throw new InvalidRequestError(`the ${name} parameter is repeated; send it once`);
  const value = values[0];
  return value === undefined || value === '' ? undefined : value;
}

/** A parameter that must be present. */
export function requiredParam(params: URLSearchParams, name: string): string {
  const value = param(params, name);
  if (value === undefined) throw new InvalidRequestError(`the ${name} parameter is missing`);
  return value;
}

/**
 * A `scope` parameter as a list (absent or empty: undefined). Only the scopes this server
 * defines (`supported`: the base scope and the mcp_access step-up scopes) may be asked for;
 * anything else is invalid_scope.
 */
export function scopeParam(params: URLSearchParams, supported: readonly string[]): string[] | undefined {
  const raw = param(params, 'scope');
  if (raw === undefined) return undefined;
  const scopes = [...new Set(raw.split(' ').filter((s) => s !== ''))];
  const unknown = scopes.find((s) => !supported.includes(s));
  if (unknown !== undefined) {
    throw new InvalidScopeError(
      `unknown scope ${JSON.stringify(unknown.slice(0, 50))}: this server grants ${supported.map((s) => `"${s}"`).join(', ')}`,
    );
  }
  return scopes.length === 0 ? undefined : scopes;
}

type Headers = HeaderList;

function setHeaders(res: ServerResponse, headers: Headers): void {
  for (const [name, value] of headers) res.setHeader(name, value);
}

/** Token responses and errors are never cached (RFC 6749 §5.1). */
const NO_STORE: Headers = [
  ['cache-control', 'no-store'],
  ['pragma', 'no-cache'],
];

export function writeJson(res: ServerResponse, status: number, body: unknown, headers: Headers = []): void {
  sendJson(res, status, body, [...NO_STORE, ...headers]);
}

/**
 * An error answer of the facade's endpoints (RFC 6749 §5.2) in the proxy's one error shape, with
 * the request id. Never cached: sendError says `Cache-Control: no-store`, and `Pragma: no-cache`
 * is added here for the HTTP/1.0 caches RFC 6749 §5.1 still names.
 */
export function writeError(res: ServerResponse, answer: ErrorAnswer, requestId: string): void {
  res.setHeader('pragma', 'no-cache');
  sendError(res, answer, requestId);
}

/** An empty 200 that is not cached (RFC 7009 §2.2). */
export function writeEmpty(res: ServerResponse, status = 200): void {
  setHeaders(res, NO_STORE);
  res.setHeader('content-length', 0);
  res.writeHead(status);
  res.end();
}

export function writeHtml(res: ServerResponse, status: number, html: string, headers: Headers = []): void {
  sendBody(res, status, 'text/html; charset=utf-8', html, [...NO_STORE, ...headers]);
}

/** A redirect: 302 after a GET, 303 after a POST (so the browser follows with a GET). */
export function writeRedirect(res: ServerResponse, status: 302 | 303, location: string): void {
  setHeaders(res, [['location', location], ...NO_STORE]);
  res.setHeader('content-length', 0);
  res.writeHead(status);
  res.end();
}

export function writeMethodNotAllowed(res: ServerResponse, allow: string, requestId: string): void {
  writeError(
    res,
    { status: 405, error: 'invalid_request', description: `Use ${allow}.`, headers: [['allow', allow]] },
    requestId,
  );
}

/**
 * The per-IP budget (AUTH_RATE_LIMIT_PER_MINUTE): true when the request was refused with a 429,
 * the same answer /login gives.
 */
export function rateLimited(
  server: AuthorizationServer,
  res: ServerResponse,
  ctx: AuthContext,
): Promise<boolean> {
  return refuseOverLimit(server.rateLimiter, addressBudget(ctx.clientIp), res, ctx.requestId);
}

/**
 * What an endpoint that answers in JSON (/token, /revoke) does with an error it did not expect to
 * handle itself: OAuth errors as they are, a store outage as 503 temporarily_unavailable, anything
 * else logged and answered with a bare server_error (never a stack or message).
 */
export function writeJsonFailure(
  server: AuthorizationServer,
  res: ServerResponse,
  error: unknown,
  ctx: AuthContext,
): void {
  if (isOAuthError(error)) return writeError(res, error, ctx.requestId);
  if (error instanceof StoreUnavailableError) {
    server.logger.error({ req_id: ctx.requestId, err: error.message }, 'session store unavailable');
    const unavailable = new TemporarilyUnavailableError('The token store is unavailable; try again shortly.');
    return writeError(res, unavailable, ctx.requestId);
  }
  if (error instanceof SigningKeyError) {
    // A configuration problem of this instance (its SESSION_SECRET), not of the request: the
    // operator reads the cause in the log; the client is told to come back, not that it erred.
    server.logger.error(
      { req_id: ctx.requestId, err: error.message, problem: error.code },
      'cannot sign tokens',
    );
    const unavailable = new TemporarilyUnavailableError(
      'Tokens cannot be issued right now; try again later.',
    );
    return writeError(res, unavailable, ctx.requestId);
  }
  server.logger.error(
    { req_id: ctx.requestId, err: (error as Error)?.message, path: ctx.path },
    'facade error',
  );
  writeError(res, new ServerError('the request could not be processed'), ctx.requestId);
}
