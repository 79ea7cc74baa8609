import { createHash, timingSafeEqual } from 'node:crypto';
import type { AuthContext, RouteHandler } from '../authenticator.js';
import type { PolicySubject } from '../policy/policy.js';
import type { GrantTimes } from '../tokens/access-tokens.js';
import type { RefreshFamily, RotatedRefreshToken } from '../tokens/refresh-tokens.js';
import type { IssuedFromCode } from './authorization-codes.js';
import type { AuthorizationServer } from './authorization-server.js';
import { clientEndpoint } from './client-auth.js';
import type { OAuthClient } from './clients.js';
import {
  InvalidGrantError,
  InvalidRequestError,
  InvalidScopeError,
  InvalidTargetError,
  UnauthorizedClientError,
  UnsupportedGrantTypeError,
} from './errors.js';
import { param, requiredParam, scopeParam, writeJson } from './http.js';
import { ACCESS_TOKEN_TTL_SECONDS } from './metadata.js';

/**
 * POST /token (OAuth 2.1 §3.2): `authorization_code` with PKCE S256, and `refresh_token` with
 * rotation. The allow-lists are applied again on every exchange, so removing a user from them
 * ends their MCP access at the next refresh at the latest. Responses are never cached.
 */

/** RFC 7636 §4.1: 43-128 characters of the unreserved set. */
const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;

/** RFC 6749 §5.1 successful response. */
export interface TokenResponse {
  access_token: string;
  token_type: 'Bearer';
  expires_in: number;
  refresh_token?: string;
  scope: string;
}

/** Whether base64url(SHA-256(verifier)) is the challenge. */
export function pkceS256Matches(verifier: string, challenge: string): boolean {
  const computed = Buffer.from(createHash('sha256').update(verifier, 'ascii').digest('base64url'));
  const expected = Buffer.from(challenge);
  return computed.length === expected.length && timingSafeEqual(computed, expected);
}

export function createTokenHandler(server: AuthorizationServer): RouteHandler {
  const { codes } = server;

  /** The allow-lists again (ALLOWED_* and the server's own); a refusal is audited. */
  function stillAllowed(
    subject: PolicySubject & { sub: string },
    resource: string,
    clientId: string,
    ctx: AuthContext,
  ): boolean {
    return server.admits(subject, resource, { client_id: clientId, ip: ctx.clientIp });
  }

  async function revokeIssued(issued: IssuedFromCode): Promise<void> {
    if (issued.jti !== undefined && issued.accessTokenExpiresAt !== undefined) {
      await server.accessTokens.revokeJti(issued.jti, issued.accessTokenExpiresAt);
    }
    if (issued.refreshFamilyId !== undefined) await server.grants.revokeFamily(issued.refreshFamilyId);
  }

  /**
   * After minting: whether an admin revocation of the user or the client covers the grant, in
   * which case what was just issued is revoked and never leaves the server. Checked after (not
   * before) minting, so a revocation racing this request cannot miss its tokens: either its
   * cut-off is seen here, or it is written later, and then it covers the access token's `iat`
   * and the revocation's own listing finds the refresh-token family, which exists by now.
   */
  async function revokedMeanwhile(grant: GrantTimes, issued: IssuedFromCode): Promise<boolean> {
    if (!(await server.accessTokens.grantRevoked(grant))) return false;
    await revokeIssued(issued);
    return true;
  }

  async function authorizationCode(
    client: OAuthClient,
    params: URLSearchParams,
    ctx: AuthContext,
  ): Promise<TokenResponse> {
    // Everything that can be checked without the code is, so a malformed request does not spend it.
    const code = requiredParam(params, 'code');
    const redirectUri = requiredParam(params, 'redirect_uri');
    const verifier = requiredParam(params, 'code_verifier');
    if (!CODE_VERIFIER.test(verifier)) {
      throw new InvalidRequestError('code_verifier must be 43-128 characters of A-Z a-z 0-9 - . _ ~');
    }
    const resource = param(params, 'resource');

    const redemption = await codes.redeem(code);
    if (redemption.kind === 'unknown')
      throw new InvalidGrantError('the authorization code is invalid or expired');
    if (redemption.kind === 'replayed') {
      await revokeIssued(redemption.issued);
      server.audit.record('authorization_code_replayed', {
        client_id: client.client_id,
        ip: ctx.clientIp,
      });
      throw new InvalidGrantError(
        'the authorization code was already used; the tokens issued for it have been revoked',
      );
    }
    const { grant, hash } = redemption;
    if (grant.clientId !== client.client_id) {
      throw new InvalidGrantError('the authorization code was issued to another client');
    }
    if (grant.redirectUri !== redirectUri) {
      throw new InvalidGrantError('redirect_uri differs from the one of the authorization request');
    }
    if (!pkceS256Matches(verifier, grant.codeChallenge)) {
      throw new InvalidGrantError('code_verifier does not match the code_challenge');
    }
    if (resource !== undefined && resource !== grant.resource) {
      throw new InvalidTargetError(`the authorization was for the resource ${grant.resource}`);
    }
    if (!stillAllowed(grant, grant.resource, client.client_id, ctx)) {
      throw new InvalidGrantError('the user is not allowed to use this server');
    }

    // Codes of an older version carry no times: any revocation covers them.
    const times = { signedInAt: grant.signedInAt ?? 0, approvedAt: grant.approvedAt ?? 0 };
    // The grant first, so the access token carries its id and ends with it.
    const refresh = client.grant_types.includes('refresh_token')
      ? await server.grants.issue({
          clientId: client.client_id,
          sub: grant.sub,
          scope: grant.scope,
          resource: grant.resource,
          ...(grant.email !== undefined ? { email: grant.email } : {}),
          ...(grant.emailVerified !== undefined ? { emailVerified: grant.emailVerified } : {}),
          groups: grant.groups,
          ...times,
        })
      : undefined;
    const access = await server.accessTokens.mintAccessToken({
      sub: grant.sub,
      clientId: client.client_id,
      scope: grant.scope,
      audience: grant.resource,
      ...(grant.email !== undefined ? { email: grant.email } : {}),
      ...(grant.emailVerified !== undefined ? { emailVerified: grant.emailVerified } : {}),
      groups: grant.groups,
      ...(refresh !== undefined ? { grantId: refresh.family.id } : {}),
      ttlSeconds: ACCESS_TOKEN_TTL_SECONDS,
    });
    const issued: IssuedFromCode = {
      jti: access.jti,
      accessTokenExpiresAt: access.expiresAt,
      ...(refresh ? { refreshFamilyId: refresh.family.id } : {}),
    };
    if (await codes.recordIssued(hash, issued)) {
      // The code was replayed while these were minted: they never leave the server.
      await revokeIssued(issued);
      throw new InvalidGrantError('the authorization code was used twice; its tokens have been revoked');
    }
    if (await revokedMeanwhile({ sub: grant.sub, clientId: client.client_id, ...times }, issued)) {
      throw new InvalidGrantError('the user or the client has been revoked');
    }
    server.audit.record('token_issued', {
      sub: grant.sub,
      client_id: client.client_id,
      grant_type: 'authorization_code',
      scope: grant.scope,
      refresh_token: refresh !== undefined,
      ip: ctx.clientIp,
    });
    return {
      access_token: access.token,
      token_type: 'Bearer',
      expires_in: ACCESS_TOKEN_TTL_SECONDS,
      ...(refresh ? { refresh_token: refresh.token } : {}),
      scope: grant.scope,
    };
  }

  async function refreshToken(
    client: OAuthClient,
    params: URLSearchParams,
    ctx: AuthContext,
  ): Promise<TokenResponse> {
    const token = requiredParam(params, 'refresh_token');
    const requestedScope = scopeParam(params, server.scopesSupported());
    const resource = param(params, 'resource');

    // Checked before the token is spent: a refused request leaves the client its grant.
    const covered = (family: RefreshFamily): void => {
      if (resource !== undefined && resource !== family.resource) {
        throw new InvalidTargetError(`the authorization was for the resource ${family.resource}`);
      }
      const granted = family.scope.split(' ');
      if (requestedScope !== undefined && !requestedScope.every((s) => granted.includes(s))) {
        throw new InvalidScopeError('a refresh may narrow the granted scope, never widen it');
      }
    };
    let rotated: RotatedRefreshToken;
    try {
      rotated = await server.grants.rotate(token, { clientId: client.client_id, check: covered });
    } catch (error) {
      if (!(error instanceof InvalidGrantError)) throw error;
      if (error.reason === 'reuse_detected') {
        server.audit.record('refresh_reuse_detected', { client_id: client.client_id, ip: ctx.clientIp });
      }
      throw new InvalidGrantError('the refresh token is invalid, expired or revoked', { cause: error });
    }
    const { family } = rotated;
    const subject = {
      sub: family.sub,
      email: family.email,
      emailVerified: family.emailVerified,
      groups: family.groups ?? [],
    };
    if (!stillAllowed(subject, family.resource, client.client_id, ctx)) {
      await server.grants.revokeFamily(family.id);
      throw new InvalidGrantError('the user is no longer allowed to use this server; the grant is revoked');
    }
    const scope = requestedScope?.join(' ') ?? family.scope;
    const access = await server.accessTokens.mintAccessToken({
      sub: family.sub,
      clientId: family.clientId,
      scope,
      audience: family.resource,
      ...(family.email !== undefined ? { email: family.email } : {}),
      ...(family.emailVerified !== undefined ? { emailVerified: family.emailVerified } : {}),
      ...(family.groups !== undefined ? { groups: family.groups } : {}),
      grantId: family.id,
      ttlSeconds: ACCESS_TOKEN_TTL_SECONDS,
    });
    const grantTimes = {
      sub: family.sub,
      clientId: family.clientId,
      // Families of an older version carry no times: their start stands in.
      signedInAt: family.signedInAt ?? family.createdAt,
      approvedAt: family.approvedAt ?? family.createdAt,
    };
    const issued = { jti: access.jti, accessTokenExpiresAt: access.expiresAt, refreshFamilyId: family.id };
    if (await revokedMeanwhile(grantTimes, issued)) {
      throw new InvalidGrantError('the user or the client has been revoked; the grant is revoked');
    }
    server.audit.record('token_refreshed', {
      sub: family.sub,
      client_id: client.client_id,
      grant_type: 'refresh_token',
      scope,
      // The token was presented again within REFRESH_REUSE_GRACE (a parallel refresh by the
      // same client): the answer carries the successor an earlier request already received.
      ...(rotated.repeated ? { repeated_within_grace: true } : {}),
      ip: ctx.clientIp,
    });
    return {
      access_token: access.token,
      token_type: 'Bearer',
      expires_in: ACCESS_TOKEN_TTL_SECONDS,
      refresh_token: rotated.token,
      scope,
    };
  }

  return clientEndpoint(server, async (client, params, res, ctx) => {
    const grantType = requiredParam(params, 'grant_type');
    if (grantType !== 'authorization_code' && grantType !== 'refresh_token') {
      throw new UnsupportedGrantTypeError(
        `grant_type ${JSON.stringify(grantType.slice(0, 50))} is not supported; use authorization_code or refresh_token`,
      );
    }
    if (!client.grant_types.includes(grantType)) {
      throw new UnauthorizedClientError(`this client did not register the ${grantType} grant type`);
    }
    const body =
      grantType === 'authorization_code'
        ? await authorizationCode(client, params, ctx)
        : await refreshToken(client, params, ctx);
    try {
      await server.clients.recordUse(client.client_id);
    } catch (error) {
      // The tokens are issued; a registration that is not kept alive now is refreshed next time.
      server.logger.warn({ req_id: ctx.requestId, err: (error as Error).message }, 'client use not recorded');
    }
    writeJson(res, 200, body);
  });
}
