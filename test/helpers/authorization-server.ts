import { AuditLog } from '../../src/auth/audit.js';
import { AuthorizationServer } from '../../src/auth/facade/authorization-server.js';
import { ClientRegistry, type PreRegisteredClient } from '../../src/auth/facade/clients.js';
import { loadConfig } from '../../src/config/load.js';
import type { RateLimiter } from '../../src/limits/rate-limit.js';
import type { Logger } from '../../src/observability/logger.js';
import { SessionManager } from '../../src/session/sessions.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';
import type { StateStore } from '../../src/store/state-store.js';

export interface TestAuthorizationServerOptions {
  store: StateStore;
  /** PUBLIC_URL: the issuer, and with MCP_PATH `/mcp` the resource. */
  publicUrl: string;
  logger: Logger;
  /** SESSION_SECRET: instances sharing a store share it. */
  secret: string;
  preRegistered?: PreRegisteredClient[];
  rateLimiter?: RateLimiter;
}

/**
 * The authorization server as oidc mode builds it, on a store a test chooses: registration open,
 * the allow-lists admitting example.com, sessions of an hour over plain HTTP.
 */
export function testAuthorizationServer(options: TestAuthorizationServerOptions): AuthorizationServer {
  const { store, logger } = options;
  const config = loadConfig({
    env: {
      AUTH_MODE: 'bypass',
      PUBLIC_URL: options.publicUrl,
      MCP_PATH: '/mcp',
      ALLOWED_DOMAINS: 'example.com',
    },
  });
  const keys = new SealingKeys(options.secret);
  const sessions = new SessionManager(store, keys, {
    idleTimeoutMs: 60 * 60 * 1000,
    maxAgeMs: 24 * 60 * 60 * 1000,
    cookie: { secure: false },
  });
  const clients = new ClientRegistry({ store, dcrEnabled: true, preRegistered: options.preRegistered ?? [] });
  return new AuthorizationServer({
    config,
    logger,
    audit: new AuditLog(logger),
    store,
    keys,
    sessions,
    clients,
    rateLimiter: options.rateLimiter,
  });
}
