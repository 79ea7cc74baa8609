import type { ServerResponse } from 'node:http';
import { sendError } from '../../http/errors.js';
import { sendJson } from '../../http/respond.js';
import type { RouteHandler } from '../authenticator.js';
import type { AuthorizationServer } from './authorization-server.js';
import {
  authorizationServerMetadata,
  FACADE_PATHS,
  openIdConfiguration,
  protectedResourceMetadata,
} from './metadata.js';

/** A public document, cached for `cacheSeconds`. */
function sendDocument(res: ServerResponse, body: unknown, cacheSeconds: number): void {
  sendJson(res, 200, body, [['cache-control', `public, max-age=${cacheSeconds}`]]);
}

function getOnly(handler: (res: ServerResponse) => Promise<void> | void): RouteHandler {
  return async (req, res, ctx) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const allow: [string, string] = ['allow', 'GET, HEAD'];
      const answer = { status: 405, error: 'invalid_request', description: 'Use GET.', headers: [allow] };
      return sendError(res, answer, ctx.requestId);
    }
    await handler(res);
  };
}

/**
 * Protected Resource Metadata (RFC 9728) of every MCP server, at the path-inserted well-known
 * URL of each, and at the root for the first (the default resource). Built again when a reload
 * changes the servers (SessionAuthenticator.serversChanged).
 */
export function resourceMetadataRoutes(server: AuthorizationServer): Map<string, RouteHandler> {
  const { publicUrl } = server.config.server;
  const routes = new Map<string, RouteHandler>();
  for (const resource of server.resources.all()) {
    // Built at each request: a reload may change the step-up scopes mcp_access names.
    const document = () =>
      protectedResourceMetadata({
        publicUrl,
        mcpPath: resource.path,
        scopesSupported: server.scopesSupported(resource),
      });
    const handler = getOnly((res) => sendDocument(res, document(), 3600));
    if (routes.size === 0) routes.set(FACADE_PATHS.protectedResourceMetadata, handler);
    if (resource.path !== '/')
      routes.set(`${FACADE_PATHS.protectedResourceMetadata}${resource.path}`, handler);
  }
  return routes;
}

/**
 * The discovery documents MCP clients read first: Protected Resource Metadata (RFC 9728) of
 * each server, Authorization Server Metadata (RFC 8414) at both well-known names, and the JWKS
 * the access tokens verify against.
 */
export function discoveryRoutes(server: AuthorizationServer): Map<string, RouteHandler> {
  const { publicUrl } = server.config.server;
  const asOptions = () => ({
    publicUrl,
    scopesSupported: server.scopesSupported(),
    registrationEnabled: server.clients.dcrEnabled,
  });
  const routes = resourceMetadataRoutes(server);
  routes.set(
    FACADE_PATHS.authorizationServerMetadata,
    getOnly((res) => sendDocument(res, authorizationServerMetadata(asOptions()), 3600)),
  );
  routes.set(
    FACADE_PATHS.openIdConfiguration,
    getOnly((res) => sendDocument(res, openIdConfiguration(asOptions()), 3600)),
  );
  // Short cache: a rotated key must reach verifiers well before its first token expires.
  routes.set(
    FACADE_PATHS.jwks,
    getOnly(async (res) => sendDocument(res, await server.signingKeys.jwks(), 300)),
  );
  return routes;
}
