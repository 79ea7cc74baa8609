import type { ServerResponse } from 'node:http';
import type { RouteHandler } from '../authenticator.js';
import type { FacadeDeps } from './deps.js';
import { MCP_SCOPE } from './deps.js';
import {
  authorizationServerMetadata,
  FACADE_PATHS,
  openIdConfiguration,
  protectedResourceMetadata,
} from './metadata.js';

function sendJson(res: ServerResponse, status: number, body: unknown, cacheSeconds: number): void {
  const text = JSON.stringify(body);
  res.setHeader('content-type', 'application/json');
  res.setHeader('cache-control', cacheSeconds > 0 ? `public, max-age=${cacheSeconds}` : 'no-store');
  res.setHeader('content-length', Buffer.byteLength(text));
  res.writeHead(status);
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

function getOnly(handler: (res: ServerResponse) => Promise<void> | void): RouteHandler {
  return async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return sendJson(res, 405, { error: 'invalid_request', error_description: 'Use GET.' }, 0);
    }
    await handler(res);
  };
}

/**
 * The discovery documents MCP clients read first: Protected Resource Metadata (RFC 9728)
 * at the root and the path-inserted form, Authorization Server Metadata (RFC 8414) at
 * both well-known names, and the JWKS the access tokens verify against.
 */
export function discoveryRoutes(deps: FacadeDeps): Map<string, RouteHandler> {
  const { publicUrl } = deps.config.server;
  const { mcpPath } = deps.config;
  const scopesSupported = [MCP_SCOPE];
  const resource = protectedResourceMetadata({ publicUrl, mcpPath, scopesSupported });
  const asOptions = { publicUrl, scopesSupported, registrationEnabled: deps.clients.dcrEnabled };
  const routes = new Map<string, RouteHandler>();
  const resourceHandler = getOnly((res) => sendJson(res, 200, resource, 3600));
  routes.set(FACADE_PATHS.protectedResourceMetadata, resourceHandler);
  if (mcpPath !== '/') routes.set(`${FACADE_PATHS.protectedResourceMetadata}${mcpPath}`, resourceHandler);
  routes.set(
    FACADE_PATHS.authorizationServerMetadata,
    getOnly((res) => sendJson(res, 200, authorizationServerMetadata(asOptions), 3600)),
  );
  routes.set(
    FACADE_PATHS.openIdConfiguration,
    getOnly((res) => sendJson(res, 200, openIdConfiguration(asOptions), 3600)),
  );
  // Short cache: a rotated key must reach verifiers well before its first token expires.
  routes.set(
    FACADE_PATHS.jwks,
    getOnly(async (res) => sendJson(res, 200, await deps.signingKeys.jwks(), 300)),
  );
  return routes;
}
