import type { ServerResponse } from 'node:http';

/**
 * How the authentication stage answers a request it does not let through (401 with a
 * WWW-Authenticate challenge, 302 to the login, 403, 503): data, so the pipeline can
 * write it to an HTTP response or, for a WebSocket upgrade, straight to the socket.
 */
export interface Challenge {
  status: number;
  headers: Array<[string, string]>;
  body: string;
  /** Metric and log label: unauthenticated, redirect_login, denied, store_unavailable, ... */
  result: string;
}

export function htmlChallenge(
  status: number,
  body: string,
  result: string,
  extra: Array<[string, string]> = [],
): Challenge {
  return {
    status,
    headers: [['content-type', 'text/html; charset=utf-8'], ['cache-control', 'no-store'], ...extra],
    body,
    result,
  };
}

export function jsonChallenge(
  status: number,
  error: string,
  description: string,
  result: string,
  extra: Array<[string, string]> = [],
): Challenge {
  return {
    status,
    headers: [['content-type', 'application/json'], ['cache-control', 'no-store'], ...extra],
    body: JSON.stringify({ error, error_description: description }),
    result,
  };
}

/** Writes a challenge on a response that has only the pipeline's local headers set. */
export function writeChallenge(res: ServerResponse, challenge: Challenge): void {
  for (const [name, value] of challenge.headers) res.appendHeader(name, value);
  res.setHeader('content-length', Buffer.byteLength(challenge.body));
  res.writeHead(challenge.status);
  res.end(res.req.method === 'HEAD' ? undefined : challenge.body);
}
