import type { IncomingHttpHeaders } from 'node:http';

/** RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones proxies must not relay. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Request headers the proxy owns: a client-sent copy is dropped (matched after folding
 * case and `_` to `-`, since some backends read `X_Forwarded_User` as the same header) and
 * the proxy writes its own value.
 */
const PROXY_OWNED_REQUEST = new Set([
  'host',
  'expect',
  'forwarded',
  'x-real-ip',
  'x-request-id',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-forwarded-prefix',
  'x-forwarded-user',
  'x-forwarded-email',
  'x-forwarded-groups',
  'x-forwarded-preferred-username',
  'x-forwarded-access-token',
  'x-forwarded-id-token',
  'cf-connecting-ip',
]);

/** Folds a header name the way lenient backends (CGI, WSGI, some frameworks) do. */
export function canonicalHeaderName(name: string): string {
  return name.toLowerCase().replaceAll('_', '-');
}

function connectionListed(value: string | string[] | undefined): Set<string> {
  const listed = new Set<string>();
  for (const v of Array.isArray(value) ? value : value ? [value] : []) {
    for (const token of v.split(',')) {
      const t = token.trim().toLowerCase();
      if (t) listed.add(t);
    }
  }
  return listed;
}

export interface UpstreamRequestHeaderOptions {
  /** Extra header names (canonical) the proxy owns, e.g. configured identity header names. */
  owned?: ReadonlySet<string>;
  /** Drop the client's Authorization header (it carried proxy credentials). */
  dropAuthorization: boolean;
  /** Headers the proxy adds (identity, forwarding, request id), already final. */
  add: Array<[string, string]>;
}

/**
 * The header list sent upstream, as the flat `[name, value, ...]` array undici takes.
 * Works from `rawHeaders` so duplicates and order survive; hop-by-hop fields and
 * every field named in `Connection` are removed; proxy-owned fields are replaced.
 */
export function upstreamRequestHeaders(
  rawHeaders: readonly string[],
  connection: string | string[] | undefined,
  options: UpstreamRequestHeaderOptions,
): string[] {
  const listed = connectionListed(connection);
  const out: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i] as string;
    const lower = name.toLowerCase();
    if (HOP_BY_HOP.has(lower) || listed.has(lower)) continue;
    const canonical = canonicalHeaderName(name);
    if (PROXY_OWNED_REQUEST.has(canonical) || options.owned?.has(canonical)) continue;
    if (options.dropAuthorization && canonical === 'authorization') continue;
    out.push(name, rawHeaders[i + 1] as string);
  }
  for (const [name, value] of options.add) out.push(name, value);
  return out;
}

/**
 * Response headers from the backend as a flat array, without hop-by-hop fields and
 * without the (lower-case) names in `skip`. Node sets its own framing (Content-Length or
 * chunked) from them.
 */
export function downstreamResponseHeaders(
  headers: IncomingHttpHeaders,
  skip: readonly string[] = [],
): string[] {
  const listed = connectionListed(headers.connection);
  const out: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name) || skip.includes(name)) continue;
    if (Array.isArray(value)) for (const v of value) out.push(name, v);
    else out.push(name, value);
  }
  return out;
}

/** Sets `name` unless the flat header list already has it (case-insensitive). */
export function setIfAbsent(flat: string[], name: string, value: string): void {
  const lower = name.toLowerCase();
  for (let i = 0; i < flat.length; i += 2) if ((flat[i] as string).toLowerCase() === lower) return;
  flat.push(name, value);
}

/** Reads the first value of `name` from a flat header list. */
export function getHeader(flat: readonly string[], name: string): string | undefined {
  const lower = name.toLowerCase();
  for (let i = 0; i < flat.length; i += 2)
    if ((flat[i] as string).toLowerCase() === lower) return flat[i + 1];
  return undefined;
}

/** Replaces (or adds) `name` in a flat header list. */
export function replaceHeader(flat: string[], name: string, value: string): void {
  const lower = name.toLowerCase();
  for (let i = 0; i < flat.length; i += 2) {
    if ((flat[i] as string).toLowerCase() === lower) {
      flat[i + 1] = value;
      return;
    }
  }
  flat.push(name, value);
}
