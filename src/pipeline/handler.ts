import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Authenticator, RouteHandler } from '../auth/authenticator.js';
import { challengeResponse, writeChallenge } from '../auth/challenge.js';
import type { Config } from '../config/types.js';
import {
  type ErrorAnswer,
  endSocket,
  endSocketWithError,
  type HeaderList,
  sendError,
} from '../http/errors.js';
import { sendJson } from '../http/respond.js';
import type { RateLimits } from '../limits/rate-limit.js';
import type { McpCallAudit } from '../mcp/call-audit.js';
import type { HealthChecker } from '../observability/health.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { Tracing } from '../observability/spans.js';
import type { ForwardResult } from '../proxy/forward.js';
import { canonicalHeaderName } from '../proxy/headers.js';
import { type TunnelRegistry, type TunnelResult, tunnelWebSocket } from '../proxy/websocket.js';
import type { Backend, Backends } from '../server/backends.js';
import { AccessLog } from './access-log.js';
import { type Admission, type AdmissionDeps, admit, isPromise, type RequestScope } from './admission.js';
import type { TrustedProxies } from './client-address.js';
import { monitoringRoutes } from './monitoring.js';
import type { OriginGuard } from './origin-guard.js';
import { applySecurityHeaders } from './security-headers.js';

export interface PipelineDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  health: HealthChecker;
  guard: OriginGuard;
  trusted: TrustedProxies;
  authenticator: Authenticator;
  /** The MCP servers behind the proxy, each with its pool and forwarder. */
  backends: Backends;
  tunnels: TunnelRegistry;
  /** OpenTelemetry spans (NO_TRACING while TRACING_ENABLED is off). */
  tracing: Tracing;
  /** `requests` (RATE_LIMIT_PER_MINUTE) is spent by the admission stages; `auth` by the login endpoints. */
  rateLimits: RateLimits;
  securityHeaders: HeaderList;
  /** True once shutdown began: responses then ask clients to close their connection. */
  draining: () => boolean;
  onResponseDone: (socket: Socket | null) => void;
  /** `/admin` and below: see AdmissionDeps. */
  admin?: RouteHandler | 'elsewhere';
  /** ADMIN_LISTEN's pipeline: the admin surface and nothing else. */
  adminOnly?: boolean;
  /** The audit trail of MCP calls (mcp_access). */
  mcpCalls?: McpCallAudit;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

function requestIdFrom(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}

const SERVER_ERROR: ErrorAnswer = {
  status: 500,
  error: 'server_error',
  description: 'The proxy failed to handle the request.',
};

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

/**
 * The request pipeline: the admission stages (admission.ts) decide what happens to a request;
 * two writers carry the decision out, one on an HTTP response (`handle`), one on the raw socket
 * of a WebSocket upgrade (`handleUpgrade`). Both end in the access log.
 */
export class Pipeline {
  private admission: AdmissionDeps;
  private readonly accessLog: AccessLog;

  constructor(private readonly deps: PipelineDeps) {
    this.admission = this.admissionDeps();
    this.accessLog = new AccessLog(deps.config, deps.logger, deps.tracing);
  }

  /**
   * A reload: new requests use these parts and the config's current identity header names;
   * requests and streams already running keep the parts they started with.
   */
  reconfigure(parts: Partial<Pick<PipelineDeps, 'guard' | 'trusted' | 'securityHeaders'>>): void {
    Object.assign(this.deps, parts);
    this.admission = this.admissionDeps();
  }

  private admissionDeps(): AdmissionDeps {
    const { deps } = this;
    return {
      config: deps.config,
      metrics: deps.metrics,
      guard: deps.guard,
      trusted: deps.trusted,
      authenticator: deps.authenticator,
      rateLimits: deps.rateLimits,
      monitoring: monitoringRoutes(deps.config, deps.health, deps.metrics),
      admin: deps.admin,
      adminOnly: deps.adminOnly,
      draining: deps.draining,
      ownedHeaders: ownedHeaderNames(deps.config, deps.tracing.enabled),
      mcpCalls: deps.mcpCalls,
      backends: deps.backends,
    };
  }

  private scope(req: IncomingMessage, upgrade: boolean): RequestScope {
    return {
      id: requestIdFrom(req),
      start: performance.now(),
      upgrade,
      route: upgrade ? 'websocket' : 'invalid',
      client: undefined,
      cors: [],
      upstreamStatus: undefined,
      outcome: undefined,
      auth: undefined,
      server: undefined,
      trace: this.accessLog.startSpan(req),
    };
  }

  /** The HTTP writer. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    const scope = this.scope(req, false);
    // The access line is written once both the response closed and the writer returned, so it
    // carries the upstream status and outcome the forwarder learned.
    let pending = 2;
    const done = (): void => {
      if (--pending === 0) this.finish(req, res, scope);
    };
    const failed = (err: Error): void => {
      try {
        this.fail(res, scope, err);
      } finally {
        done();
      }
    };
    // `on`, not `once`: a response closes once, and `once` wraps the listener anew per request.
    res.on('close', done);
    try {
      const admission = admit(this.admission, req, scope);
      const written = isPromise(admission)
        ? admission.then((decided) => this.respond(req, res, scope, decided))
        : this.respond(req, res, scope, admission);
      if (isPromise(written)) written.then(done, failed);
      else done();
    } catch (err) {
      failed(err as Error);
    }
  };

  private respond(
    req: IncomingMessage,
    res: ServerResponse,
    scope: RequestScope,
    admission: Admission,
  ): void | Promise<void> {
    switch (admission.kind) {
      case 'forward':
        return this.forward(req, res, scope, admission);
      case 'serve':
        this.prepareLocal(res, scope);
        return admission.handler(req, res, admission.ctx);
      case 'challenge':
        this.prepareLocal(res, scope);
        return writeChallenge(res, admission.challenge, scope.id);
      case 'reply':
        scope.outcome = 'mcp_refused';
        this.prepareLocal(res, scope);
        return sendJson(res, admission.status, admission.payload);
      case 'refuse':
        if (admission.answer.status === 429) scope.outcome = 'rate_limited';
        this.prepareLocal(res, scope);
        return sendError(res, admission.answer, scope.id);
    }
  }

  private async forward(
    req: IncomingMessage,
    res: ServerResponse,
    scope: RequestScope,
    admission: Extract<Admission, { kind: 'forward' }>,
  ): Promise<void> {
    const { backend } = admission;
    const result = await backend.forwarder.forward(
      req,
      res,
      admission.target,
      admission.headers,
      scope.id,
      scope.cors,
      scope.trace,
      admission.body === undefined ? undefined : { body: admission.body, editor: admission.editor },
    );
    this.recordForward(scope, backend, req.method ?? 'GET', result);
  }

  /** A stage threw: answer 500 if nothing was sent yet, else cut the response short. */
  private fail(res: ServerResponse, scope: RequestScope, err: Error): void {
    this.logFailure(scope, err);
    if (!res.headersSent) {
      this.prepareLocal(res, scope);
      sendError(res, SERVER_ERROR, scope.id);
    } else res.destroy();
  }

  private logFailure(scope: RequestScope, err: Error): void {
    this.deps.logger.error(
      { req_id: scope.id, err: { message: err.message, code: (err as { code?: string }).code } },
      'request failed',
    );
  }

  /**
   * Headers on a response the proxy writes itself. Forwarded responses get theirs from the
   * forwarder in one list instead: nothing may be set on `res` before it writes the head.
   */
  private prepareLocal(res: ServerResponse, scope: RequestScope): void {
    res.setHeader('X-Request-Id', scope.id);
    if (this.deps.draining()) res.setHeader('Connection', 'close');
    applySecurityHeaders(res, this.deps.securityHeaders);
    for (const [name, value] of scope.cors) res.setHeader(name, value);
  }

  /** The raw-socket writer: a WebSocket upgrade passes the same stages, then is tunnelled. */
  readonly handleUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const scope = this.scope(req, true);
    socket.on('error', () => socket.destroy());
    const answered = (admission: Admission): void => {
      // Upgrades are one route in the access log, whichever path they asked for.
      scope.route = 'websocket';
      this.respondOnSocket(req, socket, head, scope, admission);
    };
    const failed = (err: Error): void => {
      this.logFailure(scope, err);
      this.refuseOnSocket(req, socket, scope, SERVER_ERROR);
    };
    try {
      const admission = admit(this.admission, req, scope);
      if (isPromise(admission)) admission.then(answered, failed);
      else answered(admission);
    } catch (err) {
      failed(err as Error);
    }
  };

  private respondOnSocket(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    scope: RequestScope,
    admission: Admission,
  ): void {
    switch (admission.kind) {
      case 'forward':
        return this.tunnel(req, socket, head, scope, admission);
      case 'challenge': {
        const { challenge } = admission;
        scope.auth = challenge.result;
        const { headers, body } = challengeResponse(challenge, scope.id);
        endSocket(socket, challenge.status, [...headers, ...this.localSocketHeaders(scope)], body);
        return this.accessLog.write(scope, req, challenge.status);
      }
      case 'refuse':
        scope.outcome = admission.answer.error;
        return this.refuseOnSocket(req, socket, scope, admission.answer);
      case 'serve':
      case 'reply':
        // Admission refuses upgrades to the proxy's own endpoints and never inspects an upgrade.
        return this.refuseOnSocket(req, socket, scope, SERVER_ERROR);
    }
  }

  private refuseOnSocket(
    req: IncomingMessage,
    socket: Duplex,
    scope: RequestScope,
    answer: ErrorAnswer,
  ): void {
    scope.outcome ??= answer.error;
    endSocketWithError(socket, answer, scope.id, this.localSocketHeaders(scope));
    this.accessLog.write(scope, req, answer.status);
  }

  private localSocketHeaders(scope: RequestScope): HeaderList {
    return [['x-request-id', scope.id], ...this.deps.securityHeaders];
  }

  private tunnel(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    scope: RequestScope,
    admission: Extract<Admission, { kind: 'forward' }>,
  ): void {
    // The backend's upgrade request names the upgrade's span as its parent.
    scope.trace?.inject(admission.headers);
    const { backend } = admission;
    tunnelWebSocket(
      backend.upstream,
      req,
      socket,
      head,
      admission.target,
      admission.headers,
      this.deps.tunnels,
      this.localSocketHeaders(scope),
      scope.id,
    ).then((result) => {
      this.recordForward(scope, backend, 'GET', result);
      this.accessLog.write(scope, req, result.upstreamStatus ?? result.failure?.status ?? 0);
    });
  }

  /** What the forwarder or tunnel learned: on the scope, in the metrics, and a warning on failure. */
  private recordForward(
    scope: RequestScope,
    backend: Backend,
    method: string,
    result: ForwardResult | TunnelResult,
  ): void {
    scope.upstreamStatus = result.upstreamStatus;
    scope.outcome = result.outcome;
    this.deps.metrics.proxyRequests.inc({
      server: backend.server.name,
      method,
      outcome: result.outcome,
      status: result.upstreamStatus ?? 0,
    });
    if (result.failure && 'attempts' in result) {
      this.deps.logger.warn(
        {
          req_id: scope.id,
          server: backend.server.name,
          target: backend.upstream.origin,
          error: result.failure.code,
          attempts: result.attempts,
        },
        result.failure.description,
      );
    }
  }

  private finish(req: IncomingMessage, res: ServerResponse, scope: RequestScope): void {
    // 499: the client went away before the response was complete (nginx's convention).
    const status = res.writableFinished ? res.statusCode : 499;
    const elapsedMs = performance.now() - scope.start;
    const method = req.method ?? 'GET';
    this.deps.metrics.httpRequests.inc({ method, route: scope.route, status });
    this.deps.metrics.httpDuration.observe({ method, route: scope.route }, elapsedMs / 1000);
    this.accessLog.write(scope, req, status, elapsedMs);
    this.deps.onResponseDone(req.socket);
  }
}
