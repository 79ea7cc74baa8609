import type { RouteHandler } from '../authenticator.js';
import type { AuthorizationServer } from './authorization-server.js';
import { createAuthorizeHandler } from './authorize.js';
import { discoveryRoutes } from './discovery.js';
import { FACADE_PATHS } from './metadata.js';
import { createRegisterHandler } from './register.js';
import { createRevokeHandler } from './revoke.js';
import { createTokenHandler } from './token.js';

/** The authorization server's HTTP endpoints, and what the pipeline must know of each. */
export interface AuthorizationServerEndpoints {
  routes: ReadonlyMap<string, RouteHandler>;
  /**
   * The endpoints any web origin may call: they take no cookies (discovery, JWKS, /register,
   * /token, /revoke). /authorize is the browser's, behind the session cookie.
   */
  publicPaths: ReadonlySet<string>;
  /** The endpoints that spend the per-IP login budget themselves. */
  authLimitedPaths: ReadonlySet<string>;
}

export function authorizationServerEndpoints(server: AuthorizationServer): AuthorizationServerEndpoints {
  const routes = new Map<string, RouteHandler>([
    ...discoveryRoutes(server),
    [FACADE_PATHS.authorize, createAuthorizeHandler(server)],
    [FACADE_PATHS.token, createTokenHandler(server)],
    [FACADE_PATHS.revoke, createRevokeHandler(server)],
    [FACADE_PATHS.register, createRegisterHandler(server)],
  ]);
  return {
    routes,
    publicPaths: new Set([...routes.keys()].filter((path) => path !== FACADE_PATHS.authorize)),
    authLimitedPaths: new Set([
      FACADE_PATHS.authorize,
      FACADE_PATHS.token,
      FACADE_PATHS.revoke,
      FACADE_PATHS.register,
    ]),
  };
}
