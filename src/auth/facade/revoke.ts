import type { RouteHandler } from '../authenticator.js';
import type { AuthorizationServer } from './authorization-server.js';
import { clientEndpoint } from './client-auth.js';
import { InvalidTokenError } from './errors.js';
import { param, requiredParam, writeEmpty } from './http.js';

/**
 * POST /revoke (RFC 7009). The client authenticates as at /token; a token it was not issued, an
 * unknown, expired or malformed token all get the same empty 200 (§2.2), so the endpoint tells
 * nobody whether a token exists. A refresh token revokes its whole grant (the family); an access
 * token is refused from now until it would have expired.
 *
 * Which kind a token is follows from its shape (a JWT has dots, a refresh token never does), so
 * `token_type_hint` is accepted and not needed; an unknown hint is ignored (§2.1).
 */
export function createRevokeHandler(server: AuthorizationServer): RouteHandler {
  /** Revokes an access token of this client, for any of the servers; false when it is not one. */
  async function revokeAccessToken(token: string, clientId: string): Promise<boolean> {
    for (const resource of server.resources.all()) {
      try {
        const claims = await server.accessTokens.verifyAccessToken(token, { audience: resource.url });
        if (claims.clientId !== clientId) return false;
        await server.accessTokens.revokeJti(claims.jti, claims.expiresAt);
        return true;
      } catch (error) {
        if (!(error instanceof InvalidTokenError)) throw error;
        // Another server's token, perhaps: try the next audience; any other failure is final.
        if (error.reason !== 'audience') return false;
      }
    }
    return false;
  }

  return clientEndpoint(server, async (client, params, res, ctx) => {
    const token = requiredParam(params, 'token');
    param(params, 'token_type_hint'); // may appear once; its value does not matter
    const kind = token.includes('.') ? 'access_token' : 'refresh_token';
    const revoked =
      kind === 'access_token'
        ? await revokeAccessToken(token, client.client_id)
        : (await server.grants.revoke(token, { clientId: client.client_id })) === 'revoked';
    if (revoked) {
      server.audit.record('token_revoked', {
        client_id: client.client_id,
        token_type: kind,
        ip: ctx.clientIp,
      });
    }
    writeEmpty(res);
  });
}
