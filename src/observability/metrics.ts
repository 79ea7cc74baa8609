import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from './prom-client.js';

/** Buckets from sub-millisecond to 30 s: proxy overhead and long tool calls both show. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export const BREAKER_STATE_VALUE = { closed: 0, open: 1, half_open: 2 } as const;

export interface Metrics {
  /** This process's metrics (the admin status reads them). */
  registry: Registry;
  /**
   * What the metrics path serves: this process's registry, or in a worker (SERVER_WORKERS > 1)
   * every worker's, aggregated by the primary.
   */
  exposition(): Promise<string>;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  proxyRequests: Counter<'server' | 'method' | 'outcome' | 'status'>;
  authRequests: Counter<'mode' | 'result'>;
  sessionsActive: Gauge;
  breakerState: Gauge<'server'>;
  activeStreams: Gauge<'kind'>;
  authEvents: Counter<'event' | 'client'>;
  configReloads: Counter<'result'>;
  mcpCalls: Counter<'server' | 'method' | 'name' | 'outcome'>;
  mcpCallDuration: Histogram<'server' | 'method' | 'name'>;
}

export interface MetricsOptions {
  /**
   * How many sessions the store holds, read when /metrics is scraped: every instance sharing a
   * Redis then reports what the store holds now, not a copy from its last health check. While
   * it fails (the store is down) the gauge keeps its last value; /health says why.
   */
  activeSessions?: () => Promise<number>;
  /**
   * Given in a worker: shares the registry with the primary and returns what a scrape serves
   * (src/cluster/worker.ts shareMetrics).
   */
  aggregate?: (registry: Registry) => () => Promise<string>;
}

/**
 * The seed's six metric names, kept exactly, plus process metrics. Labels carry a route
 * class (`mcp`, `health`, `proxied`, ...), never a raw path, so cardinality stays bounded.
 */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const { activeSessions, aggregate } = options;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mcp_oidc_proxy_' });
  return {
    registry,
    exposition: aggregate ? aggregate(registry) : () => registry.metrics(),
    httpRequests: new Counter({
      name: 'mcp_oidc_proxy_http_requests_total',
      help: 'HTTP requests received, by method, route class and status.',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    httpDuration: new Histogram({
      name: 'mcp_oidc_proxy_http_request_duration_seconds',
      help: 'Time from request to response end, by method and route class.',
      labelNames: ['method', 'route'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    }),
    proxyRequests: new Counter({
      name: 'mcp_oidc_proxy_proxy_requests_total',
      help: 'Requests forwarded to a backend, by server, method, outcome (ok, error, timeout, refused, breaker_open, aborted) and status.',
      labelNames: ['server', 'method', 'outcome', 'status'],
      registers: [registry],
    }),
    authRequests: new Counter({
      name: 'mcp_oidc_proxy_auth_requests_total',
      help: 'Authentication decisions, by auth mode and result.',
      labelNames: ['mode', 'result'],
      registers: [registry],
    }),
    sessionsActive: new Gauge({
      name: 'mcp_oidc_proxy_sessions_active',
      help: 'Sessions currently held by the session store.',
      registers: [registry],
      // Every worker counts the one shared store: the same number, not a share of it.
      aggregator: 'max',
      async collect() {
        if (!activeSessions) return;
        try {
          this.set(await activeSessions());
        } catch {}
      },
    }),
    breakerState: new Gauge({
      name: 'mcp_oidc_proxy_circuit_breaker_state',
      help: 'Upstream circuit breaker of each server: 0 closed, 1 open, 2 half-open.',
      labelNames: ['server'],
      registers: [registry],
      // Each worker has its own breaker: with several workers, the state furthest from closed.
      aggregator: 'max',
    }),
    authEvents: new Counter({
      name: 'mcp_oidc_proxy_auth_events_total',
      help: 'Login and authorization steps (login_success, client_registered, consent_granted, token_issued, token_refreshed, refresh_reuse_detected, ...), by client name where known.',
      labelNames: ['event', 'client'],
      registers: [registry],
    }),
    activeStreams: new Gauge({
      name: 'mcp_oidc_proxy_active_streams',
      help: 'Long-lived streams open through the proxy, by kind (sse, websocket).',
      labelNames: ['kind'],
      registers: [registry],
    }),
    configReloads: new Counter({
      name: 'mcp_oidc_proxy_config_reloads_total',
      help: 'Reloads of the --config file (SIGHUP, CONFIG_WATCH), by result: applied, or rejected (invalid; the running configuration stayed).',
      labelNames: ['result'],
      registers: [registry],
    }),
    mcpCalls: new Counter({
      name: 'mcp_oidc_proxy_mcp_calls_total',
      help: 'MCP calls (tools/call, prompts/get, resources/read) judged by mcp_access, by server, method, name (bounded) and outcome (ok, error, tool_error, denied).',
      labelNames: ['server', 'method', 'name', 'outcome'],
      registers: [registry],
    }),
    mcpCallDuration: new Histogram({
      name: 'mcp_oidc_proxy_mcp_call_duration_seconds',
      help: 'Time from an MCP call to its response, by server, method and name (bounded).',
      labelNames: ['server', 'method', 'name'],
      buckets: DURATION_BUCKETS,
      registers: [registry],
    }),
  };
}
