import type { Config } from '../../config/types.js';
import type { Logger } from '../../observability/logger.js';
import { GitHubProvider } from './github.js';
import { OidcProvider, type OidcQuirks } from './oidc.js';
import type { Provider } from './provider.js';

/**
 * Each preset's quirks (documented per provider in the README):
 * - auth0: the API `audience` parameter (OIDC_AUDIENCE) so the access token is a JWT for it;
 * - google: `hd` when exactly one domain is allowed, and the ID token's `hd` claim checked;
 * - microsoft: `offline_access` for a refresh token; groups (object ids) and app roles;
 * - keycloak: groups from the group mapper's `groups` claim and realm roles;
 * - github: plain OAuth 2 through GitHub's API (see github.ts).
 */
export function quirksFor(config: Config['auth']): OidcQuirks {
  const { oidc, policy } = config;
  const groupClaims = (fallback: string[]): string[] =>
    oidc.groupsClaims.length > 0 ? oidc.groupsClaims : fallback;
  switch (oidc.provider) {
    case 'auth0':
      return {
        authParams: oidc.audience ? { audience: oidc.audience } : {},
        extraScopes: [],
        groupClaims: groupClaims(['groups']),
      };
    case 'google': {
      const hd = policy.domains.length === 1 ? policy.domains[0]?.toLowerCase() : undefined;
      return {
        authParams: hd ? { hd } : {},
        extraScopes: [],
        groupClaims: groupClaims(['groups']),
        // `hd` in the request only preselects an account; the ID token's claim is what counts.
        checkClaims: hd
          ? (claims) =>
              String(claims.hd ?? '').toLowerCase() === hd
                ? undefined
                : `the Google account is not in the ${hd} Workspace domain`
          : undefined,
      };
    }
    case 'microsoft':
      return {
        authParams: {},
        extraScopes: ['offline_access'],
        groupClaims: groupClaims(['groups', 'roles']),
      };
    case 'keycloak':
      return { authParams: {}, extraScopes: [], groupClaims: groupClaims(['groups', 'realm_access.roles']) };
    default:
      return {
        authParams: oidc.audience ? { audience: oidc.audience } : {},
        extraScopes: [],
        groupClaims: groupClaims(['groups']),
      };
  }
}

export function createProvider(config: Config, logger: Logger): Provider {
  const { oidc } = config.auth;
  if (oidc.provider === 'github') {
    return new GitHubProvider({
      clientId: oidc.clientId as string,
      clientSecret: oidc.clientSecret,
      redirectUri: oidc.redirectUrl.href,
      webUrl: oidc.githubUrl,
      apiUrl: oidc.githubApiUrl,
      readOrgs: config.auth.policy.groups.length > 0,
      logger,
    });
  }
  return new OidcProvider({
    name: oidc.provider,
    discoveryUrl: oidc.discoveryUrl as URL,
    clientId: oidc.clientId as string,
    clientSecret: oidc.clientSecret,
    redirectUri: oidc.redirectUrl.href,
    scopes: oidc.scopes,
    quirks: quirksFor(config.auth),
    logger,
  });
}
