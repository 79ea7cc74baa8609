/**
 * A local Microsoft Graph: the part the proxy's microsoft preset calls for a user in too many
 * groups for the ID token (Entra ID's "groups overage"), for tests.
 *
 * Graph cannot be reached from the test environment (no network), so this server follows
 * Microsoft's public documentation:
 * - List a user's memberships (direct and transitive), `GET /v1.0/me/transitiveMemberOf`: groups,
 *   directory roles and administrative units; `$select`; `$top` with a default page of 100 and a
 *   maximum of 999; the signed-in user's own memberships need the delegated User.Read at least:
 *   https://learn.microsoft.com/graph/api/user-list-transitivememberof
 * - The OData cast `/transitiveMemberOf/microsoft.graph.group` is an advanced query: it needs the
 *   `ConsistencyLevel: eventual` header and `$count=true`, and without either the request fails:
 *   https://learn.microsoft.com/graph/aad-advanced-queries ("Use of OData cast with transitive
 *   members list"; "Error handling for advanced queries on directory objects")
 * - Each object of a directoryObject collection comes with its `@odata.type`; objects the token may
 *   not read in full come with `@odata.type` and `id` only ("limited information returned for
 *   inaccessible member objects"): https://learn.microsoft.com/graph/permissions-overview
 * - Paging: while more results remain, `@odata.nextLink` holds the absolute URL of the next page,
 *   with the query's other parameters and a `$skiptoken`; clients follow it until it is absent:
 *   https://learn.microsoft.com/graph/paging
 * - Errors: the HTTP status and `{"error": {"code", "message", "innerError": {"date",
 *   "request-id", "client-request-id"}}}`; 401 for missing or invalid authentication, 403 for a
 *   token without the permission (`Authorization_RequestDenied`, "Insufficient privileges to
 *   complete the operation."): https://learn.microsoft.com/graph/errors
 * - Throttling: 429 Too Many Requests with a suggested wait in `Retry-After` (seconds):
 *   https://learn.microsoft.com/graph/throttling
 *
 * Where the documentation is silent the choice is marked "assumption" below. Graph validates the
 * JWT Entra issued (signature, audience, `scp`); this one asks the token's issuer, the dev IdP,
 * through `verifyToken` (its userinfo endpoint, see `userinfoVerifier`), so a token the IdP
 * would not accept is refused here too.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type Listening, listen } from './servers.js';

export type GraphObjectType = 'group' | 'directoryRole' | 'administrativeUnit';

export interface GraphMembership {
  type: GraphObjectType;
  /** Object id (a GUID in Entra ID). */
  id: string;
}

export interface GraphSimOptions {
  /** The subject of the user an access token belongs to; undefined when Graph would refuse it. */
  verifyToken(token: string): Promise<string | undefined>;
  /** Each user's memberships, direct and transitive, by subject. */
  memberships?: Record<string, GraphMembership[]>;
}

export interface GraphSimRequest {
  /** Epoch ms of arrival. */
  at: number;
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
}

/** An error Graph answers with. */
export interface GraphFault {
  status: number;
  code: string;
  message: string;
  /** The Retry-After header, when any. */
  retryAfter?: string;
}

/** Faults as Graph documents them. */
export const GRAPH_FAULTS = {
  insufficientPrivileges: {
    status: 403,
    code: 'Authorization_RequestDenied',
    message: 'Insufficient privileges to complete the operation.',
  },
  // Assumption: the code and message of a throttled directory read (the guidance shows the status
  // and the header; the body varies by service).
  throttled: (retryAfterSeconds: number): GraphFault => ({
    status: 429,
    code: 'TooManyRequests',
    message: 'Too many requests. Please retry after the time given in Retry-After.',
    retryAfter: String(retryAfterSeconds),
  }),
  // Assumption: the code of an internal error (the errors page lists the status only).
  internal: { status: 500, code: 'generalException', message: 'An internal server error occurred.' },
} satisfies Record<string, GraphFault | ((n: number) => GraphFault)>;

export interface GraphSim {
  /** The Graph base URL (MICROSOFT_GRAPH_URL). */
  url: string;
  /** Every request received, in order. */
  requests: GraphSimRequest[];
  setMemberships(sub: string, memberships: GraphMembership[]): void;
  /**
   * Serves pages of at most `size` whatever `$top` asks; undefined = as asked. (Assumption: a
   * service may page below `$top`; the paging guidance has clients follow `@odata.nextLink` rather
   * than count.)
   */
  limitPageSize(size: number | undefined): void;
  /** Answers the next `times` API requests (all, until cleared, by default) with `fault`. */
  fail(fault: GraphFault | undefined, times?: number): void;
  /** While on, API requests are held without an answer (a stalled service). */
  hang(on: boolean): void;
  /** Makes `@odata.nextLink` point at another origin (a misbehaving or tampered service). */
  nextLinksTo(origin: string | undefined): void;
  close(): Promise<void>;
}

const MAX_TOP = 999;
const DEFAULT_TOP = 100;
const TYPES: Record<GraphObjectType, string> = {
  group: '#microsoft.graph.group',
  directoryRole: '#microsoft.graph.directoryRole',
  administrativeUnit: '#microsoft.graph.administrativeUnit',
};

/** A userinfo-based `verifyToken`: the dev IdP says whose token it is. */
export function userinfoVerifier(userinfoUrl: () => string): GraphSimOptions['verifyToken'] {
  return async (token) => {
    const res = await fetch(userinfoUrl(), { headers: { authorization: `Bearer ${token}` } });
    if (!res.ok) {
      await res.body?.cancel();
      return undefined;
    }
    const { sub } = (await res.json()) as { sub?: unknown };
    return typeof sub === 'string' ? sub : undefined;
  };
}

export async function startGraphSim(options: GraphSimOptions): Promise<GraphSim> {
  const memberships = new Map(Object.entries(options.memberships ?? {}));
  const requests: GraphSimRequest[] = [];
  let pageLimit: number | undefined;
  let fault: { fault: GraphFault; left: number } | undefined;
  let hanging = false;
  const held = new Set<ServerResponse>();
  let nextOrigin: string | undefined;
  let baseUrl = '';

  const sendError = (res: ServerResponse, f: GraphFault, clientRequestId: string | undefined): void => {
    const requestId = randomUUID();
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'request-id': requestId,
      'client-request-id': clientRequestId ?? requestId,
    };
    if (f.retryAfter !== undefined) headers['retry-after'] = f.retryAfter;
    res.writeHead(f.status, headers);
    res.end(
      JSON.stringify({
        error: {
          code: f.code,
          message: f.message,
          innerError: {
            date: new Date().toISOString().replace(/\.\d+Z$/, ''),
            'request-id': requestId,
            'client-request-id': clientRequestId ?? requestId,
          },
        },
      }),
    );
  };

  const transitiveMemberOf = async (
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    cast: boolean,
  ): Promise<void> => {
    const clientRequestId = req.headers['client-request-id'] as string | undefined;
    const bad = (message: string, code = 'Request_BadRequest'): void =>
      sendError(res, { status: 400, code, message }, clientRequestId);
    const bearer = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')?.[1];
    if (!bearer) {
      return sendError(
        res,
        { status: 401, code: 'InvalidAuthenticationToken', message: 'Access token is empty.' },
        clientRequestId,
      );
    }
    const sub = await options.verifyToken(bearer);
    if (sub === undefined) {
      // Assumption: the message Graph gives a token it cannot validate varies with the reason.
      return sendError(
        res,
        { status: 401, code: 'InvalidAuthenticationToken', message: 'Access token validation failure.' },
        clientRequestId,
      );
    }
    const query = url.searchParams;
    if (cast && (req.headers.consistencylevel !== 'eventual' || query.get('$count') !== 'true')) {
      // Assumption: the wording; the advanced-query page documents that the request fails.
      return bad(
        'Request with OData cast on transitive members only works with ConsistencyLevel: eventual and $count=true',
        'Request_UnsupportedQuery',
      );
    }
    const topParam = query.get('$top');
    const top = topParam === null ? DEFAULT_TOP : Number(topParam);
    if (!Number.isInteger(top) || top < 1 || top > MAX_TOP) {
      // Assumption: the wording of the answer to an out-of-range $top.
      return bad(`Invalid page size specified: '${topParam}'. Must be between 1 and ${MAX_TOP} inclusive.`);
    }
    const select = (query.get('$select') ?? '').split(',').filter(Boolean);
    let offset = 0;
    const skiptoken = query.get('$skiptoken');
    if (skiptoken !== null) {
      // Assumption: the token is opaque; here it encodes the offset, and a forged one is refused.
      const decoded = /^o(\d+)$/.exec(Buffer.from(skiptoken, 'base64url').toString('utf8'));
      if (!decoded) return bad('Invalid $skiptoken.');
      offset = Number(decoded[1]);
    }
    const all = (memberships.get(sub) ?? []).filter((m) => !cast || m.type === 'group');
    const size = Math.min(top, pageLimit ?? top);
    const page = all.slice(offset, offset + size);
    const value = page.map((m) => {
      const full: Record<string, unknown> = {
        '@odata.type': TYPES[m.type],
        id: m.id,
        displayName: `${m.type} ${m.id.slice(0, 8)}`,
        description: null,
      };
      if (select.length === 0) return full;
      return Object.fromEntries(
        Object.entries(full).filter(([k]) => k === '@odata.type' || select.includes(k)),
      );
    });
    const body: Record<string, unknown> = {
      '@odata.context': `${baseUrl}/v1.0/$metadata#directoryObjects${select.length ? `(${select.join(',')})` : ''}`,
    };
    if (cast) body['@odata.count'] = all.length;
    if (offset + size < all.length) {
      const next = new URL(url.pathname, nextOrigin ?? baseUrl);
      for (const [k, v] of query) if (k !== '$skiptoken') next.searchParams.set(k, v);
      next.searchParams.set('$skiptoken', Buffer.from(`o${offset + size}`).toString('base64url'));
      body['@odata.nextLink'] = next.href;
    }
    body.value = value;
    res.writeHead(200, { 'content-type': 'application/json;odata.metadata=minimal' });
    res.end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://graph.invalid');
    requests.push({
      at: Date.now(),
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
    });
    if (hanging) {
      held.add(res);
      res.on('close', () => held.delete(res));
      return;
    }
    if (fault) {
      const current = fault.fault;
      if (--fault.left <= 0) fault = undefined;
      return sendError(res, current, req.headers['client-request-id'] as string | undefined);
    }
    const path = url.pathname.replace(/\/+$/, '');
    const list = /^\/v1\.0\/me\/transitiveMemberOf(\/microsoft\.graph\.group)?$/i.exec(path);
    if (list && req.method === 'GET') {
      transitiveMemberOf(req, res, url, list[1] !== undefined).catch((err: unknown) => {
        if (!res.headersSent)
          sendError(res, { status: 500, code: 'generalException', message: String(err) }, undefined);
        else res.destroy();
      });
      return;
    }
    if (list) {
      res.setHeader('allow', 'GET');
      return sendError(
        res,
        {
          status: 405,
          code: 'Request_BadRequest',
          message: 'The HTTP method is not allowed on the resource.',
        },
        undefined,
      );
    }
    // Assumption: the code of an unknown segment (Graph reports the segment it could not resolve).
    sendError(
      res,
      {
        status: 400,
        code: 'BadRequest',
        message: `Resource not found for the segment '${path.split('/').pop()}'.`,
      },
      undefined,
    );
  });
  const listening: Listening = await listen(server);
  baseUrl = listening.url;

  return {
    url: listening.url,
    requests,
    setMemberships(sub, list) {
      memberships.set(sub, list);
    },
    limitPageSize(size) {
      pageLimit = size;
    },
    fail(f, times = Number.POSITIVE_INFINITY) {
      fault = f ? { fault: f, left: times } : undefined;
    },
    hang(on) {
      hanging = on;
      if (!on) for (const res of held) res.destroy();
    },
    nextLinksTo(origin) {
      nextOrigin = origin;
    },
    close: () => {
      for (const res of held) res.destroy();
      return listening.close();
    },
  };
}

/** `n` group memberships with distinct GUID-shaped ids, `prefix` (8 hex digits) first. */
export function groupIds(n: number, prefix = '0000aaaa'): string[] {
  return Array.from({ length: n }, (_, i) => `${prefix}-0000-4000-8000-${i.toString(16).padStart(12, '0')}`);
}
