import { randomUUID } from 'node:crypto';
import { type IncomingMessage, type ServerResponse, STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AuthContext, AuthDecision, Authenticator } from '../auth/authenticator.js';
import { writeChallenge } from '../auth/challenge.js';
import type { Config } from '../config/types.js';
import type { HealthChecker } from '../observability/health.js';
import { type Logger, redactUrl } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
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
  | 'websocket';

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
  securityHeaders: ReadonlyArray<readonly [string, string]>;
  /** True once shutdown began: responses then ask clients to close their connection. */
  draining: () => boolean;
  onResponseDone: (socket: Socket | null) => void;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function requestIdFrom(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
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
  private readonly ownedHeaders: ReadonlySet<string>;

  constructor(private readonly deps: PipelineDeps) {
    const names = deps.config.auth.identityHeaders;
    this.ownedHeaders = new Set([names.user, names.email, names.groups].map(canonicalHeaderName));
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
    };
    // The access line is written once both the response closed and the stages returned,
    // so it carries the upstream status and outcome the forwarder learned.
    let pending = 2;
    const done = (): void => {
      if (--pending === 0) this.finish(req, res, scope);
    };
    res.once('close', done);
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
    // Browser-based clients (MCP Inspector) call across origins: an allowed origin may read
    // the responses, and preflights are answered here (they carry no credentials).
    const cors = corsHeaders(req.headers.origin, publicEndpoint);
    if (isPreflight(req)) {
      scope.route = publicEndpoint ? 'auth' : 'preflight';
      this.prepareLocal(res, scope);
      return answerPreflight(res, cors);
    }
    scope.client = resolveClientAddress(req, this.deps.trusted);
    const ctx: AuthContext = { clientIp: scope.client.ip, requestId: scope.id, path, search };
    const route = authenticator.routes?.get(path);
    if (route) {
      scope.route = 'auth';
      this.prepareLocal(res, scope);
      for (const [name, value] of cors) res.setHeader(name, value);
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
    if (decision.kind === 'challenge') {
      scope.auth = decision.challenge.result;
      this.prepareLocal(res, scope);
      for (const [name, value] of cors) res.setHeader(name, value);
      return writeChallenge(res, decision.challenge);
    }
    const headers = this.upstreamHeaders(req, scope.client, scope.id, decision);
    const result = await this.deps.forwarder.forward(req, res, path + search, headers, scope.id, cors);
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

  /** WebSocket upgrades pass the same stages, then are tunnelled. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const id = requestIdFrom(req);
    const start = performance.now();
    const refuse = (status: number, reason: string, error: string, description: string): void => {
      const body = JSON.stringify({ error, error_description: description, request_id: id });
      socket.end(
        rawResponseHead(status, reason, [
          ['content-type', 'application/json'],
          ['content-length', String(Buffer.byteLength(body))],
          ['x-request-id', id],
          ['connection', 'close'],
          ...this.deps.securityHeaders,
        ]) + body,
      );
      this.logAccess({ id, start, route: 'websocket', outcome: error }, req, status);
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
    const authenticate = async (): Promise<AuthDecision> =>
      this.deps.authenticator.authenticate(req, { clientIp: client.ip, requestId: id, path, search });
    authenticate().then(
      (decision) => {
        if (decision.kind === 'challenge') {
          const { challenge } = decision;
          socket.end(
            rawResponseHead(challenge.status, STATUS_CODES[challenge.status] ?? 'Error', [
              ...challenge.headers,
              ['content-length', String(Buffer.byteLength(challenge.body))],
              ['x-request-id', id],
              ['connection', 'close'],
              ...this.deps.securityHeaders,
            ]) + challenge.body,
          );
          this.logAccess(
            { id, start, route: 'websocket', client, auth: challenge.result },
            req,
            challenge.status,
          );
          return;
        }
        this.tunnel(
          req,
          socket,
          head,
          path + search,
          this.upstreamHeaders(req, client, id, decision),
          id,
          start,
          client,
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
  ): void {
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

  private logAccess(
    scope: RequestScope,
    req: IncomingMessage,
    status: number,
    elapsedMs = performance.now() - scope.start,
  ): void {
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
