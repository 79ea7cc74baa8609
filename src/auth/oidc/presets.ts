import type { Config } from '../../config/types.js';
import type { Logger } from '../../observability/logger.js';
import type { TraceSpan } from '../../observability/spans.js';
import { EntraGroups, hasGroupsOverage } from './entra-groups.js';
import { GitHubProvider } from './github.js';
import { OidcProvider, type OidcQuirks } from './oidc.js';
import type { Provider } from './provider.js';

/**
 * Each preset's quirks (documented per provider in docs/providers.md):
 * - auth0: the API `audience` parameter (OIDC_AUDIENCE) so the access token is a JWT for it;
 * - google: `hd` when exactly one domain is allowed, and then an address in that domain must come
 *   with the ID token's `hd` claim naming it (an account the Workspace manages);
 * - microsoft: `offline_access` for a refresh token; groups (object ids) and app roles; for a user
 *   in too many groups for the token (groups overage), the groups from Microsoft Graph;
 * - keycloak: groups from the group mapper's `groups` claim and realm roles;
 * - github: plain OAuth 2 through GitHub's API (see github.ts).
 */
export function quirksFor(config: Config['auth'], logger: Logger): OidcQuirks {
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
      // `hd` names one Workspace domain: sent when ALLOWED_DOMAINS is exactly one plain domain
      // (not `*.example.com`, which no `hd` value can express).
      const only = policy.domains.length === 1 ? policy.domains[0]?.trim().toLowerCase() : undefined;
      const hd = only && !only.startsWith('*.') ? only : undefined;
      return {
        authParams: hd ? { hd } : {},
        extraScopes: [],
        groupClaims: groupClaims(['groups']),
        // `hd` in the request only preselects an account; the ID token's `hd` claim is what counts.
        // An address in the Workspace domain must come from an account the Workspace manages (a
        // consumer Google account can carry any address). Accounts of other domains are left to
        // the allow-lists: ALLOWED_EMAILS may name, say, a contractor's gmail.com address.
        checkClaims: hd
          ? (claims) => {
              const claimHd = typeof claims.hd === 'string' ? claims.hd.trim().toLowerCase() : '';
              if (claimHd === hd) return undefined;
              const email = typeof claims.email === 'string' ? claims.email.trim().toLowerCase() : '';
              if (!email.endsWith(`@${hd}`)) return undefined;
              return `the Google account ${email} is not managed by the ${hd} Workspace (hd: ${claimHd || 'none'})`;
            }
          : undefined,
      };
    }
    case 'microsoft': {
      const paths = groupClaims(['groups', 'roles']);
      // Only when the groups are read from the `groups` claim (OIDC_GROUPS_CLAIM may name others).
      const graph = paths.includes('groups')
        ? new EntraGroups({ graphUrl: oidc.microsoftGraphUrl, logger })
        : undefined;
      return {
        authParams: {},
        extraScopes: ['offline_access'],
        groupClaims: paths,
        groupsOverage: graph
          ? { applies: hasGroupsOverage, groups: (token, trace) => graph.groups(token, trace) }
          : undefined,
      };
    }
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

/** `background` is the parent of calls no request makes (discovery): tracing's root, when on. */
export function createProvider(config: Config, logger: Logger, background?: TraceSpan): Provider {
  const { oidc } = config.auth;
  if (oidc.provider === 'github') {
    return new GitHubProvider({
      clientId: oidc.clientId as string,
      clientSecret: oidc.clientSecret,
      redirectUri: oidc.redirectUrl.href,
      webUrl: oidc.githubUrl,
      apiUrl: oidc.githubApiUrl,
      readOrgs: () => config.auth.policy.groups.length > 0,
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
    quirks: quirksFor(config.auth, logger),
    logger,
    background,
  });
}
