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
  | 'token_revoked'
  /** The first request a user makes with a client's access token (per instance): the funnel's last step. */
  | 'mcp_first_call'
  /** A tools/call, prompts/get or resources/read the MCP inspection stage saw, with its outcome. */
  | 'mcp_call'
  // The admin API (src/admin):
  | 'admin_auth_failure'
  | 'admin_session_revoked'
  | 'admin_client_revoked'
  | 'admin_user_revoked'
  | 'admin_token_revoked';

/**
 * Structured audit events, one JSON log line each with `audit: <event>`: who, from where,
 * and why. Callers pass identities and reasons only — never a token, code or cookie.
 */
export type AuditFields = Record<string, string | number | boolean | undefined>;

/** One remembered event, as the admin API shows it. */
export type AuditEntry = { time: string; event: AuditEvent } & AuditFields;

/** How many recent events are kept in memory for the monitoring page. */
export const RECENT_AUDIT_EVENTS = 200;

export class AuditLog {
  /** A ring buffer: `next` is where the following event goes once it is full. */
  private readonly ring: AuditEntry[] = [];
  private next = 0;

  /** `onEvent` sees every event too (the metrics counter). */
  constructor(
    private readonly logger: Logger,
    private readonly onEvent?: (event: AuditEvent, fields: AuditFields) => void,
    private readonly capacity = RECENT_AUDIT_EVENTS,
  ) {}

  record(event: AuditEvent, fields: AuditFields): void {
    this.logger.info({ audit: event, ...fields }, `audit ${event}`);
    const entry: AuditEntry = { ...fields, time: new Date().toISOString(), event };
    if (this.ring.length < this.capacity) this.ring.push(entry);
    else this.ring[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
    this.onEvent?.(event, fields);
  }

  /** The remembered events of this instance, newest first. */
  recent(): AuditEntry[] {
    const oldestFirst =
      this.ring.length < this.capacity
        ? this.ring
        : [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
    return oldestFirst.map((entry) => ({ ...entry })).reverse();
  }
}
