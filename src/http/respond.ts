import type { ServerResponse } from 'node:http';

export type HeaderList = ReadonlyArray<readonly [string, string]>;

/**
 * Writes a whole response the proxy answers itself, on a response whose head is not sent yet:
 * not cached unless `headers` says otherwise (they replace any namesake, as do the content
 * headers), and no body for HEAD. Headers already set on `res` (the pipeline's security headers
 * and request id) stay.
 */
export function sendBody(
  res: ServerResponse,
  status: number,
  type: string,
  text: string,
  headers: HeaderList = [],
): void {
  res.setHeader('content-type', type);
  res.setHeader('cache-control', 'no-store');
  for (const [name, value] of headers) res.setHeader(name, value);
  res.setHeader('content-length', Buffer.byteLength(text));
  res.writeHead(status);
  res.end(res.req?.method === 'HEAD' ? undefined : text);
}

/** A JSON answer of the proxy's own (a document, a listing, a JSON-RPC reply). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: HeaderList = []): void {
  sendBody(res, status, 'application/json', JSON.stringify(body), headers);
}
