/**
 * Every key the proxy writes, by the prefix that names its kind: one place to see what a store
 * holds and to keep two kinds from sharing a prefix. State-store keys are relative to the store
 * (Redis adds REDIS_KEY_PREFIX-style `DEFAULT_KEY_PREFIX` in front); the rate-limit budgets are
 * written by rate-limiter-flexible straight to Redis, so theirs are absolute.
 */
export const STORE_KEY_PREFIXES = {
  /** Browser sessions, their pending logins and their idle clocks (session/sessions.ts). */
  session: 'session:',
  login: 'login:',
  sessionSeen: 'seen:',
  /** OAuth clients registered by DCR (auth/facade/clients.ts) and fetched metadata documents (cimd.ts). */
  client: 'client:',
  clientMetadataDocument: 'cimd:',
  /** /authorize requests waiting on the consent page, and remembered approvals (authorize.ts). */
  pendingAuthorization: 'authz-request:',
  consent: 'consent:',
  /** Authorization codes, their single-use markers and replays (authorization-codes.ts). */
  authorizationCode: 'authz-code:',
  authorizationCodeUsed: 'authz-code-used:',
  authorizationCodeReplayed: 'authz-code-replayed:',
  /** Refresh-token families, their tokens and rotation markers (tokens/refresh-tokens.ts). */
  refreshFamily: 'refresh-family:',
  refreshFamilyRevoked: 'refresh-family-revoked:',
  refreshToken: 'refresh-token:',
  refreshTokenUsed: 'refresh-used:',
  /** Access-token revocations: by token id, by subject, by client, by grant (tokens/access-tokens.ts). */
  revokedAccessToken: 'revoked-jti:',
  revokedSubject: 'revoked-sub:',
  revokedClient: 'revoked-client:',
  revokedGrant: 'revoked-grant:',
  /** Signing keys' public halves and rotation records (tokens/signing-keys.ts). */
  signingKeyPublic: 'signing-key:public:',
  signingKeyRotation: 'signing-key:rotated-from:',
} as const;

/** What the Redis store puts in front of every key it is given. */
export const DEFAULT_KEY_PREFIX = 'mcp-oidc-proxy:';

/** Redis key prefixes of the rate-limit budgets: instances sharing a Redis share each budget. */
export const RATE_LIMIT_PREFIXES = {
  /** AUTH_RATE_LIMIT_PER_MINUTE: the login and OAuth endpoints, per client IP. */
  auth: `${DEFAULT_KEY_PREFIX}rl:auth`,
  /** RATE_LIMIT_PER_MINUTE: every other route, per user or client IP. */
  requests: `${DEFAULT_KEY_PREFIX}rl:req`,
  /** Failed admin-token attempts per client IP. */
  adminAuth: `${DEFAULT_KEY_PREFIX}rl:admin-auth`,
} as const;
