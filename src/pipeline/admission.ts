import type { IncomingMessage } from 'node:http';
import type { AuthContext, AuthDecision, Authenticator, RouteHandler } from '../auth/authenticator.js';
import type { Challenge } from '../auth/challenge.js';
import type { Config, ServerConfig } from '../config/types.js';
import type { ErrorAnswer, HeaderList } from '../http/errors.js';
import { addressBudget, type RateLimiter, type RateLimits, tooManyRequests } from '../limits/rate-limit.js';
import type { McpAccessPolicy } from '../mcp/access-policy.js';
import type { McpCallAudit } from '../mcp/call-audit.js';
import { inspectMcpRequest } from '../mcp/inspection.js';
import type { Metrics } from '../observability/metrics.js';
import type { TraceSpan } from '../observability/spans.js';
import { upstreamRequestHeaders } from '../proxy/headers.js';
import type { ResponseEditor } from '../proxy/message-editor.js';
import type { Backend, Backends } from '../server/backends.js';
import { type ClientAddress, resolveClientAddress, type TrustedProxies } from './client-address.js';
import { answerPreflight, corsHeaders, isPreflight } from './cors.js';
import type { OriginGuard } from './origin-guard.js';
import { checkRequestTarget } from './request-target.js';

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

/** What one request accumulated on its way through the stages, for the access log, metrics and span. */
export interface RequestScope {
  id: string;
  /** `performance.now()` at arrival, in milliseconds. */
  start: number;
  /** A WebSocket upgrade (answered on the raw socket) rather than an ordinary request. */
  upgrade: boolean;
  route: RouteClass;
  client?: ClientAddress;
  /** CORS headers every answer to this request carries (none for upgrades and refused requests). */
  cors: HeaderList;
  upstreamStatus?: number;
  outcome?: string;
  auth?: string;
  /** The request's SERVER span; none while tracing is off. */
  trace?: TraceSpan;
  /** The MCP server the request is for, once the path named one. */
  server?: ServerConfig;
}

/**
 * What the stages decided about a request; the two writers (an HTTP response, a raw socket)
 * carry it out.
 * - `refuse`: an error the proxy answers itself (400, 403, 404, 429, 503).
 * - `serve`: a proxy-owned endpoint (health, metrics, admin, login and OAuth routes, preflights).
 * - `challenge`: the authentication stage's answer (401 + WWW-Authenticate, 302 to login, 403).
 * - `forward`: to the server's backend, with this request target and these request headers.
 */
export type Admission =
  | { kind: 'refuse'; answer: ErrorAnswer }
  | { kind: 'serve'; handler: RouteHandler; ctx: AuthContext }
  | { kind: 'challenge'; challenge: Challenge }
  | { kind: 'reply'; status: number; payload: unknown }
  | {
      kind: 'forward';
      backend: Backend;
      target: string;
      headers: string[];
      body?: Buffer;
      editor?: ResponseEditor;
    };

export interface AdmissionDeps {
  config: Config;
  metrics: Metrics;
  guard: OriginGuard;
  trusted: TrustedProxies;
  authenticator: Authenticator;
  /** `requests` (RATE_LIMIT_PER_MINUTE) is spent here; `auth` by the login endpoints. */
  rateLimits: RateLimits;
  /** `/health` and the metrics path, answered before any check (load balancers, Prometheus). */
  monitoring: ReadonlyMap<string, { route: RouteClass; handler: RouteHandler }>;
  /**
   * `/admin` and below (ADMIN_ENABLED): served by this handler; `'elsewhere'` when ADMIN_LISTEN
   * serves them, so this listener answers 404 (and never forwards them); undefined when off, so
   * /admin is then a path like any other.
   */
  admin?: RouteHandler | 'elsewhere';
  /** ADMIN_LISTEN's listener: the admin surface and nothing else (no monitoring, login or backend). */
  adminOnly?: boolean;
  /** True once shutdown began: new WebSocket tunnels are refused. */
  draining: () => boolean;
  /** Header names a client may not send: identity headers (and trace context while tracing). */
  ownedHeaders: ReadonlySet<string>;
  /** The audit trail of MCP calls the inspection stage sees. */
  mcpCalls?: McpCallAudit;
  /** The MCP servers behind the proxy: which one a path is for. */
  backends: Backends;
}

/**
 * The ordered stages every request passes, HTTP or WebSocket upgrade, top to bottom:
 *
 *  1. request target    strict origin-form path checks (400)
 *  2. upgrade kind      only WebSocket upgrades (400)
 *  3. monitoring        /health and /metrics, answered at once
 *  4. Origin/Host guard foreign Host or Origin refused (403)
 *  5. admin             /admin and below, which authenticates its own callers (404 when
 *                       ADMIN_LISTEN serves them: its listener passes stages 1, 2, 4 and 5 only)
 *  6. CORS              preflights answered; the headers every later answer carries
 *  7. owned routes      /login, /callback, /logout, /authorize, /token, ... (their own budgets)
 *     server            which MCP server the path is for (404 when none: several servers)
 *  8. authentication    the authenticator's decision for that server, counted in auth_requests_total
 *  9. rate limit        RATE_LIMIT_PER_MINUTE per user, or per client IP when anonymous (429)
 * 10. challenge         the authenticator's refusal
 *     MCP inspection    mcp_access: calls refused, step-up asked, lists filtered (POST on MCP_PATH)
 * 11. forward           identity and forwarding headers added; the rest of the client's cleaned
 *
 * With mcp_access rules, a POST on the MCP path also passes the MCP inspection stage between 10
 * and 11 (mcp/inspection.ts): its JSON-RPC body is judged with the identity known, before
 * anything reaches the backend.
 *
 * Proxy-owned endpoints take no WebSocket upgrades. A decision made synchronously (bypass
 * mode, no rate limit) is returned synchronously, so the request reaches the backend in the
 * same tick, without a detour through the microtask queue.
 */
export function admit(
  deps: AdmissionDeps,
  req: IncomingMessage,
  scope: RequestScope,
): Admission | Promise<Admission> {
  const checked = checkRequestTarget(req.url);
  if (!checked.ok) return refuse(400, 'invalid_request', checked.reason);
  if (scope.upgrade && (req.headers.upgrade ?? '').toLowerCase() !== 'websocket') {
    return refuse(400, 'invalid_request', 'only WebSocket upgrades are supported');
  }
  const { path, search } = checked.target;
  if (deps.adminOnly) return admitAdminOnly(deps, req, scope, path, search);

  const monitoring = deps.monitoring.get(path);
  if (monitoring) {
    scope.route = monitoring.route;
    return (
      refuseUpgrade(scope, path) ?? serve(monitoring.handler, authContext(deps, req, scope, path, search))
    );
  }

  const { authenticator } = deps;
  const publicEndpoint = authenticator.publicPaths?.has(path) === true;
  const refusal = deps.guard.check(req, publicEndpoint);
  if (refusal) {
    scope.route = 'forbidden';
    return refuse(403, 'forbidden', refusal);
  }
  if (scope.upgrade && deps.draining()) {
    return refuse(503, 'shutting_down', 'The proxy is shutting down.');
  }
  if (deps.admin !== undefined && isAdminPath(path)) {
    scope.route = 'admin';
    // The admin surface lives on ADMIN_LISTEN: here /admin is nothing, and it stays the proxy's
    // path, so a backend cannot serve a look-alike admin page at the public origin either.
    if (deps.admin === 'elsewhere') return refuse(404, 'not_found', 'There is nothing at this path.');
    // No CORS: the guard above already refused foreign Hosts and Origins.
    return refuseUpgrade(scope, path) ?? serve(deps.admin, authContext(deps, req, scope, path, search));
  }

  // Browser-based clients (MCP Inspector) call across origins: an allowed origin may read the
  // responses, and preflights are answered here (they carry no credentials).
  if (!scope.upgrade) {
    scope.cors = corsHeaders(req.headers.origin, publicEndpoint);
    if (isPreflight(req)) {
      scope.route = publicEndpoint ? 'auth' : 'preflight';
      const cors = scope.cors;
      return serve(
        async (_req, res) => answerPreflight(res, cors),
        authContext(deps, req, scope, path, search),
      );
    }
  }

  const route = authenticator.routes?.get(path);
  if (route) {
    scope.route = 'auth';
    const refused = refuseUpgrade(scope, path);
    if (refused) return refused;
    // Owned endpoints take no identity here: those without a login budget of their own
    // (/logout, discovery, JWKS) spend the client IP's.
    const context = authContext(deps, req, scope, path, search);
    const limiter = deps.rateLimits.requests;
    if (!limiter || authenticator.authLimitedPaths?.has(path)) return serve(route, context);
    return spend(limiter, `ip:${addressBudget(context.clientIp)}`, () => serve(route, context));
  }

  const backend = deps.backends.match(path);
  if (backend === undefined) {
    return refuse(404, 'not_found', `No MCP server is served at ${path}.`);
  }
  const { server } = backend;
  scope.server = server;
  const mcpPath = server.path;
  const mcpEndpoint = path === mcpPath || mcpPath === '/' || path.startsWith(`${mcpPath}/`);
  if (!scope.upgrade) scope.route = mcpEndpoint ? 'mcp' : 'proxied';
  else if (backend.bridge) {
    return refuse(
      400,
      'invalid_request',
      'A stdio MCP server speaks Streamable HTTP: no WebSocket upgrades.',
    );
  } else if (mcpEndpoint && server.access !== undefined) {
    // MCP speaks HTTP: a tunnel would carry JSON-RPC past the inspection stage.
    return refuse(
      400,
      'invalid_request',
      'The MCP endpoint takes no WebSocket upgrades while mcp_access applies.',
    );
  }
  const request: ServerRequest = { backend, target: deps.backends.target(backend, path, search) };
  const context = authContext(deps, req, scope, path, search);
  context.server = server;
  const pending = authenticator.authenticate(req, context);
  return isPromise(pending)
    ? pending.then((decision) => afterAuthentication(deps, req, scope, request, decision))
    : afterAuthentication(deps, req, scope, request, pending);
}

/**
 * The stages of ADMIN_LISTEN's listener: its own Host and Origin guard (ADMIN_PUBLIC_URL), then
 * /admin and below; anything else is 404, the backend being the main listener's only.
 */
function admitAdminOnly(
  deps: AdmissionDeps,
  req: IncomingMessage,
  scope: RequestScope,
  path: string,
  search: string,
): Admission {
  const refusal = deps.guard.check(req);
  if (refusal) {
    scope.route = 'forbidden';
    return refuse(403, 'forbidden', refusal);
  }
  if (typeof deps.admin !== 'function' || !isAdminPath(path)) {
    return refuse(404, 'not_found', 'This listener serves only /admin.');
  }
  scope.route = 'admin';
  return refuseUpgrade(scope, path) ?? serve(deps.admin, authContext(deps, req, scope, path, search));
}

/** The server a request is for, and the request target its backend gets. */
interface ServerRequest {
  backend: Backend;
  target: string;
}

/** Stages 8 to 11: the decision counted, the request's budget spent, then challenged or forwarded. */
function afterAuthentication(
  deps: AdmissionDeps,
  req: IncomingMessage,
  scope: RequestScope,
  request: ServerRequest,
  decision: AuthDecision,
): Admission | Promise<Admission> {
  deps.metrics.authRequests.inc({
    mode: deps.authenticator.mode,
    result: decision.kind === 'allow' ? 'allowed' : decision.challenge.result,
  });
  const limiter = deps.rateLimits.requests;
  if (!limiter) return decided(deps, req, scope, request, decision);
  // After authentication, so a user's requests count as theirs whatever their address;
  // challenged requests count against their client IP, so hammering is refused too.
  const budget =
    decision.kind === 'allow' && decision.identity
      ? `user:${decision.identity.user}`
      : `ip:${addressBudget(resolved(deps, req, scope).ip)}`;
  return spend(limiter, budget, () => decided(deps, req, scope, request, decision));
}

/** Stages 10 and 11: the authenticator's refusal, or the request on its way to the backend. */
function decided(
  deps: AdmissionDeps,
  req: IncomingMessage,
  scope: RequestScope,
  request: ServerRequest,
  decision: AuthDecision,
): Admission | Promise<Admission> {
  if (decision.kind === 'challenge') {
    scope.auth = decision.challenge.result;
    return { kind: 'challenge', challenge: decision.challenge };
  }
  if (scope.trace?.recording && decision.identity) {
    scope.trace.setAttributes({ 'enduser.id': decision.identity.user });
  }
  const client = resolved(deps, req, scope);
  const headers = backendHeaders(deps, req, client, scope.id, decision);
  const { access } = request.backend.server;
  if (access !== undefined && scope.route === 'mcp' && req.method === 'POST') {
    return inspect(deps, req, scope, access, decision, request, headers);
  }
  return { kind: 'forward', backend: request.backend, target: request.target, headers };
}

/**
 * The MCP inspection stage (mcp_access): the JSON-RPC body judged against the rules, the
 * backend given exactly the judged bytes, list results filtered on their way back.
 */
async function inspect(
  deps: AdmissionDeps,
  req: IncomingMessage,
  scope: RequestScope,
  access: McpAccessPolicy,
  decision: Extract<AuthDecision, { kind: 'allow' }>,
  request: ServerRequest,
  headers: string[],
): Promise<Admission> {
  const { identity } = decision;
  const caller = identity && {
    email: identity.email,
    emailVerified: identity.emailVerified,
    groups: identity.groups ?? [],
    scopes: decision.scopes,
  };
  const { backend, target } = request;
  const audit = deps.mcpCalls && {
    calls: deps.mcpCalls,
    caller: { user: identity?.user, clientId: decision.clientId, server: backend.server.name },
  };
  const { maxBodyBytes } = deps.config.mcp;
  const inspection = await inspectMcpRequest(req, access, caller, maxBodyBytes, audit, scope.trace);
  switch (inspection.kind) {
    case 'forward':
      return { kind: 'forward', backend, target, headers, body: inspection.body, editor: inspection.editor };
    case 'refuse':
      return { kind: 'refuse', answer: inspection.answer };
    case 'reply':
      return { kind: 'reply', status: inspection.status, payload: inspection.payload };
    case 'step_up': {
      const { required, description } = inspection;
      const challenge = deps.authenticator.insufficientScope?.(required, description, backend.server);
      if (challenge) return { kind: 'challenge', challenge };
      return refuse(403, 'insufficient_scope', inspection.description);
    }
  }
}

/** Spends one request of `key`'s RATE_LIMIT_PER_MINUTE budget, then goes on; over it, 429 and nothing else. */
function spend(
  limiter: RateLimiter,
  key: string,
  next: () => Admission | Promise<Admission>,
): Promise<Admission> {
  return limiter.consume(key).then((verdict): Admission | Promise<Admission> => {
    if (verdict.allowed) return next();
    return { kind: 'refuse', answer: tooManyRequests(verdict.retryAfterSeconds) };
  });
}

/** The proxy's own endpoints take no WebSocket upgrades: the refusal for an upgrade, else nothing. */
function refuseUpgrade(scope: RequestScope, path: string): Admission | undefined {
  if (!scope.upgrade) return undefined;
  return refuse(404, 'not_found', `${path} is the proxy's own endpoint and takes no WebSocket upgrades.`);
}

function serve(handler: RouteHandler, ctx: AuthContext): Admission {
  return { kind: 'serve', handler, ctx };
}

function refuse(status: number, error: string, description: string): Admission {
  return { kind: 'refuse', answer: { status, error, description } };
}

function authContext(
  deps: AdmissionDeps,
  req: IncomingMessage,
  scope: RequestScope,
  path: string,
  search: string,
): AuthContext {
  return { clientIp: resolved(deps, req, scope).ip, requestId: scope.id, path, search, trace: scope.trace };
}

/** The client's address, from the socket and (behind TRUSTED_PROXIES) the forwarding headers; once. */
function resolved(deps: AdmissionDeps, req: IncomingMessage, scope: RequestScope): ClientAddress {
  scope.client ??= resolveClientAddress(req, deps.trusted);
  return scope.client;
}

/** What the backend gets: the client's headers, cleaned, plus forwarding and identity headers. */
function backendHeaders(
  deps: AdmissionDeps,
  req: IncomingMessage,
  client: ClientAddress,
  requestId: string,
  decision: Extract<AuthDecision, { kind: 'allow' }>,
): string[] {
  const add: Array<[string, string]> = [
    ['x-forwarded-for', client.forwardedFor],
    ['x-forwarded-proto', client.forwardedProto],
    ['x-forwarded-host', client.forwardedHost],
    ['x-request-id', requestId],
  ];
  const { identity } = decision;
  if (identity) {
    const names = deps.config.auth.identityHeaders;
    add.push([names.user, identity.user]);
    if (identity.email) add.push([names.email, identity.email]);
    if (identity.groups?.length) add.push([names.groups, identity.groups.join(',')]);
  }
  if (decision.extraHeaders) add.push(...decision.extraHeaders);
  return upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
    dropAuthorization: decision.credentialsConsumed,
    owned: deps.ownedHeaders,
    stripCookies: deps.authenticator.cookieNames,
    add,
  });
}

/** `/admin` or a path under it (the proxy's own while ADMIN_ENABLED is on). */
function isAdminPath(path: string): boolean {
  return path.startsWith('/admin') && (path.length === 6 || path[6] === '/');
}

export function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as Promise<T>)?.then === 'function';
}
