import type { ServerResponse } from 'node:http';
import { type ErrorAnswer, errorBody, type HeaderList } from '../http/errors.js';

/**
 * How the authentication stage answers a request it does not let through (401 with a
 * WWW-Authenticate challenge, 302 to the login, 403, 503): data, so the pipeline can write it
 * to an HTTP response or, for a WebSocket upgrade, straight to the socket. A JSON challenge is
 * an error in the proxy's one error shape (http/errors.ts), its request id added when written;
 * an HTML one (browsers) is a page.
 */
export interface Challenge {
  status: number;
  /** Response headers besides the content headers (Location, WWW-Authenticate, Retry-After...). */
  headers: HeaderList;
  /** Metric and log label: unauthenticated, redirect_login, denied, store_unavailable, ... */
  result: string;
  /** A JSON error body: `error` and `error_description`. */
  error?: { code: string; description: string };
  /** An HTML page body. */
  html?: string;
}

export function htmlChallenge(
  status: number,
  body: string,
  result: string,
  extra: HeaderList = [],
): Challenge {
  return { status, headers: extra, result, html: body };
}

export function jsonChallenge(
  status: number,
  error: string,
  description: string,
  result: string,
  extra: HeaderList = [],
): Challenge {
  return { status, headers: extra, result, error: { code: error, description } };
}

/** A challenge answering with an error the proxy already describes as an ErrorAnswer. */
export function errorChallenge(answer: ErrorAnswer, result: string): Challenge {
  return jsonChallenge(answer.status, answer.error, answer.description, result, answer.headers);
}

/** The headers and body a challenge is written with, for either writer. */
export function challengeResponse(
  challenge: Challenge,
  requestId: string,
): { headers: Array<readonly [string, string]>; body: string } {
  const type = challenge.error ? 'application/json' : 'text/html; charset=utf-8';
  const body = challenge.error
    ? errorBody(challenge.error.code, challenge.error.description, requestId)
    : (challenge.html ?? '');
  return {
    headers: [['content-type', type], ['cache-control', 'no-store'], ...challenge.headers],
    body,
  };
}

/** Writes a challenge on a response that has only the pipeline's local headers set. */
export function writeChallenge(res: ServerResponse, challenge: Challenge, requestId: string): void {
  const { headers, body } = challengeResponse(challenge, requestId);
  for (const [name, value] of headers) res.appendHeader(name, value);
  res.setHeader('content-length', Buffer.byteLength(body));
  res.writeHead(challenge.status);
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
