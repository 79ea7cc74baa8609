import type { Config } from '../../config/types.js';
import type { RateLimiter } from '../../limits/rate-limit.js';
import type { Logger } from '../../observability/logger.js';
import type { SessionManager } from '../../session/sessions.js';
import type { SealingKeys } from '../../store/sealing-keys.js';
import type { StateStore } from '../../store/state-store.js';
import type { AuditLog } from '../audit.js';
import type { AccessTokens } from '../tokens/access-tokens.js';
import type { RefreshTokens } from '../tokens/refresh-tokens.js';
import type { SigningKeys } from '../tokens/signing-keys.js';
import type { ClientRegistry } from './clients.js';

/** The scope MCP clients are granted (the only one the proxy defines). */
export const MCP_SCOPE = 'mcp';

/** Access tokens live briefly; clients refresh them (the MCP authorization spec asks for short-lived tokens). */
export const ACCESS_TOKEN_TTL_SECONDS = 900;

/**
 * Everything the OAuth 2.1 authorization server for MCP clients (the facade) uses. The
 * user logs in through the browser login (SessionManager + BrowserLogin's /login); the
 * facade turns that session into codes and tokens bound to this proxy's resource URL.
 */
export interface FacadeDeps {
  config: Config;
  logger: Logger;
  audit: AuditLog;
  store: StateStore;
  keys: SealingKeys;
  sessions: SessionManager;
  clients: ClientRegistry;
  signingKeys: SigningKeys;
  accessTokens: AccessTokens;
  refreshTokens: RefreshTokens;
  /** Limits /authorize, /token and /register per client IP; undefined = off. */
  rateLimiter: RateLimiter | undefined;
}
