import { type ServerResponse, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { type HeaderList, sendBody } from './respond.js';

/**
 * The one shape of every error the proxy answers itself, from a bad request target to a failed
 * token exchange: RFC 6749 §5.2's `error` and `error_description`, plus the request id the access
 * log and the `X-Request-Id` header carry, so a user's report can be matched to the log line.
 * OAuth clients read the first two and ignore the third (RFC 6749 §5.2 allows more members).
 */
export interface ErrorBody {
  error: string;
  error_description: string;
  request_id?: string;
}

export type { HeaderList };

/** An error the proxy answers itself: what the two writers below turn into bytes. */
export interface ErrorAnswer {
  status: number;
  error: string;
  description: string;
  /** Extra response headers (`Retry-After`, `Allow`, `WWW-Authenticate`, ...). */
  headers?: HeaderList;
}

export function errorBody(error: string, description: string, requestId?: string): string {
  const body: ErrorBody = { error, error_description: description };
  if (requestId !== undefined) body.request_id = requestId;
  return JSON.stringify(body);
}

/**
 * Writes an error on a response whose head is not sent yet. Headers already set on `res` (the
 * pipeline's security headers and request id) stay; those of the answer replace any namesake.
 */
export function sendError(res: ServerResponse, answer: ErrorAnswer, requestId?: string): void {
  // Never cached (RFC 6749 §5.1 asks it of token responses; nothing gains from caching the rest).
  const body = errorBody(answer.error, answer.description, requestId);
  sendBody(res, answer.status, 'application/json', body, answer.headers);
}

/**
 * `HTTP/1.1 <status> <reason>` and the header lines of a response written straight to a socket.
 * `reason` defaults to the standard phrase; a relayed upstream response keeps its own.
 */
export function rawResponseHead(
  status: number,
  headers: Iterable<readonly [string, string]>,
  reason = STATUS_CODES[status] ?? 'Error',
): string {
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (const [name, value] of headers) head += `${name}: ${value}\r\n`;
  return `${head}\r\n`;
}

/**
 * Writes a complete response to a raw socket and closes it: for WebSocket upgrades and requests
 * Node could not parse, which have no ServerResponse. `headers` come after the content headers.
 */
export function endSocket(socket: Duplex, status: number, headers: HeaderList, body: string): void {
  socket.end(
    rawResponseHead(status, [
      ...headers,
      ['content-length', String(Buffer.byteLength(body))],
      ['connection', 'close'],
    ]) + body,
  );
}

/** An error on a raw socket, in the same shape as sendError's. */
export function endSocketWithError(
  socket: Duplex,
  answer: ErrorAnswer,
  requestId: string | undefined,
  extraHeaders: HeaderList = [],
): void {
  endSocket(
    socket,
    answer.status,
    [
      ['content-type', 'application/json'],
      ['cache-control', 'no-store'],
      ...(answer.headers ?? []),
      ...extraHeaders,
    ],
    errorBody(answer.error, answer.description, requestId),
  );
}
