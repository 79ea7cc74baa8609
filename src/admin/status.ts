import type { AuditEntry } from '../auth/audit.js';
import type { Config, ServerConfig } from '../config/types.js';
import type { HealthChecker, HealthReport, TargetHealth } from '../observability/health.js';
import type { Metrics } from '../observability/metrics.js';
import type { BreakerState } from '../proxy/breaker.js';
import type { StdioChildInfo } from '../stdio/bridge.js';
import { quoteCommand } from '../stdio/command.js';

/**
 * `GET /admin/api/status`: one JSON document with what the monitoring page shows. Every counter
 * is read from the prom-client registry the proxy already keeps for /metrics (nothing is counted
 * twice); the admin API's own requests are left out of the request figures, so watching the page
 * does not move them.
 */

/** The login funnel, in order: each step's count comes from the metric named beside it. */
export const FUNNEL_STEPS = [
  'challenge',
  'client_registered',
  'consent_granted',
  'login_success',
  'token_issued',
  'mcp_first_call',
] as const;

/** The rates window: rates compare the newest sample with the oldest one at most this old. */
const RATE_WINDOW_MS = 10_000;
/** Samples closer together than this are not kept (several pages polling at once). */
const MIN_SAMPLE_GAP_MS = 500;

export interface StatusSources {
  config: Config;
  metrics: Metrics;
  health: HealthChecker;
  /** The MCP servers behind the proxy, with their breakers and stdio children. */
  servers: () => readonly ServerSource[];
  authMode: string;
  version: string;
  /** The session store's kind, in oidc mode. */
  storeKind?: 'memory' | 'redis';
  recentAudit: () => AuditEntry[];
  /** Epoch ms; tests move it. */
  now?: () => number;
}

/** Histogram buckets summed over label sets: upper bounds (seconds, ascending, +Inf last) and cumulative counts. */
export interface Buckets {
  le: number[];
  counts: number[];
}

interface Sample {
  at: number;
  requests: number;
  buckets: Buckets;
}

export interface StatusReport {
  auth_mode: string;
  process: {
    version: string;
    node: string;
    pid: number;
    started_at: string;
    uptime_seconds: number;
    memory: { rss_bytes: number; heap_used_bytes: number; heap_total_bytes: number; external_bytes: number };
  };
  /** The first server's backend (the only one without `servers:`). */
  upstream: { target: string; status: 'healthy' | 'unhealthy'; error?: string; breaker: BreakerState };
  servers: ServerStatus[];
  store: { kind: string; status: 'healthy' | 'unhealthy'; active_sessions: number; error?: string } | null;
  identity_provider: { status: 'healthy' | 'unhealthy'; error?: string } | null;
  requests: {
    total: number;
    by_status_class: Record<string, number>;
    by_route: Record<string, number>;
    latency: { count: number; p50_ms: number | null; p99_ms: number | null };
  };
  rates: {
    window_seconds: number | null;
    requests_per_second: number | null;
    p50_ms: number | null;
    p99_ms: number | null;
  };
  proxy: { total: number; by_outcome: Record<string, number> };
  streams: { sse: number; websocket: number };
  auth: {
    decisions: Record<string, number>;
    events: Record<string, number>;
    funnel: Array<{ step: (typeof FUNNEL_STEPS)[number]; count: number }>;
  };
  recent_audit: AuditEntry[];
}

/** What the status report reads of one server (a Backend). */
export interface ServerSource {
  server: ServerConfig;
  breaker: { state: BreakerState };
  bridge?: { children(): StdioChildInfo[] } | undefined;
}

/** One server in the status report: where it goes, its health, and a stdio server's children. */
export interface ServerStatus {
  name: string;
  path: string;
  /** The backend URL, or the stdio command. */
  target: string;
  status: 'healthy' | 'unhealthy';
  error?: string;
  breaker: BreakerState;
  /** A stdio server's children: pid, user, sessions, age and idle time. */
  children?: Array<{
    pid: number | null;
    user: string | null;
    sessions: string[];
    age_seconds: number;
    idle_seconds: number;
    in_flight: number;
    open_streams: number;
  }>;
}

/** The origin and path of the target, without credentials or query (what an operator may see). */
export function displayTarget(url: URL): string {
  const shown = new URL(url.href);
  shown.username = '';
  shown.password = '';
  shown.search = '';
  shown.hash = '';
  return shown.href;
}

/**
 * The `q` quantile (0..1) of a histogram, in seconds, interpolated linearly inside the bucket it
 * falls in (as Prometheus' histogram_quantile does); null without observations. Past the last
 * finite bound it answers that bound: the histogram knows nothing finer.
 */
export function quantile(buckets: Buckets, q: number): number | null {
  const total = buckets.counts[buckets.counts.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lowerBound = 0;
  let below = 0;
  for (let i = 0; i < buckets.le.length; i++) {
    const upper = buckets.le[i] as number;
    const count = buckets.counts[i] as number;
    if (count >= rank && count > below) {
      if (!Number.isFinite(upper)) return lowerBound;
      return lowerBound + ((upper - lowerBound) * (rank - below)) / (count - below);
    }
    if (Number.isFinite(upper)) lowerBound = upper;
    below = count;
  }
  return lowerBound;
}

function difference(newer: Buckets, older: Buckets): Buckets {
  return { le: newer.le, counts: newer.counts.map((n, i) => n - (older.counts[i] ?? 0)) };
}

const toMs = (seconds: number | null): number | null =>
  seconds === null ? null : Math.round(seconds * 100_000) / 100;

function add(into: Record<string, number>, key: string, value: number): void {
  into[key] = (into[key] ?? 0) + value;
}

export class StatusReporter {
  private samples: Sample[] = [];
  private readonly now: () => number;
  private readonly startedAt: number;

  constructor(private readonly sources: StatusSources) {
    this.now = sources.now ?? Date.now;
    this.startedAt = Date.now() - process.uptime() * 1000;
  }

  private servers(checked: HealthReport): ServerStatus[] {
    const now = this.now();
    return this.sources.servers().map(({ server, breaker, bridge }) => {
      const health = (checked.checks.servers?.[server.name] ?? checked.checks.proxy_target) as
        | TargetHealth
        | undefined;
      const { target } = server;
      const status: ServerStatus = {
        name: server.name,
        path: server.path,
        // Quoted as check-config shows it: an argument with a space reads as one.
        target: target.kind === 'url' ? displayTarget(target.url) : quoteCommand(target.command),
        status: health?.status ?? 'unhealthy',
        ...(health?.error ? { error: health.error } : {}),
        breaker: breaker.state,
      };
      if (bridge) {
        status.children = bridge.children().map((child) => ({
          pid: child.pid ?? null,
          user: child.user ?? null,
          sessions: child.sessions,
          age_seconds: Math.round((now - child.startedAt) / 1000),
          idle_seconds: Math.round((now - child.lastActivityAt) / 1000),
          in_flight: child.inFlight,
          open_streams: child.openStreams,
        }));
      }
      return status;
    });
  }

  async report(): Promise<StatusReport> {
    const { metrics, health } = this.sources;
    const [httpRequests, duration, proxyRequests, authRequests, authEvents, streams, checked] =
      await Promise.all([
        metrics.httpRequests.get(),
        metrics.httpDuration.get(),
        metrics.proxyRequests.get(),
        metrics.authRequests.get(),
        metrics.authEvents.get(),
        metrics.activeStreams.get(),
        health.check(),
      ]);

    const byClass: Record<string, number> = {};
    const byRoute: Record<string, number> = {};
    let total = 0;
    for (const { labels, value } of httpRequests.values) {
      if (labels.route === 'admin') continue;
      total += value;
      add(byClass, `${String(labels.status).charAt(0)}xx`, value);
      add(byRoute, String(labels.route), value);
    }

    const bounds = new Map<number, number>();
    for (const { labels, value, metricName } of duration.values) {
      if (labels.route === 'admin' || !metricName?.endsWith('_bucket')) continue;
      // Bucket samples carry the `le` label besides the histogram's own.
      const bound = (labels as Record<string, string | number | undefined>).le;
      const le = bound === '+Inf' ? Number.POSITIVE_INFINITY : Number(bound);
      bounds.set(le, (bounds.get(le) ?? 0) + value);
    }
    const le = [...bounds.keys()].sort((a, b) => a - b);
    const buckets: Buckets = { le, counts: le.map((b) => bounds.get(b) as number) };

    const byOutcome: Record<string, number> = {};
    let proxied = 0;
    for (const { labels, value } of proxyRequests.values) {
      proxied += value;
      add(byOutcome, String(labels.outcome), value);
    }
    const decisions: Record<string, number> = {};
    for (const { labels, value } of authRequests.values) add(decisions, String(labels.result), value);
    const events: Record<string, number> = {};
    for (const { labels, value } of authEvents.values) add(events, String(labels.event), value);
    const open: Record<string, number> = {};
    for (const { labels, value } of streams.values) add(open, String(labels.kind), value);

    const funnel = FUNNEL_STEPS.map((step) => ({
      step,
      // The 401 that starts discovery: an MCP client (or script) without a token.
      count: step === 'challenge' ? (decisions.unauthenticated ?? 0) : (events[step] ?? 0),
    }));

    const memory = process.memoryUsage();
    const servers = this.servers(checked);
    const first = servers[0] as ServerStatus;
    const store = checked.checks.session_store;
    return {
      auth_mode: this.sources.authMode,
      process: {
        version: this.sources.version,
        node: process.version,
        pid: process.pid,
        started_at: new Date(this.startedAt).toISOString(),
        uptime_seconds: Math.round(process.uptime()),
        memory: {
          rss_bytes: memory.rss,
          heap_used_bytes: memory.heapUsed,
          heap_total_bytes: memory.heapTotal,
          external_bytes: memory.external,
        },
      },
      upstream: {
        target: first.target,
        status: first.status,
        ...(first.error ? { error: first.error } : {}),
        breaker: first.breaker,
      },
      servers,
      store: this.sources.storeKind
        ? {
            kind: this.sources.storeKind,
            status: store.status,
            active_sessions: store.active_sessions,
            ...(store.error ? { error: store.error } : {}),
          }
        : null,
      identity_provider: checked.checks.identity_provider ?? null,
      requests: {
        total,
        by_status_class: byClass,
        by_route: byRoute,
        latency: {
          count: buckets.counts[buckets.counts.length - 1] ?? 0,
          p50_ms: toMs(quantile(buckets, 0.5)),
          p99_ms: toMs(quantile(buckets, 0.99)),
        },
      },
      rates: this.rates({ at: this.now(), requests: total, buckets }),
      proxy: { total: proxied, by_outcome: byOutcome },
      streams: { sse: open.sse ?? 0, websocket: open.websocket ?? 0 },
      auth: { decisions, events, funnel },
      recent_audit: this.sources.recentAudit(),
    };
  }

  /** Requests per second and latency over the last ~10 s, from the samples earlier reports kept. */
  private rates(current: Sample): StatusReport['rates'] {
    this.samples = this.samples.filter((s) => current.at - s.at <= RATE_WINDOW_MS);
    const baseline = this.samples[0];
    const newest = this.samples[this.samples.length - 1];
    if (!newest || current.at - newest.at >= MIN_SAMPLE_GAP_MS) this.samples.push(current);
    if (!baseline || current.at <= baseline.at) {
      return { window_seconds: null, requests_per_second: null, p50_ms: null, p99_ms: null };
    }
    const seconds = (current.at - baseline.at) / 1000;
    const window = difference(current.buckets, baseline.buckets);
    return {
      window_seconds: Math.round(seconds * 10) / 10,
      requests_per_second: Math.round(((current.requests - baseline.requests) / seconds) * 100) / 100,
      p50_ms: toMs(quantile(window, 0.5)),
      p99_ms: toMs(quantile(window, 0.99)),
    };
  }
}
