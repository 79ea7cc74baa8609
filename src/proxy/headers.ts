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
  return foldUnderscores(name.toLowerCase());
}

/** Most names have no `_`: those are returned as they are, without a copy. */
function foldUnderscores(lowerName: string): string {
  return lowerName.includes('_') ? lowerName.replaceAll('_', '-') : lowerName;
}

const NONE_LISTED: ReadonlySet<string> = new Set();

/**
 * Field names listed in `Connection`, beyond the hop-by-hop ones (which are dropped anyway,
 * so the usual lone `keep-alive` or `close` needs no set built for every message).
 */
function connectionListed(value: string | string[] | undefined): ReadonlySet<string> {
  if (value === undefined) return NONE_LISTED;
  if (typeof value === 'string' && !value.includes(',')) {
    const only = value.trim().toLowerCase();
    if (!only || HOP_BY_HOP.has(only)) return NONE_LISTED;
  }
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
  /** Cookies of the proxy's own, removed from the Cookie header (the backend never sees them). */
  stripCookies?: ReadonlySet<string>;
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
    const canonical = foldUnderscores(lower);
    if (PROXY_OWNED_REQUEST.has(canonical) || options.owned?.has(canonical)) continue;
    if (options.dropAuthorization && canonical === 'authorization') continue;
    let value = rawHeaders[i + 1] as string;
    if (options.stripCookies && lower === 'cookie') {
      value = withoutCookies(value, options.stripCookies);
      if (value === '') continue;
    }
    out.push(name, value);
  }
  for (const [name, value] of options.add) out.push(name, value);
  return out;
}

/** A Cookie header value without the named cookies. */
export function withoutCookies(header: string, names: ReadonlySet<string>): string {
  return header
    .split(';')
    .map((part) => part.trim())
    .filter((part) => {
      if (part === '') return false;
      const eq = part.indexOf('=');
      return !names.has((eq < 0 ? part : part.slice(0, eq)).trim());
    })
    .join('; ');
}

type HeaderPairs = ReadonlyArray<readonly [string, string]>;

/**
 * The head of a proxied response as the flat array `res.writeHead` takes, built in one
 * pass: `first` (the proxy's own: X-Request-Id, ...) and `overrides` replace any backend
 * field of the same name, the backend's fields follow without hop-by-hop ones (Node adds
 * its own framing), repeated fields such as Set-Cookie stay apart, and each of `defaults`
 * is added only where the backend did not set it.
 */
export function responseHead(
  upstream: IncomingHttpHeaders,
  first: HeaderPairs,
  overrides: HeaderPairs,
  defaults: HeaderPairs,
): string[] {
  const listed = connectionListed(upstream.connection);
  const out: string[] = [];
  for (const [name, value] of first) out.push(name, value);
  for (const name in upstream) {
    const value = upstream[name];
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue;
    if (namedIn(first, name) || namedIn(overrides, name)) continue;
    if (typeof value === 'string') out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  for (const [name, value] of overrides) out.push(name, value);
  for (const [name, value] of defaults) {
    const lower = lowerCaseName(name);
    // Any field the backend sent counts as set, even one dropped above as hop-by-hop.
    if (Object.hasOwn(upstream, lower) || namedIn(first, lower) || namedIn(overrides, lower)) continue;
    out.push(name, value);
  }
  return out;
}

/**
 * Lower-case names of the proxy's own response fields (the security headers, CORS), remembered:
 * they are the same few on every response, and lowering each anew was six strings per response.
 * Bounded, in case a caller ever passes names that vary.
 */
const lowerNames = new Map<string, string>();

function lowerCaseName(name: string): string {
  let lower = lowerNames.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (lowerNames.size < 64) lowerNames.set(name, lower);
  }
  return lower;
}

/**
 * Whether `pairs` names `lowerName` (any case). The lists are the proxy's own one or two
 * fields, so a scan is cheaper than building a set for every response.
 */
function namedIn(pairs: HeaderPairs, lowerName: string): boolean {
  for (const [name] of pairs) {
    if (name.length === lowerName.length && name.toLowerCase() === lowerName) return true;
  }
  return false;
}
