import type { RouteHandler } from '../authenticator.js';
import { clientEndpoint } from './client-auth.js';
import type { FacadeDeps } from './deps.js';
import { InvalidTokenError } from './errors.js';
import { param, requiredParam, writeEmpty } from './http.js';
import { resourceUrl } from './metadata.js';

/**
 * POST /revoke (RFC 7009). The client authenticates as at /token; a token it was not issued, an
 * unknown, expired or malformed token all get the same empty 200 (§2.2), so the endpoint tells
 * nobody whether a token exists. A refresh token revokes its whole grant (the family); an access
 * token is refused from now until it would have expired.
 *
 * Which kind a token is follows from its shape (a JWT has dots, a refresh token never does), so
 * `token_type_hint` is accepted and not needed; an unknown hint is ignored (§2.1).
 */
export function createRevokeHandler(deps: FacadeDeps): RouteHandler {
  const audience = resourceUrl(deps.config.server.publicUrl, deps.config.mcpPath);

  /** Revokes an access token of this client; false when it is not one. */
  async function revokeAccessToken(token: string, clientId: string): Promise<boolean> {
    try {
      const claims = await deps.accessTokens.verifyAccessToken(token, { audience });
      if (claims.clientId !== clientId) return false;
      await deps.accessTokens.revokeJti(claims.jti, claims.expiresAt);
      return true;
    } catch (error) {
      if (error instanceof InvalidTokenError) return false;
      throw error;
    }
  }

  return clientEndpoint(deps, async (client, params, res, ctx) => {
    const token = requiredParam(params, 'token');
    param(params, 'token_type_hint'); // may appear once; its value does not matter
    const kind = token.includes('.') ? 'access_token' : 'refresh_token';
    const revoked =
      kind === 'access_token'
        ? await revokeAccessToken(token, client.client_id)
        : (await deps.refreshTokens.revoke(token, { clientId: client.client_id })) === 'revoked';
    if (revoked) {
      deps.audit.record('token_revoked', {
        client_id: client.client_id,
        token_type: kind,
        ip: ctx.clientIp,
      });
    }
    writeEmpty(res);
  });
}
