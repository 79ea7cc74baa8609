import type { IncomingMessage, ServerResponse } from 'node:http';
import type { HeaderList } from '../http/errors.js';

/** Request headers browser-based MCP clients (MCP Inspector) send. */
const ALLOW_HEADERS =
  'Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID, Mcp-Method, Mcp-Name';
/** Response headers such clients must be able to read (Retry-After: when a 429 ends). */
export const EXPOSE_HEADERS = 'Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After';

/** A CORS preflight: OPTIONS with Access-Control-Request-Method (it never carries credentials). */
export function isPreflight(req: IncomingMessage): boolean {
  return req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
}

/**
 * CORS headers for a response to `origin`: `*` for the public OAuth endpoints, the origin
 * itself (already checked by the Origin guard) for everything else.
 */
export function corsHeaders(origin: string | undefined, publicEndpoint: boolean): HeaderList {
  if (publicEndpoint)
    return [
      ['access-control-allow-origin', '*'],
      ['access-control-expose-headers', EXPOSE_HEADERS],
    ];
  if (!origin) return [];
  return [
    ['access-control-allow-origin', origin],
    ['access-control-expose-headers', EXPOSE_HEADERS],
    ['vary', 'Origin'],
  ];
}

/** Answers a preflight with 204 and what may be sent. */
export function answerPreflight(res: ServerResponse, cors: HeaderList): void {
  for (const [name, value] of cors) res.setHeader(name, value);
  res.setHeader('access-control-allow-methods', 'GET, POST, DELETE, OPTIONS');
  res.setHeader('access-control-allow-headers', ALLOW_HEADERS);
  res.setHeader('access-control-max-age', '600');
  res.writeHead(204);
  res.end();
}
