import type { IncomingMessage, ServerResponse } from 'node:http';
import { type AuditFields, AuditLog } from '../auth/audit.js';
import type { AuthContext } from '../auth/authenticator.js';
import type { BrowserAuthResult } from '../auth/browser/browser-login.js';
import type { AuthorizationServer } from '../auth/facade/authorization-server.js';
import { TemporarilyUnavailableError } from '../auth/facade/errors.js';
import type { RefreshFamily } from '../auth/tokens/refresh-tokens.js';
import type { Config } from '../config/types.js';
import { sendError } from '../http/errors.js';
import { sendJson } from '../http/respond.js';
import { budgetOptions, createRateLimiter } from '../limits/rate-limit.js';
import type { McpCallAudit } from '../mcp/call-audit.js';
import type { HealthChecker } from '../observability/health.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import type { SessionManager } from '../session/sessions.js';
import type { ConfiguredStateStore } from '../store/index.js';
import { RATE_LIMIT_PREFIXES } from '../store/key-prefixes.js';
import { StoreUnavailableError } from '../store/state-store.js';
import { ADMIN_FAILED_AUTH_PER_MINUTE, AdminAuthenticator } from './auth.js';
import { ADMIN_CSP, ADMIN_PAGE_CSS, ADMIN_PAGE_HTML, ADMIN_PAGE_JS } from './page.js';
import { type ServerSource, StatusReporter } from './status.js';
import {
  AdminError,
  callerView,
  callsQuery,
  clientView,
  grantView,
  listQuery,
  matchesText,
  methodNotAllowed,
  notFound,
  page,
  publicHandle,
  sessionView,
  signingKeysView,
  single,
} from './views.js';

/** What the admin API uses of AUTH_MODE=oidc, as server/oidc.ts builds it. */
export interface AdminOidcParts {
  /** Its kind is reported; its Redis connection, when there is one, counts failed admin logins. */
  store: ConfiguredStateStore;
  sessions: SessionManager;
  audit: AuditLog;
  /** Clients and grants are listed, and users and clients revoked, through it. */
  authorizationServer: AuthorizationServer;
  /** The browser session check: members of ADMIN_GROUPS sign in this way. */
  authenticator: { authenticateBrowser(req: IncomingMessage, ctx: AuthContext): Promise<BrowserAuthResult> };
}

export interface AdminDeps {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  health: HealthChecker;
  /** The MCP servers behind the proxy (their health, breakers and stdio children). */
  backends: { all(): readonly ServerSource[] };
  /** The effective public URL (with the real port when SERVER_PORT=0): where users sign in. */
  publicUrl: URL;
  /**
   * Where the admin surface is reached when it has its own listener (ADMIN_LISTEN, with the real
   * port): its origin, not PUBLIC_URL's, is the one cookie-authenticated calls must come from.
   */
  adminUrl?: URL;
  authMode: string;
  version: string;
  /** AUTH_MODE=oidc; absent in bypass mode, where there are no sessions, clients or tokens. */
  oidc?: AdminOidcParts;
  /** The MCP calls recorded (with `mcp_access`), in either mode. */
  mcpCalls?: Pick<McpCallAudit, 'recent'>;
}

/**
 * The admin API and monitoring page (ADMIN_ENABLED): `GET /admin` (the page, its script and
 * style), and under `/admin/api/` status, the recent MCP calls, listings of sessions, clients and
 * grants, and their revocation, plus revoking everything of one user. Every API call is authenticated
 * (auth.ts); every change is audited. Responses never hold a token, a hash of one, a secret or
 * a raw session id.
 */
export class AdminApi {
  private readonly auth: AdminAuthenticator;
  private readonly audit: AuditLog;
  private readonly status: StatusReporter;
  private readonly publicOrigin: string;
  private readonly pageHtml: string;

  constructor(private readonly deps: AdminDeps) {
    // In bypass mode there is no audit log to share: admin actions get their own.
    this.audit = deps.oidc?.audit ?? new AuditLog(deps.logger);
    this.publicOrigin = (deps.adminUrl ?? deps.publicUrl).origin;
    this.pageHtml = deps.adminUrl ? pageWithSignInAt(deps.publicUrl) : ADMIN_PAGE_HTML;
    const store = deps.oidc?.store;
    this.auth = new AdminAuthenticator({
      token: deps.config.admin.token,
      groups: deps.config.admin.groups,
      browser: deps.oidc?.authenticator,
      // Counted in the session store's Redis when there is one, so all instances share the budget.
      failures: createRateLimiter(
        budgetOptions(
          ADMIN_FAILED_AUTH_PER_MINUTE,
          RATE_LIMIT_PREFIXES.adminAuth,
          store?.kind === 'redis' ? store.sharedCounters : undefined,
        ),
      ),
      audit: this.audit,
      publicOrigin: this.publicOrigin,
    });
    this.status = new StatusReporter({
      config: deps.config,
      metrics: deps.metrics,
      health: deps.health,
      servers: () => deps.backends.all(),
      authMode: deps.authMode,
      version: deps.version,
      storeKind: store?.kind,
      recentAudit: () => this.audit.recent(),
    });
  }

  /** Answers a request for `/admin` or a path under it; the pipeline already set the common headers. */
  readonly handle = async (req: IncomingMessage, res: ServerResponse, ctx: AuthContext): Promise<void> => {
    res.setHeader('Content-Security-Policy', ADMIN_CSP);
    // Same-origin: the page's own changes then carry its Origin (no-referrer would send `null`).
    res.setHeader('Referrer-Policy', 'same-origin');
    const { path } = ctx;
    if (path === '/admin' || path === '/admin/') return this.asset(req, res, ctx, this.pageHtml, 'text/html');
    if (path === '/admin/app.js') return this.asset(req, res, ctx, ADMIN_PAGE_JS, 'text/javascript');
    if (path === '/admin/app.css') return this.asset(req, res, ctx, ADMIN_PAGE_CSS, 'text/css');
    if (!path.startsWith('/admin/api/')) {
      return sendError(res, notFound('There is nothing at this admin path.'), ctx.requestId);
    }
    try {
      await this.api(req, res, ctx);
    } catch (error) {
      if (res.headersSent) throw error;
      if (error instanceof AdminError) return sendError(res, error, ctx.requestId);
      if (error instanceof StoreUnavailableError || error instanceof TemporarilyUnavailableError) {
        this.deps.logger.error({ req_id: ctx.requestId, err: error.message }, 'admin: store unavailable');
        const unavailable = 'The session store is unavailable; try again shortly.';
        return sendError(res, new TemporarilyUnavailableError(unavailable), ctx.requestId);
      }
      throw error;
    }
  };

  private asset(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: AuthContext,
    body: string,
    type: string,
  ): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return sendError(res, methodNotAllowed('GET, HEAD'), ctx.requestId);
    }
    res.writeHead(200, {
      'Content-Type': `${type}; charset=utf-8`,
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'no-cache',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private async api(req: IncomingMessage, res: ServerResponse, ctx: AuthContext): Promise<void> {
    // The API is for the proxy's own page (and scripts, which send no Origin): a page of any
    // other origin, ALLOWED_ORIGINS included, is refused even before authentication.
    const origin = req.headers.origin;
    const site = req.headers['sec-fetch-site'];
    if (
      (origin !== undefined && origin !== 'null' && origin !== this.publicOrigin) ||
      site === 'cross-site'
    ) {
      throw new AdminError(403, 'forbidden', 'The admin API answers only its own origin.');
    }
    const verdict = await this.auth.authenticate(req, ctx);
    if (!verdict.ok) return sendError(res, verdict.refusal, ctx.requestId);
    const { caller } = verdict;
    const [collection, ...rest] = ctx.path.slice('/admin/api/'.length).split('/');
    if (rest.length > 1) throw notFound('There is no such admin endpoint.');
    let id: string | undefined;
    try {
      id = rest[0] === undefined ? undefined : decodeURIComponent(rest[0]);
    } catch {
      throw new AdminError(400, 'invalid_request', 'the id in the path is not valid percent-encoding');
    }
    if (id === '') throw notFound('There is no such admin endpoint.');
    const method = req.method ?? 'GET';
    const allow = (methods: string): never => {
      throw methodNotAllowed(methods);
    };

    if (collection === 'status' && id === undefined) {
      if (method !== 'GET') allow('GET');
      return this.json(res, 200, { ...(await this.status.report()), caller: callerView(caller) });
    }
    if (collection === 'calls' && id === undefined) {
      if (method !== 'GET') allow('GET');
      return this.listCalls(res, ctx);
    }
    const known = ['sessions', 'clients', 'tokens', 'users', 'signing-keys'];
    if (collection === undefined || !known.includes(collection))
      throw notFound('There is no such admin endpoint.');
    const oidc = this.deps.oidc;
    if (!oidc) {
      throw notFound('AUTH_MODE=bypass: the proxy keeps no sessions, clients or tokens.');
    }
    const audit = (event: Parameters<AuditLog['record']>[0], fields: AuditFields): void =>
      this.audit.record(event, {
        ...fields,
        admin: caller.kind === 'token' ? 'token' : caller.sub,
        ip: ctx.clientIp,
      });
    const query = new URLSearchParams(ctx.search);
    const server = oidc.authorizationServer;

    switch (collection) {
      case 'sessions':
        if (id === undefined)
          return method === 'GET' ? this.listSessions(res, oidc.sessions, ctx) : allow('GET');
        return method === 'DELETE' ? this.revokeSession(res, oidc.sessions, id, audit) : allow('DELETE');
      case 'clients': {
        if (id === undefined && method === 'GET') return this.listClients(res, server, ctx);
        const clientId = id ?? single(query, 'client_id');
        if (method !== 'DELETE') return allow(id === undefined ? 'GET, DELETE' : 'DELETE');
        if (clientId === undefined) {
          throw new AdminError(400, 'invalid_request', 'name the client: /admin/api/clients/{client_id}');
        }
        return this.revokeClient(res, server, clientId, audit);
      }
      case 'tokens':
        if (id === undefined) return method === 'GET' ? this.listTokens(res, server, ctx) : allow('GET');
        return method === 'DELETE' ? this.revokeGrant(res, server, id, audit) : allow('DELETE');
      case 'signing-keys':
        if (id !== undefined) throw notFound('There is no such admin endpoint.');
        if (method === 'GET') return this.json(res, 200, signingKeysView(await server.signingKeys.status()));
        return method === 'POST' ? this.rotateSigningKey(res, server, audit) : allow('GET, POST');
      default: {
        if (method !== 'DELETE') return allow('DELETE');
        const subject = id ?? single(query, 'subject');
        if (subject === undefined) {
          throw new AdminError(400, 'invalid_request', 'name the user: /admin/api/users/{subject}');
        }
        return this.revokeUser(res, server, subject, audit);
      }
    }
  }

  /** The recorded MCP calls, newest first: never their arguments (only their size) or a token. */
  private listCalls(res: ServerResponse, ctx: AuthContext): void {
    const query = callsQuery(ctx.search);
    const listed = (this.deps.mcpCalls?.recent() ?? [])
      .filter((c) => query.user === undefined || c.sub === query.user)
      .filter((c) => query.clientId === undefined || c.client_id === query.clientId)
      .filter((c) => query.outcome === undefined || c.outcome === query.outcome)
      .filter((c) => query.name === undefined || c.name === query.name)
      .filter((c) => matchesText(query.q, c.sub, c.client_id, c.name, c.method));
    const { items, total, truncated } = page(listed, query.limit);
    this.json(res, 200, { calls: items, total, truncated });
  }

  private async listSessions(res: ServerResponse, sessions: SessionManager, ctx: AuthContext): Promise<void> {
    const query = listQuery(ctx.search);
    const listed = (await sessions.list())
      .filter((s) => query.user === undefined || s.record.identity.sub === query.user)
      .filter((s) => {
        const { sub, email, name, username } = s.record.identity;
        return matchesText(query.q, sub, email, name, username);
      })
      .sort((a, b) => b.lastSeenAt - a.lastSeenAt);
    const { items, total, truncated } = page(listed, query.limit);
    this.json(res, 200, { sessions: items.map(sessionView), total, truncated });
  }

  private async revokeSession(
    res: ServerResponse,
    sessions: SessionManager,
    handle: string,
    audit: (event: 'admin_session_revoked', fields: AuditFields) => void,
  ): Promise<void> {
    const session = (await sessions.list()).find((s) => publicHandle('session', s.id) === handle);
    if (!session) throw notFound('No live session has this id.');
    await sessions.destroy(session.id);
    const { sub, email } = session.record.identity;
    audit('admin_session_revoked', { sub, email, session: handle });
    this.json(res, 200, { revoked: 'session', id: handle, subject: sub });
  }

  private async listClients(
    res: ServerResponse,
    server: AuthorizationServer,
    ctx: AuthContext,
  ): Promise<void> {
    const query = listQuery(ctx.search);
    const [clients, families] = await Promise.all([server.clients.list(), server.grants.list()]);
    const grants = new Map<string, RefreshFamily[]>();
    for (const family of families)
      grants.set(family.clientId, [...(grants.get(family.clientId) ?? []), family]);
    const shown = clients
      .filter((c) => query.clientId === undefined || c.client_id === query.clientId)
      .filter(
        (c) => query.user === undefined || (grants.get(c.client_id) ?? []).some((f) => f.sub === query.user),
      )
      .filter((c) => matchesText(query.q, c.client_name, c.client_id))
      .sort((a, b) => b.client_id_issued_at - a.client_id_issued_at);
    const { items, total, truncated } = page(shown, query.limit);
    this.json(res, 200, {
      clients: items.map((c) => clientView(c, grants.get(c.client_id) ?? [])),
      total,
      truncated,
    });
  }

  private async revokeClient(
    res: ServerResponse,
    server: AuthorizationServer,
    clientId: string,
    audit: (event: 'admin_client_revoked', fields: AuditFields) => void,
  ): Promise<void> {
    const revoked = await server.revokeClient(clientId);
    if (revoked.registration === 'pre_registered') {
      throw new AdminError(
        409,
        'conflict',
        `client ${JSON.stringify(clientId)} is pre-registered in MCP_CLIENTS and cannot be deleted here; remove it from the configuration instead`,
      );
    }
    if (
      revoked.registration === 'not_found' &&
      revoked.grantsRevoked === 0 &&
      revoked.consentsRevoked === 0
    ) {
      throw notFound('No client has this id.');
    }
    audit('admin_client_revoked', {
      client_id: clientId,
      client_name: revoked.clientName ?? clientId,
      grants_revoked: revoked.grantsRevoked,
    });
    this.json(res, 200, {
      revoked: 'client',
      client_id: clientId,
      registration_deleted: revoked.registration === 'deleted',
      grants_revoked: revoked.grantsRevoked,
      consents_revoked: revoked.consentsRevoked,
      authorization_codes_revoked: revoked.codesRevoked,
    });
  }

  private async listTokens(
    res: ServerResponse,
    server: AuthorizationServer,
    ctx: AuthContext,
  ): Promise<void> {
    const query = listQuery(ctx.search);
    const [families, clients] = await Promise.all([server.grants.list(), server.clients.list()]);
    const names = new Map(clients.map((c) => [c.client_id, c.client_name]));
    const shown = families
      .filter((f) => query.user === undefined || f.sub === query.user)
      .filter((f) => query.clientId === undefined || f.clientId === query.clientId)
      .filter((f) => matchesText(query.q, f.sub, f.email, f.clientId, names.get(f.clientId)))
      .sort((a, b) => b.createdAt - a.createdAt);
    const { items, total, truncated } = page(shown, query.limit);
    this.json(res, 200, {
      tokens: items.map((f) => grantView(f, names.get(f.clientId))),
      total,
      truncated,
    });
  }

  private async revokeGrant(
    res: ServerResponse,
    server: AuthorizationServer,
    handle: string,
    audit: (event: 'admin_token_revoked', fields: AuditFields) => void,
  ): Promise<void> {
    const family = (await server.grants.list()).find((f) => publicHandle('grant', f.id) === handle);
    if (!family || !(await server.grants.revokeFamily(family.id))) {
      throw notFound('No live grant has this id.');
    }
    audit('admin_token_revoked', { sub: family.sub, client_id: family.clientId, grant: handle });
    this.json(res, 200, { revoked: 'grant', id: handle, subject: family.sub, client_id: family.clientId });
  }

  private async revokeUser(
    res: ServerResponse,
    server: AuthorizationServer,
    subject: string,
    audit: (event: 'admin_user_revoked', fields: AuditFields) => void,
  ): Promise<void> {
    const revoked = await server.revokeUser(subject);
    audit('admin_user_revoked', {
      sub: subject,
      sessions_revoked: revoked.sessionsRevoked,
      grants_revoked: revoked.grantsRevoked,
      consents_revoked: revoked.consentsRevoked,
    });
    this.json(res, 200, {
      revoked: 'user',
      subject,
      sessions_revoked: revoked.sessionsRevoked,
      grants_revoked: revoked.grantsRevoked,
      consents_revoked: revoked.consentsRevoked,
      authorization_codes_revoked: revoked.codesRevoked,
      access_tokens_revoked_before: revoked.accessTokensRevokedBefore.toISOString(),
    });
  }

  /** "Rotate now": a new signing key signs at once (SigningKeys.rotate says why not after a lead). */
  private async rotateSigningKey(
    res: ServerResponse,
    server: AuthorizationServer,
    audit: (event: 'admin_signing_key_rotated', fields: AuditFields) => void,
  ): Promise<void> {
    const previous = await server.signingKeys.activeKid();
    const kid = await server.rotateKeys();
    audit('admin_signing_key_rotated', { kid, previous_kid: previous });
    this.json(res, 200, { rotated: 'signing_key', ...signingKeysView(await server.signingKeys.status()) });
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    sendJson(res, status, body);
  }
}

/**
 * The page as served on ADMIN_LISTEN: sign-in happens at PUBLIC_URL (the login routes are the
 * main listener's), and the admin comes back to the admin URL afterwards.
 */
function pageWithSignInAt(publicUrl: URL): string {
  const login = new URL('/login', publicUrl).href;
  return ADMIN_PAGE_HTML.replace('href="/login?rd=%2Fadmin"', `href="${login}"`);
}
