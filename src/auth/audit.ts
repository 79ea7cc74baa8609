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
  | 'admin_token_revoked'
  | 'admin_signing_key_rotated';

/**
 * Structured audit events, one JSON log line each with `audit: <event>`: who, from where,
 * and why. Callers pass identities and reasons only — never a token, code or cookie.
 */
export type AuditFields = Record<string, string | number | boolean | undefined>;

/** One remembered event, as the admin API shows it. */
export type AuditEntry = { time: string; event: AuditEvent } & AuditFields;

/** How many recent events are kept in memory for the monitoring page. */
export const RECENT_AUDIT_EVENTS = 200;

/** The newest `capacity` items, kept in a ring buffer; read back newest first. */
export class RecentRing<T extends object> {
  private readonly items: T[] = [];
  /** Where the following item goes once the ring is full. */
  private next = 0;

  constructor(private readonly capacity: number) {}

  push(item: T): void {
    if (this.items.length < this.capacity) this.items.push(item);
    else this.items[this.next] = item;
    this.next = (this.next + 1) % this.capacity;
  }

  /** Shallow copies, newest first: a reader cannot change what is kept. */
  newestFirst(): T[] {
    const oldestFirst =
      this.items.length < this.capacity
        ? this.items
        : [...this.items.slice(this.next), ...this.items.slice(0, this.next)];
    return oldestFirst.map((item) => ({ ...item })).reverse();
  }
}

export class AuditLog {
  private readonly ring: RecentRing<AuditEntry>;

  /** `onEvent` sees every event too (the metrics counter). */
  constructor(
    private readonly logger: Logger,
    private readonly onEvent?: (event: AuditEvent, fields: AuditFields) => void,
    capacity = RECENT_AUDIT_EVENTS,
  ) {
    this.ring = new RecentRing(capacity);
  }

  /**
   * Logs the event and tells `onEvent`. `remember: false` leaves it out of `recent()`: events
   * that come in numbers (`mcp_call`) keep a list of their own, so they do not push the rest out.
   */
  record(event: AuditEvent, fields: AuditFields, options: { remember?: boolean } = {}): void {
    this.logger.info({ audit: event, ...fields }, `audit ${event}`);
    if (options.remember !== false) this.ring.push({ ...fields, time: new Date().toISOString(), event });
    this.onEvent?.(event, fields);
  }

  /** The remembered events of this instance, newest first. */
  recent(): AuditEntry[] {
    return this.ring.newestFirst();
  }
}
