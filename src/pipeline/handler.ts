import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AuthContext, AuthDecision, Authenticator, RouteHandler } from '../auth/authenticator.js';
import { challengeResponse, writeChallenge } from '../auth/challenge.js';
import type { Config } from '../config/types.js';
import {
  addressBudget,
  type RateLimits,
  sendTooManyRequests,
  tooManyRequests,
} from '../limits/rate-limit.js';
import type { HealthChecker } from '../observability/health.js';
import { type Logger, redactUrl } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { TraceSpan, Tracing } from '../observability/spans.js';
import type { Forwarder } from '../proxy/forward.js';
import { canonicalHeaderName, upstreamRequestHeaders } from '../proxy/headers.js';
import type { Upstream } from '../proxy/upstream.js';
import { rawResponseHead, type TunnelRegistry, tunnelWebSocket } from '../proxy/websocket.js';
import { type ClientAddress, resolveClientAddress, type TrustedProxies } from './client-address.js';
import { answerPreflight, corsHeaders, isPreflight } from './cors.js';
import type { OriginGuard } from './origin-guard.js';
import { checkRequestTarget } from './request-target.js';
import { applySecurityHeaders } from './security-headers.js';

export type RouteClass =
  | 'mcp'
  | 'health'
  | 'metrics'
  | 'auth'
  | 'preflight'
  | 'proxied'
  | 'invalid'
  | 'forbidden'
  | 'websocket'
  | 'admin';

/** What one request accumulated on its way through the stages, for the access log and metrics. */
interface RequestScope {
  id: string;
  /** `performance.now()` at arrival, in milliseconds. */
  start: number;
  route: RouteClass;
  client?: ClientAddress;
  upstreamStatus?: number;
  outcome?: string;
  auth?: string;
  /** The request's SERVER span; none while tracing is off. */
  trace?: TraceSpan;
}

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as Promise<T>)?.then === 'function';
}

export interface PipelineDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  health: HealthChecker;
  guard: OriginGuard;
  trusted: TrustedProxies;
  authenticator: Authenticator;
  forwarder: Forwarder;
  upstream: Upstream;
  tunnels: TunnelRegistry;
  /** OpenTelemetry spans (NO_TRACING while TRACING_ENABLED is off). */
  tracing: Tracing;
  /** `requests` (RATE_LIMIT_PER_MINUTE) is spent here; `auth` by the login endpoints. */
  rateLimits: RateLimits;
  securityHeaders: ReadonlyArray<readonly [string, string]>;
  /** True once shutdown began: responses then ask clients to close their connection. */
  draining: () => boolean;
  onResponseDone: (socket: Socket | null) => void;
  /** `/admin` and below (ADMIN_ENABLED); undefined when off, so /admin is then a path like any other. */
  admin?: RouteHandler;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function requestIdFrom(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

/** Whose RATE_LIMIT_PER_MINUTE budget a request spends: its user's, or its client IP's when anonymous. */
function budgetKey(decision: AuthDecision, clientIp: string): string {
  return decision.kind === 'allow' && decision.identity
    ? `user:${decision.identity.user}`
    : `ip:${addressBudget(clientIp)}`;
}

/**
 * The identity header names a client may not send (they are the proxy's to set). With tracing
 * on, so are the W3C trace context fields: the backend's parent span is the proxy's.
 */
function ownedHeaderNames(config: Config, traced: boolean): ReadonlySet<string> {
  const names = config.auth.identityHeaders;
  const owned = [names.user, names.email, names.groups].map(canonicalHeaderName);
  if (traced) owned.push('traceparent', 'tracestate');
  return new Set(owned);
}

/** The authenticated user on the request's span (OpenTelemetry `enduser.id`). */
function recordUser(trace: TraceSpan | undefined, decision: AuthDecision): void {
  if (trace?.recording && decision.kind === 'allow' && decision.identity) {
    trace.setAttributes({ 'enduser.id': decision.identity.user });
  }
}

/** `/admin` or a path under it (the proxy's own while ADMIN_ENABLED is on). */
function isAdminPath(path: string): boolean {
  return path.startsWith('/admin') && (path.length === 6 || path[6] === '/');
}

/** Writes a JSON error the proxy answers itself, OAuth-style (`error`, `error_description`). */
export function sendJsonError(
  res: ServerResponse,
  status: number,
  error: string,
  description: string,
  requestId: string,
): void {
  const body = JSON.stringify({ error, error_description: description, request_id: requestId });
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

/**
 * The ordered stages every request passes: request id -> target check -> proxy-owned
 * endpoints -> Origin/Host guard -> authentication -> identity headers -> forward.
 * Proxy-owned endpoints are answered here and never forwarded; everything else is
 * forwarded only after the authentication stage allowed it.
 */
export class Pipeline {
  /** Configured identity header names: a client-sent copy is dropped like the default names. */
  private ownedHeaders: ReadonlySet<string>;

  constructor(private readonly deps: PipelineDeps) {
    this.ownedHeaders = ownedHeaderNames(deps.config, deps.tracing.enabled);
  }

  /**
   * A reload: new requests use these parts and the config's current identity header names;
   * requests and streams already running keep the parts they started with.
   */
  reconfigure(
    parts: Partial<Pick<PipelineDeps, 'forwarder' | 'upstream' | 'guard' | 'trusted' | 'securityHeaders'>>,
  ): void {
    Object.assign(this.deps, parts);
    this.ownedHeaders = ownedHeaderNames(this.deps.config, this.deps.tracing.enabled);
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const scope: RequestScope = {
      id: requestIdFrom(req),
      start: performance.now(),
      route: 'invalid',
      client: undefined,
      upstreamStatus: undefined,
      outcome: undefined,
      auth: undefined,
      trace: this.deps.tracing.enabled ? this.startServerSpan(req) : undefined,
    };
    // The access line is written once both the response closed and the stages returned,
    // so it carries the upstream status and outcome the forwarder learned.
    let pending = 2;
    const done = (): void => {
      if (--pending === 0) this.finish(req, res, scope);
    };
    // `on`, not `once`: a response closes once, and `once` wraps the listener anew per request.
    res.on('close', done);
    this.run(req, res, scope).then(done, (err: Error) => {
      try {
        this.fail(res, scope, err);
      } finally {
        done();
      }
    });
  };

  /** A stage threw: answer 500 if nothing was sent yet, else cut the response short. */
  private fail(res: ServerResponse, scope: RequestScope, err: Error): void {
    this.deps.logger.error(
      { req_id: scope.id, err: { message: err.message, code: (err as { code?: string }).code } },
      'request failed',
    );
    if (!res.headersSent) {
      this.prepareLocal(res, scope);
      sendJsonError(res, 500, 'server_error', 'The proxy failed to handle the request.', scope.id);
    } else res.destroy();
  }

  private async run(req: IncomingMessage, res: ServerResponse, scope: RequestScope): Promise<void> {
    const { config } = this.deps;
    const checked = checkRequestTarget(req.url);
    if (!checked.ok) {
      this.prepareLocal(res, scope);
      return sendJsonError(res, 400, 'invalid_request', checked.reason, scope.id);
    }
    const { path, search } = checked.target;

    if (path === '/health') {
      scope.route = 'health';
      this.prepareLocal(res, scope);
      return this.serveHealth(req, res, scope);
    }
    if (config.metrics.enabled && path === config.metrics.path) {
      scope.route = 'metrics';
      this.prepareLocal(res, scope);
      return this.serveMetrics(req, res, scope);
    }

    const { authenticator } = this.deps;
    const publicEndpoint = authenticator.publicPaths?.has(path) === true;
    const refusal = this.deps.guard.check(req, publicEndpoint);
    if (refusal) {
      scope.route = 'forbidden';
      this.prepareLocal(res, scope);
      return sendJsonError(res, 403, 'forbidden', refusal, scope.id);
    }
    // The admin API and page authenticate their callers themselves, and take no CORS: the
    // guard above already refused foreign Hosts and Origins.
    const { admin } = this.deps;
    if (admin !== undefined && isAdminPath(path)) {
      scope.route = 'admin';
      scope.client = resolveClientAddress(req, this.deps.trusted);
      this.prepareLocal(res, scope);
      return admin(req, res, {
        clientIp: scope.client.ip,
        requestId: scope.id,
        path,
        search,
        trace: scope.trace,
      });
    }
    // Browser-based clients (MCP Inspector) call across origins: an allowed origin may read
    // the responses, and preflights are answered here (they carry no credentials).
    const cors = corsHeaders(req.headers.origin, publicEndpoint);
    if (isPreflight(req)) {
      scope.route = publicEndpoint ? 'auth' : 'preflight';
      this.prepareLocal(res, scope);
      return answerPreflight(res, cors);
    }
    scope.client = resolveClientAddress(req, this.deps.trusted);
    const ctx: AuthContext = {
      clientIp: scope.client.ip,
      requestId: scope.id,
      path,
      search,
      trace: scope.trace,
    };
    const route = authenticator.routes?.get(path);
    if (route) {
      scope.route = 'auth';
      this.prepareLocal(res, scope);
      for (const [name, value] of cors) res.setHeader(name, value);
      // Owned endpoints take no identity here: those without a login budget of their own
      // (/logout, discovery, JWKS) spend the client IP's.
      const limiter = this.deps.rateLimits.requests;
      if (limiter && !authenticator.authLimitedPaths?.has(path)) {
        const verdict = await limiter.consume(`ip:${addressBudget(ctx.clientIp)}`);
        if (!verdict.allowed) return this.refuseOverLimit(res, scope, cors, verdict.retryAfterSeconds);
      }
      return route(req, res, ctx);
    }
    scope.route = path === config.mcpPath || path.startsWith(`${config.mcpPath}/`) ? 'mcp' : 'proxied';

    // A decision made synchronously is used in this same tick, so the request reaches the
    // backend without a detour through the microtask queue.
    const pending = authenticator.authenticate(req, ctx);
    const decision = isPromise(pending) ? await pending : pending;
    this.deps.metrics.authRequests.inc({
      mode: authenticator.mode,
      result: decision.kind === 'allow' ? 'allowed' : decision.challenge.result,
    });
    // After authentication, so a user's requests count as theirs whatever their address;
    // challenged requests count against their client IP, so hammering is refused too.
    const limiter = this.deps.rateLimits.requests;
    if (limiter) {
      const verdict = await limiter.consume(budgetKey(decision, scope.client.ip));
      if (!verdict.allowed) return this.refuseOverLimit(res, scope, cors, verdict.retryAfterSeconds);
    }
    if (decision.kind === 'challenge') {
      scope.auth = decision.challenge.result;
      this.prepareLocal(res, scope);
      for (const [name, value] of cors) res.setHeader(name, value);
      return writeChallenge(res, decision.challenge, scope.id);
    }
    recordUser(scope.trace, decision);
    const headers = this.upstreamHeaders(req, scope.client, scope.id, decision);
    const result = await this.deps.forwarder.forward(
      req,
      res,
      path + search,
      headers,
      scope.id,
      cors,
      scope.trace,
    );
    scope.upstreamStatus = result.upstreamStatus;
    scope.outcome = result.outcome;
    this.deps.metrics.proxyRequests.inc({
      method: req.method ?? 'GET',
      outcome: result.outcome,
      status: result.upstreamStatus ?? 0,
    });
    if (result.failure) {
      this.deps.logger.warn(
        {
          req_id: scope.id,
          target: this.deps.upstream.origin,
          error: result.failure.code,
          attempts: result.attempts,
        },
        result.failure.description,
      );
    }
  }

  /** RATE_LIMIT_PER_MINUTE is used up: 429 with Retry-After, and nothing is forwarded. */
  private refuseOverLimit(
    res: ServerResponse,
    scope: RequestScope,
    cors: ReadonlyArray<readonly [string, string]>,
    retryAfterSeconds: number,
  ): void {
    scope.outcome = 'rate_limited';
    this.prepareLocal(res, scope);
    for (const [name, value] of cors) res.setHeader(name, value);
    sendTooManyRequests(res, retryAfterSeconds, scope.id);
  }

  /** WebSocket upgrades pass the same stages, then are tunnelled. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const id = requestIdFrom(req);
    const start = performance.now();
    const trace = this.deps.tracing.enabled ? this.startServerSpan(req) : undefined;
    const refuse = (
      status: number,
      reason: string,
      error: string,
      description: string,
      extra: ReadonlyArray<readonly [string, string]> = [],
    ): void => {
      const body = JSON.stringify({ error, error_description: description, request_id: id });
      socket.end(
        rawResponseHead(status, reason, [
          ['content-type', 'application/json'],
          ['content-length', String(Buffer.byteLength(body))],
          ['x-request-id', id],
          ['connection', 'close'],
          ...extra,
          ...this.deps.securityHeaders,
        ]) + body,
      );
      this.logAccess({ id, start, route: 'websocket', outcome: error, trace }, req, status);
    };
    socket.on('error', () => socket.destroy());
    const checked = checkRequestTarget(req.url);
    if (!checked.ok) return refuse(400, 'Bad Request', 'invalid_request', checked.reason);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
      return refuse(400, 'Bad Request', 'invalid_request', 'only WebSocket upgrades are supported');
    }
    const refusal = this.deps.guard.check(req);
    if (refusal) return refuse(403, 'Forbidden', 'forbidden', refusal);
    if (this.deps.draining())
      return refuse(503, 'Service Unavailable', 'shutting_down', 'The proxy is shutting down.');
    const client = resolveClientAddress(req, this.deps.trusted);
    const { path, search } = checked.target;
    if (this.deps.admin !== undefined && isAdminPath(path)) {
      return refuse(404, 'Not Found', 'not_found', 'The admin API takes no WebSocket upgrades.');
    }
    // An upgrade spends RATE_LIMIT_PER_MINUTE like any request (once: the messages do not).
    const admit = async (): Promise<{ decision: AuthDecision; retryAfterSeconds?: number }> => {
      const ctx = { clientIp: client.ip, requestId: id, path, search, trace };
      const decision = await this.deps.authenticator.authenticate(req, ctx);
      const limiter = this.deps.rateLimits.requests;
      if (!limiter) return { decision };
      const verdict = await limiter.consume(budgetKey(decision, client.ip));
      return verdict.allowed ? { decision } : { decision, retryAfterSeconds: verdict.retryAfterSeconds };
    };
    admit().then(
      ({ decision, retryAfterSeconds }) => {
        if (retryAfterSeconds !== undefined) {
          const { retryAfter, description } = tooManyRequests(retryAfterSeconds);
          return refuse(429, 'Too Many Requests', 'rate_limited', description, [['retry-after', retryAfter]]);
        }
        if (decision.kind === 'challenge') {
          const { challenge } = decision;
          const { headers, body } = challengeResponse(challenge, id);
          socket.end(
            rawResponseHead(challenge.status, STATUS_CODES[challenge.status] ?? 'Error', [
              ...headers,
              ['content-length', String(Buffer.byteLength(body))],
              ['x-request-id', id],
              ['connection', 'close'],
              ...this.deps.securityHeaders,
            ]) + body,
          );
          this.logAccess(
            { id, start, route: 'websocket', client, auth: challenge.result, trace },
            req,
            challenge.status,
          );
          return;
        }
        recordUser(trace, decision);
        this.tunnel(
          req,
          socket,
          head,
          path + search,
          this.upstreamHeaders(req, client, id, decision),
          id,
          start,
          client,
          trace,
        );
      },
      () => refuse(500, 'Internal Server Error', 'server_error', 'The proxy failed to handle the request.'),
    );
  };

  private tunnel(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    pathAndQuery: string,
    headers: string[],
    id: string,
    start: number,
    client: ClientAddress,
    trace: TraceSpan | undefined,
  ): void {
    // The backend's upgrade request names the upgrade's span as its parent.
    trace?.inject(headers);
    const extra = [['x-request-id', id] as const, ...this.deps.securityHeaders];
    tunnelWebSocket(
      this.deps.upstream,
      req,
      socket,
      head,
      pathAndQuery,
      headers,
      this.deps.tunnels,
      extra,
    ).then((result) => {
      this.deps.metrics.proxyRequests.inc({
        method: 'GET',
        outcome: result.outcome,
        status: result.upstreamStatus ?? 0,
      });
      this.logAccess(
        {
          id,
          start,
          route: 'websocket',
          client,
          upstreamStatus: result.upstreamStatus,
          outcome: result.outcome,
          trace,
        },
        req,
        result.upstreamStatus ?? result.failure?.status ?? 0,
      );
    });
  }

  /** What the backend gets: the client's headers, cleaned, plus forwarding and identity headers. */
  private upstreamHeaders(
    req: IncomingMessage,
    client: ClientAddress,
    requestId: string,
    decision: Extract<AuthDecision, { kind: 'allow' }>,
  ): string[] {
    const add = forwardingHeaders(client, requestId);
    const { identity } = decision;
    if (identity) {
      const names = this.deps.config.auth.identityHeaders;
      add.push([names.user, identity.user]);
      if (identity.email) add.push([names.email, identity.email]);
      if (identity.groups?.length) add.push([names.groups, identity.groups.join(',')]);
    }
    if (decision.extraHeaders) add.push(...decision.extraHeaders);
    return upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
      dropAuthorization: decision.credentialsConsumed,
      owned: this.ownedHeaders,
      stripCookies: this.deps.authenticator.cookieNames,
      add,
    });
  }

  /**
   * Headers on a response the proxy writes itself. Forwarded responses get theirs from the
   * forwarder in one list instead: nothing may be set on `res` before it writes the head.
   */
  private prepareLocal(res: ServerResponse, scope: RequestScope): void {
    res.setHeader('X-Request-Id', scope.id);
    if (this.deps.draining()) res.setHeader('Connection', 'close');
    applySecurityHeaders(res, this.deps.securityHeaders);
  }

  private async serveHealth(req: IncomingMessage, res: ServerResponse, scope: RequestScope): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return sendJsonError(res, 405, 'method_not_allowed', 'Use GET /health.', scope.id);
    }
    const report = await this.deps.health.check();
    const body = JSON.stringify(report);
    res.writeHead(report.status === 'healthy' ? 200 : 503, {
      'Content-Type': 'application/json',
      'Cache-Control': 'no-store',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private async serveMetrics(req: IncomingMessage, res: ServerResponse, scope: RequestScope): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return sendJsonError(
        res,
        405,
        'method_not_allowed',
        `Use GET ${this.deps.config.metrics.path}.`,
        scope.id,
      );
    }
    const { registry } = this.deps.metrics;
    const body = await registry.metrics();
    res.writeHead(200, { 'Content-Type': registry.contentType, 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private finish(req: IncomingMessage, res: ServerResponse, scope: RequestScope): void {
    // 499: the client went away before the response was complete (nginx's convention).
    const status = res.writableFinished ? res.statusCode : 499;
    const elapsedMs = performance.now() - scope.start;
    const method = req.method ?? 'GET';
    this.deps.metrics.httpRequests.inc({ method, route: scope.route, status });
    this.deps.metrics.httpDuration.observe({ method, route: scope.route }, elapsedMs / 1000);
    this.logAccess(scope, req, status, elapsedMs);
    this.deps.onResponseDone(req.socket);
  }

  /** The request's SERVER span; named when it ends, once the route is known. */
  private startServerSpan(req: IncomingMessage): TraceSpan {
    const span = this.deps.tracing.startServer(`HTTP ${req.method ?? 'GET'}`, req.headers);
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

  private endSpan(span: TraceSpan, scope: RequestScope, req: IncomingMessage, status: number): void {
    if (span.recording) {
      const route = this.routeTemplate(scope.route, req);
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
  private routeTemplate(route: RouteClass, req: IncomingMessage): string | undefined {
    switch (route) {
      case 'mcp':
        return this.deps.config.mcpPath;
      case 'health':
        return '/health';
      case 'metrics':
        return this.deps.config.metrics.path;
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

  private logAccess(
    scope: RequestScope,
    req: IncomingMessage,
    status: number,
    elapsedMs = performance.now() - scope.start,
  ): void {
    // Every request ends here, HTTP or WebSocket upgrade: so does its span.
    if (scope.trace) this.endSpan(scope.trace, scope, req, status);
    const { logger } = this.deps;
    if (!logger.isLevelEnabled('info')) return;
    logger.info(
      {
        req_id: scope.id,
        method: req.method,
        path: redactUrl(req.url ?? ''),
        status,
        upstream_status: scope.upstreamStatus,
        outcome: scope.outcome,
        auth: scope.auth,
        route: scope.route,
        client_ip: scope.client?.ip ?? req.socket.remoteAddress,
        duration_ms: Math.round(elapsedMs * 100) / 100,
      },
      'request',
    );
  }
}

function forwardingHeaders(client: ClientAddress, requestId: string): Array<[string, string]> {
  return [
    ['x-forwarded-for', client.forwardedFor],
    ['x-forwarded-proto', client.forwardedProto],
    ['x-forwarded-host', client.forwardedHost],
    ['x-request-id', requestId],
  ];
}
