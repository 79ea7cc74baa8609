import type { Logger } from '../observability/logger.js';

export type AuditEvent =
  | 'login_success'
  | 'login_failure'
  | 'logout'
  | 'access_denied'
  | 'session_expired'
  | 'session_refreshed';

/**
 * Structured audit events, one JSON log line each with `audit: <event>`: who, from where,
 * and why. Callers pass identities and reasons only — never a token, code or cookie.
 */
export class AuditLog {
  constructor(private readonly logger: Logger) {}

  record(event: AuditEvent, fields: Record<string, string | number | boolean | undefined>): void {
    this.logger.info({ audit: event, ...fields }, `audit ${event}`);
  }
}
