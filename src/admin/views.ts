import { createHash } from 'node:crypto';
import type { OAuthClient } from '../auth/facade/clients.js';
import type { RefreshFamily } from '../auth/tokens/refresh-tokens.js';
import type { SigningKeysStatus } from '../auth/tokens/signing-keys.js';
import type { ErrorAnswer, HeaderList } from '../http/errors.js';
import type { McpCallOutcome } from '../mcp/call-audit.js';
import type { ListedSession } from '../session/sessions.js';
import type { AdminCaller } from './auth.js';

/**
 * What the admin API reads from a request and shows in its answers: the listing queries and
 * pages, the views of callers, sessions, clients and grants (never a token, a hash of one, a
 * secret or a raw session id), and the refusals it answers with.
 */

/**
 * A short, stable, non-reversible handle for a store id (a session id is what the cookie
 * carries, signed): the API shows and accepts this instead, so no listing holds a value that
 * could be replayed.
 */
export function publicHandle(kind: 'session' | 'grant', id: string): string {
  return createHash('sha256')
    .update(`mcp-oidc-proxy admin ${kind}\u0000${id}`)
    .digest('base64url')
    .slice(0, 22);
}

const DEFAULT_LIMIT = 200;
const MAX_LIMIT = 1000;

/** A request the API refuses: status, OAuth-style error code and description (and extra headers). */
export class AdminError extends Error implements ErrorAnswer {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: HeaderList = [],
  ) {
    super(description);
  }
}

export const methodNotAllowed = (methods: string): AdminError =>
  new AdminError(405, 'method_not_allowed', `Use ${methods}.`, [['allow', methods]]);

/** A query parameter given at most once; empty counts as absent. */
export function single(params: URLSearchParams, name: string): string | undefined {
  const values = params.getAll(name);
  if (values.length > 1) throw new AdminError(400, 'invalid_request', `the ${name} parameter is repeated`);
  return values[0] || undefined;
}

export const notFound = (what: string): AdminError => new AdminError(404, 'not_found', what);

/** Query parameters the listings take; each at most once. */
interface ListQuery {
  q: string | undefined;
  user: string | undefined;
  clientId: string | undefined;
  limit: number;
}

export function listQuery(search: string): ListQuery {
  const params = new URLSearchParams(search);
  const one = (name: string): string | undefined => single(params, name);
  const limitText = one('limit');
  const limit = limitText === undefined ? DEFAULT_LIMIT : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new AdminError(400, 'invalid_request', `limit must be a whole number from 1 to ${MAX_LIMIT}`);
  }
  return { q: one('q')?.toLowerCase(), user: one('user'), clientId: one('client_id'), limit };
}

const CALL_OUTCOMES: readonly McpCallOutcome[] = ['ok', 'error', 'tool_error', 'denied'];

/** The listing parameters, and those only the MCP calls take: `outcome` and `name` (exact). */
export function callsQuery(search: string): ListQuery & { outcome?: McpCallOutcome; name?: string } {
  const params = new URLSearchParams(search);
  const outcome = single(params, 'outcome');
  if (outcome !== undefined && !CALL_OUTCOMES.includes(outcome as McpCallOutcome)) {
    throw new AdminError(400, 'invalid_request', `outcome must be one of ${CALL_OUTCOMES.join(', ')}`);
  }
  return {
    ...listQuery(search),
    outcome: outcome as McpCallOutcome | undefined,
    name: single(params, 'name'),
  };
}

/** Whether any of `fields` contains the search text (case-insensitive). */
export function matchesText(q: string | undefined, ...fields: Array<string | undefined>): boolean {
  return q === undefined || fields.some((f) => f?.toLowerCase().includes(q));
}

export function page<T>(items: T[], limit: number): { items: T[]; total: number; truncated: boolean } {
  return { items: items.slice(0, limit), total: items.length, truncated: items.length > limit };
}

const iso = (epochMs: number): string => new Date(epochMs).toISOString();

export function callerView(caller: AdminCaller): Record<string, unknown> {
  return caller.kind === 'token'
    ? { kind: 'token' }
    : { kind: 'session', subject: caller.sub, email: caller.email, name: caller.name };
}

export function sessionView(s: ListedSession): Record<string, unknown> {
  const { identity, provider, createdAt } = s.record;
  return {
    id: publicHandle('session', s.id),
    subject: identity.sub,
    email: identity.email,
    name: identity.name,
    username: identity.username,
    groups: identity.groups,
    provider,
    created_at: iso(createdAt),
    last_seen_at: iso(s.lastSeenAt),
    expires_at: iso(s.expiresAt),
  };
}

export function clientView(c: OAuthClient, grants: RefreshFamily[]): Record<string, unknown> {
  return {
    client_id: c.client_id,
    client_name: c.client_name,
    client_uri: c.client_uri,
    source: c.source,
    confidential: c.confidential,
    redirect_uris: c.redirect_uris,
    grant_types: c.grant_types,
    created_at: iso(c.client_id_issued_at * 1000),
    active_grants: grants.length,
    users: new Set(grants.map((f) => f.sub)).size,
    deletable: c.source !== 'pre-registered',
  };
}

export function grantView(f: RefreshFamily, clientName: string | undefined): Record<string, unknown> {
  return {
    id: publicHandle('grant', f.id),
    subject: f.sub,
    email: f.email,
    client_id: f.clientId,
    client_name: clientName,
    scope: f.scope,
    created_at: iso(f.createdAt),
    expires_at: iso(f.expiresAt),
  };
}

/** The signing keys: kids (public: they are in every token and in /jwks.json) and times, no key material. */
export function signingKeysView(status: SigningKeysStatus): Record<string, unknown> {
  const iso = (ms: number): string => new Date(ms).toISOString();
  return {
    active: { kid: status.active.kid, activated_at: iso(status.active.activatedAt) },
    next: status.next
      ? {
          kid: status.next.kid,
          published_at: iso(status.next.publishedAt),
          signs_from: iso(status.next.signsFrom),
        }
      : null,
    retired: status.retired.map((k) => ({ kid: k.kid, published_until: iso(k.publishedUntil) })),
    rotation_days: status.rotationPeriodMs / (24 * 3600 * 1000),
  };
}
