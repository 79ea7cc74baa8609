import type { IncomingMessage } from 'node:http';
import type { Config } from '../config/types.js';
import { type Logger, redactUrl } from '../observability/logger.js';
import type { TraceSpan, Tracing } from '../observability/spans.js';
import type { RequestScope } from './admission.js';

/**
 * Where every request ends, HTTP or WebSocket upgrade: one access-log line (request id, status,
 * upstream status, outcome, route, client, duration) and the end of its SERVER span, named once
 * the route is known.
 */
export class AccessLog {
  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
    private readonly tracing: Tracing,
  ) {}

  /** The request's SERVER span (continuing an incoming W3C trace context); none while tracing is off. */
  startSpan(req: IncomingMessage): TraceSpan | undefined {
    if (!this.tracing.enabled) return undefined;
    const span = this.tracing.startServer(`HTTP ${req.method ?? 'GET'}`, req.headers);
    // Origin-form targets only: an absolute-form one (refused anyway) may carry credentials.
    if (span.recording && req.url?.startsWith('/')) {
      const url = redactUrl(req.url);
      const q = url.indexOf('?');
      span.setAttributes({
        'http.request.method': req.method,
        'url.path': q < 0 ? url : url.slice(0, q),
        'url.query': q < 0 ? undefined : url.slice(q + 1),
        'network.peer.address': req.socket.remoteAddress,
      });
    }
    return span;
  }

  write(
    scope: RequestScope,
    req: IncomingMessage,
    status: number,
    elapsedMs = performance.now() - scope.start,
  ): void {
    if (scope.trace) this.endSpan(scope.trace, scope, req, status);
    if (!this.logger.isLevelEnabled('info')) return;
    this.logger.info(
      {
        req_id: scope.id,
        method: req.method,
        path: redactUrl(req.url ?? ''),
        status,
        upstream_status: scope.upstreamStatus,
        outcome: scope.outcome,
        auth: scope.auth,
        route: scope.route,
        server: scope.server?.name,
        client_ip: scope.client?.ip ?? req.socket.remoteAddress,
        duration_ms: Math.round(elapsedMs * 100) / 100,
      },
      'request',
    );
  }

  private endSpan(span: TraceSpan, scope: RequestScope, req: IncomingMessage, status: number): void {
    if (span.recording) {
      const route = this.routeTemplate(scope, req);
      span.updateName(`HTTP ${req.method ?? 'GET'} ${route ?? `(${scope.route})`}`);
      span.setAttributes({
        'http.route': route,
        // 499 is the access log's "client went away": no response was sent.
        'http.response.status_code': status > 0 && status !== 499 ? status : undefined,
        'client.address': scope.client?.ip ?? req.socket.remoteAddress,
        'mcp_oidc_proxy.request_id': scope.id,
        'mcp_oidc_proxy.route': scope.route,
        'mcp_oidc_proxy.outcome': scope.outcome,
        'mcp_oidc_proxy.auth': scope.auth,
      });
      if (status >= 500) span.fail(String(status));
    }
    span.end();
  }

  /** A low-cardinality route (`http.route`); none for arbitrary forwarded paths. */
  private routeTemplate(scope: RequestScope, req: IncomingMessage): string | undefined {
    switch (scope.route) {
      case 'mcp':
        return scope.server?.path;
      case 'health':
        return '/health';
      case 'metrics':
        return this.config.metrics.path;
      case 'auth': {
        // The proxy's own endpoints, matched by exact path: a fixed set.
        const url = req.url ?? '';
        const q = url.indexOf('?');
        return q < 0 ? url : url.slice(0, q);
      }
      default:
        return undefined;
    }
  }
}
