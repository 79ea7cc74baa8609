import type { Logger } from '../observability/logger.js';

export type AuditEvent =
  | 'login_success'
  | 'login_failure'
  | 'logout'
  | 'access_denied'
  | 'session_expired'
  | 'session_refreshed'
  // The authorization server for MCP clients:
  | 'client_registered'
  | 'consent_granted'
  | 'consent_denied'
  | 'authorization_code_issued'
  | 'authorization_code_replayed'
  | 'token_issued'
  | 'token_refreshed'
  | 'refresh_reuse_detected'
  | 'token_revoked';

/**
 * Structured audit events, one JSON log line each with `audit: <event>`: who, from where,
 * and why. Callers pass identities and reasons only — never a token, code or cookie.
 */
export type AuditFields = Record<string, string | number | boolean | undefined>;

export class AuditLog {
  /** `onEvent` sees every event too (the metrics counter). */
  constructor(
    private readonly logger: Logger,
    private readonly onEvent?: (event: AuditEvent, fields: AuditFields) => void,
  ) {}

  record(event: AuditEvent, fields: AuditFields): void {
    this.logger.info({ audit: event, ...fields }, `audit ${event}`);
    this.onEvent?.(event, fields);
  }
}
