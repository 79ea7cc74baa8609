import type { Config } from '../../config/types.js';
import type { RateLimiter } from '../../limits/rate-limit.js';
import type { Logger } from '../../observability/logger.js';
import type { SessionManager } from '../../session/sessions.js';
import type { SealingCheck } from '../../store/sealing-check.js';
import type { SealingKeys } from '../../store/sealing-keys.js';
import type { StateStore } from '../../store/state-store.js';
import type { AuditFields, AuditLog } from '../audit.js';
import type { UpstreamIdentity } from '../oidc/provider.js';
import { evaluatePolicy, type PolicySubject } from '../policy/policy.js';
import { AccessTokens } from '../tokens/access-tokens.js';
import { RefreshTokens } from '../tokens/refresh-tokens.js';
import { rotationPeriodMs, SigningKeys } from '../tokens/signing-keys.js';
import { AuthorizationCodes } from './authorization-codes.js';
import { isMetadataDocumentClientId } from './cimd.js';
import type { ClientRegistry } from './clients.js';
import { Consents } from './consents.js';
import { issuerUrl, MCP_SCOPE } from './metadata.js';
import { type ProtectedResource, ProtectedResources, serverPolicyRefusal } from './resources.js';

export interface AuthorizationServerOptions {
  /**
   * The running configuration: PUBLIC_URL makes the issuer, the servers the resources; the
   * allow-lists are read at every authorization and exchange, so a reload applies at once.
   */
  config: Config;
  logger: Logger;
  audit: AuditLog;
  /** Where codes, consents, grants, revocations and signing keys are kept. */
  store: StateStore;
  keys: SealingKeys;
  /** The browser sessions users approve clients from (and which "revoke user" ends). */
  sessions: SessionManager;
  clients: ClientRegistry;
  /** Limits /authorize, /token, /revoke and /register per client IP; undefined = off. */
  rateLimiter: RateLimiter | undefined;
  /**
   * Which SESSION_SECRET the store is sealed with: when it is this instance's, a signing key
   * sealed with another secret is replaced instead of failing every token request.
   */
  sealingCheck?: SealingCheck;
}

/** What revoking a user did (admin "revoke user"). */
export interface UserRevocation {
  sessionsRevoked: number;
  grantsRevoked: number;
  consentsRevoked: number;
  codesRevoked: number;
  /** Every access token issued to the user up to this moment is refused from now on. */
  accessTokensRevokedBefore: Date;
}

/** What revoking a client did (admin "revoke client"). */
export interface ClientRevocation {
  /**
   * What became of the registration. A client from MCP_CLIENTS (`pre_registered`) is left alone,
   * and nothing else is revoked: the configuration, not the store, says it exists.
   */
  registration: 'deleted' | 'not_found' | 'pre_registered';
  /** The registered name, when the client was registered here (a metadata document is not fetched for it). */
  clientName: string | undefined;
  grantsRevoked: number;
  consentsRevoked: number;
  codesRevoked: number;
}

/**
 * The OAuth 2.1 authorization server for MCP clients (the "facade" in front of the upstream
 * login): the clients it knows, the codes, consents and grants (refresh-token families) it holds,
 * the access tokens it mints and checks, and the use cases that cut across them (revoking a user
 * or a client, rotating the signing key). Its endpoints (endpoints.ts) and the admin API work
 * through this one object; none of them reads the store itself.
 */
export class AuthorizationServer {
  readonly config: Config;
  readonly logger: Logger;
  readonly audit: AuditLog;
  readonly sessions: SessionManager;
  readonly clients: ClientRegistry;
  readonly codes: AuthorizationCodes;
  readonly consents: Consents;
  /** The grants MCP clients hold: refresh-token families (issue, rotate, list, revoke). */
  readonly grants: RefreshTokens;
  readonly accessTokens: AccessTokens;
  readonly signingKeys: SigningKeys;
  readonly rateLimiter: RateLimiter | undefined;
  /** PUBLIC_URL's origin (RFC 8414 `issuer`, RFC 9207 `iss`). */
  readonly issuer: string;
  /** The MCP servers tokens are minted for, one audience each (`PUBLIC_URL + path`). */
  readonly resources: ProtectedResources;

  constructor(options: AuthorizationServerOptions) {
    const { config, store, keys } = options;
    this.config = config;
    this.logger = options.logger;
    this.audit = options.audit;
    this.sessions = options.sessions;
    this.clients = options.clients;
    this.rateLimiter = options.rateLimiter;
    this.codes = new AuthorizationCodes(store, keys);
    this.consents = new Consents(store, keys);
    const { sealingCheck, logger } = options;
    this.signingKeys = new SigningKeys(store, keys, {
      rotationPeriodMs: rotationPeriodMs(config.auth.signingKeyRotationDays),
      mayReplaceUnreadable: sealingCheck ? () => sealingCheck.isMine() : undefined,
      onRotated: ({ previousKid, kid, reason }) =>
        logger.info({ kid, previous_kid: previousKid, reason }, 'token signing key rotated'),
    });
    this.accessTokens = new AccessTokens(this.signingKeys, store, {
      publicUrl: config.server.publicUrl.origin,
    });
    const accessTokens = this.accessTokens;
    this.grants = new RefreshTokens(store, keys, {
      reuseGraceSeconds: config.auth.mcpClients.refreshReuseGraceMs / 1000,
      // However a grant ends, the access tokens minted from it end with it (their `gid`).
      onFamilyRevoked: (familyId) => accessTokens.revokeGrant(familyId),
    });
    this.issuer = issuerUrl(config.server.publicUrl);
    this.resources = new ProtectedResources(config);
  }

  /**
   * Signs the user out everywhere: every browser session ends, every grant and unused code is
   * revoked, approvals are forgotten (the consent page is shown again), and every access token
   * issued to the user so far is refused, on every instance sharing the store. Not a ban: the
   * allow-lists decide whether they may sign in again.
   */
  async revokeUser(subject: string): Promise<UserRevocation> {
    // Access tokens first: every one issued to the user until now is refused from here on; then
    // nothing is left to mint new ones from (the token endpoint checks the cut-off after minting).
    await this.accessTokens.revokeSubject(subject);
    const [sessionsRevoked, grantsRevoked, consentsRevoked, codesRevoked] = await Promise.all([
      this.sessions.destroySubject(subject),
      this.grants.revokeSubject(subject),
      this.consents.forget({ sub: subject }),
      this.codes.revokeWhere((grant) => grant.sub === subject),
    ]);
    return {
      sessionsRevoked,
      grantsRevoked,
      consentsRevoked,
      codesRevoked,
      accessTokensRevokedBefore: new Date(),
    };
  }

  /**
   * Deletes a client's registration and revokes everything it holds: its grants, the approvals
   * given to it, its unused codes, and every access token issued to it so far.
   */
  async revokeClient(clientId: string): Promise<ClientRevocation> {
    // For its name in the audit log; a metadata document is not fetched for that.
    const client = isMetadataDocumentClientId(clientId) ? undefined : await this.clients.get(clientId);
    const registration = await this.clients.delete(clientId);
    const clientName = client?.client_name;
    if (registration === 'pre_registered') {
      return { registration, clientName, grantsRevoked: 0, consentsRevoked: 0, codesRevoked: 0 };
    }
    // Tokens first: from this moment every access token the client holds is refused.
    await this.accessTokens.revokeClient(clientId);
    const [grantsRevoked, consentsRevoked, codesRevoked] = await Promise.all([
      this.grants.revokeClient(clientId),
      this.consents.forget({ clientId }),
      this.codes.revokeWhere((grant) => grant.clientId === clientId),
    ]);
    return { registration, clientName, grantsRevoked, consentsRevoked, codesRevoked };
  }

  /**
   * Every scope a token for `resource` may carry: the base scope, and the step-up scopes its
   * mcp_access rules name (read at each call: a reload may change them); without a resource,
   * those of every server (the authorization server's `scopes_supported`).
   */
  scopesSupported(resource?: ProtectedResource): string[] {
    const resources = resource ? [resource] : this.resources.all();
    return [...new Set([MCP_SCOPE, ...resources.flatMap((r) => r.access?.scopes ?? [])])];
  }

  /**
   * The scopes granted for a request of `requested` by this user on `resource`: the base scope
   * always, and a step-up scope only when a rule of that server naming it allows the user;
   * others are dropped (not an error: a client asking for every scope the metadata lists still
   * gets what the user may have).
   */
  grantedScopes(requested: readonly string[], user: UpstreamIdentity, resource: ProtectedResource): string[] {
    const grantable = new Set(
      resource.access?.grantableScopes({
        email: user.email,
        emailVerified: user.emailVerified,
        groups: user.groups ?? [],
      }) ?? [],
    );
    return [MCP_SCOPE, ...requested.filter((scope) => scope !== MCP_SCOPE && grantable.has(scope))];
  }

  /**
   * Whether the user may have tokens for `resourceUrl`: ALLOWED_*, then that server's own lists
   * (a server a reload removed admits nobody). A refusal is audited (`access_denied`, with the
   * reason and the caller's `fields`).
   */
  admits(subject: PolicySubject & { sub: string }, resourceUrl: string, fields: AuditFields): boolean {
    const resource = this.resources.byUrl(resourceUrl);
    const verdict = evaluatePolicy(subject, this.config.auth.policy);
    const reason = !verdict.allowed
      ? verdict.reason
      : resource
        ? serverPolicyRefusal(resource, subject)
        : `The MCP server ${resourceUrl} is no longer configured.`;
    if (reason === undefined) return true;
    this.audit.record('access_denied', {
      sub: subject.sub,
      email: subject.email,
      ...fields,
      ...(resource && this.resources.all().length > 1 ? { server: resource.name } : {}),
      reason,
    });
    return false;
  }

  /**
   * "Rotate now": a new signing key signs from this moment (SigningKeys.rotate says why not after
   * the schedule's publication lead); the previous one stays published until every token it
   * signed has expired. Returns the new key's kid.
   */
  rotateKeys(): Promise<string> {
    return this.signingKeys.rotate();
  }
}
