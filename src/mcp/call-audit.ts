import { type AuditLog, RecentRing } from '../auth/audit.js';
import type { Metrics } from '../observability/metrics.js';

/** How a call ended: answered, answered with a JSON-RPC error, a tool's own error (`isError`), or refused here. */
export type McpCallOutcome = 'ok' | 'error' | 'tool_error' | 'denied';

/** One call as the audit records it: never its arguments (only their size) and never a token. */
export interface McpCall {
  method: string;
  name: string;
  id: string | number | null | undefined;
  argumentBytes?: number;
}

/** Who made it. */
export interface McpCallCaller {
  user?: string;
  clientId?: string;
  /** The MCP server called (its name). */
  server: string;
}

/** One recorded call as the admin API lists it: the `mcp_call` audit event's fields and its time. */
export interface McpCallEntry {
  time: string;
  server: string;
  sub?: string;
  client_id?: string;
  method: string;
  name: string;
  jsonrpc_id?: string;
  outcome: McpCallOutcome;
  duration_ms: number;
  argument_bytes?: number;
}

/** How many recent calls are kept in memory for the admin API (`GET /admin/api/calls`). */
export const RECENT_MCP_CALLS = 1000;

/** Distinct names a metric label may take; past it, a name the server never listed is `other`. */
const MAX_NAME_LABELS = 200;

/**
 * The audit trail of MCP calls: an `mcp_call` audit event per call (user, client, method, name,
 * JSON-RPC id, outcome, duration, argument size) and the `mcp_oidc_proxy_mcp_calls_total` /
 * `_mcp_call_duration_seconds` series. Metric names are bounded: names the backend listed are
 * kept, others only until the cap, so a client cannot grow the series by inventing names. The
 * latest calls are kept apart from the audit log's recent events (which they would crowd out),
 * for the admin API.
 */
export class McpCallAudit {
  private readonly listed = new Set<string>();
  private readonly named = new Set<string>();
  /**
   * The labelled series already used: prom-client hashes the label values on every `inc` and
   * `observe` otherwise, a cost paid for every call. Bounded like the names it is keyed by.
   */
  private readonly children = new Map<string, { inc(): void } | { observe(value: number): void }>();
  private readonly calls: RecentRing<McpCallEntry>;

  constructor(
    private readonly audit: AuditLog,
    private readonly metrics: Metrics,
    capacity = RECENT_MCP_CALLS,
  ) {
    this.calls = new RecentRing(capacity);
  }

  /** The calls this instance recorded last (at most RECENT_MCP_CALLS), newest first. */
  recent(): McpCallEntry[] {
    return this.calls.newestFirst();
  }

  /** Names the backend listed (tools/list and the like): always their own label. */
  noteListed(name: string): void {
    if (this.listed.size < 10 * MAX_NAME_LABELS) this.listed.add(name);
  }

  /** A call is starting: the returned function records how it ended. */
  start(call: McpCall, caller: McpCallCaller): (outcome: McpCallOutcome) => void {
    const startedAt = performance.now();
    let recorded = false;
    return (outcome) => {
      if (recorded) return;
      recorded = true;
      this.record(call, caller, outcome, performance.now() - startedAt);
    };
  }

  record(call: McpCall, caller: McpCallCaller, outcome: McpCallOutcome, durationMs = 0): void {
    const fields = {
      server: caller.server,
      sub: caller.user,
      client_id: caller.clientId,
      method: call.method,
      name: call.name,
      jsonrpc_id: call.id === undefined || call.id === null ? undefined : String(call.id),
      outcome,
      duration_ms: Math.round(durationMs * 100) / 100,
      argument_bytes: call.argumentBytes,
    };
    this.audit.record('mcp_call', fields, { remember: false });
    this.calls.push({ time: new Date().toISOString(), ...fields });
    const name = this.label(call.name);
    const { server } = caller;
    this.series(`${server}\u0000${call.method}\u0000${name}\u0000${outcome}`, () =>
      this.metrics.mcpCalls.labels(server, call.method, name, outcome),
    ).inc();
    if (outcome !== 'denied')
      this.series(`${server}\u0000${call.method}\u0000${name}`, () =>
        this.metrics.mcpCallDuration.labels(server, call.method, name),
      ).observe(durationMs / 1000);
  }

  private series<T extends { inc(): void } | { observe(value: number): void }>(
    key: string,
    create: () => T,
  ): T {
    let child = this.children.get(key) as T | undefined;
    if (child === undefined) {
      child = create();
      this.children.set(key, child);
    }
    return child;
  }

  private label(name: string): string {
    if (this.listed.has(name) || this.named.has(name)) return name;
    if (this.named.size >= MAX_NAME_LABELS) return 'other';
    this.named.add(name);
    return name;
  }
}
