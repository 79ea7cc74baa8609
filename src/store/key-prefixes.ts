/**
 * Every key the proxy writes, by the prefix that names its kind: one place to see what a store
 * holds and to keep two kinds from sharing a prefix. Every one is relative: in Redis,
 * REDIS_KEY_PREFIX (`DEFAULT_KEY_PREFIX` unless set) goes in front of each, the state store's
 * keys and the rate-limit budgets rate-limiter-flexible writes alike, so deployments sharing one
 * Redis never see each other's keys.
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
  signingKeyNext: 'signing-key:next-after:',
  /** Which SESSION_SECRET the state is sealed with (store/sealing-check.ts): one key. */
  sealingCheck: 'sealing-check',
} as const;

/** REDIS_KEY_PREFIX's default: what the Redis store puts in front of every key it is given. */
export const DEFAULT_KEY_PREFIX = 'mcp-oidc-proxy:';

/**
 * The rate-limit budgets, after REDIS_KEY_PREFIX: instances sharing a Redis and a prefix share
 * each budget (rate-limiter-flexible adds `:` and the budget's key, e.g. `rl:auth:ip:10.0.0.1`).
 */
export const RATE_LIMIT_PREFIXES = {
  /** AUTH_RATE_LIMIT_PER_MINUTE: the login and OAuth endpoints, per client IP. */
  auth: 'rl:auth',
  /** RATE_LIMIT_PER_MINUTE: every other route, per user or client IP. */
  requests: 'rl:req',
  /** Failed admin-token attempts per client IP. */
  adminAuth: 'rl:admin-auth',
} as const;
