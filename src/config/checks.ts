/**
 * The checks the settings table (settings.ts) attaches to single settings: what a value must
 * be beyond its kind. Each takes the parsed value and returns what is wrong with it, if anything.
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { validateRedirectUri } from '../auth/facade/redirect-uris.js';
import { policyConfigProblems } from '../auth/policy/policy.js';
import { AUTO_WORKERS } from './derived.js';
import type { CheckProblems } from './setting-spec.js';
import type { PreRegisteredClientConfig } from './types.js';

/**
 * Paths the proxy answers itself (docs/security.md, "What the proxy does with a request"); the MCP endpoint and
 * the metrics endpoint may not sit on or under them, or requests would never reach them.
 */
export const RESERVED_PATHS = [
  '/health',
  '/login',
  '/callback',
  '/logout',
  '/authorize',
  '/token',
  '/register',
  '/revoke',
  '/jwks.json',
  '/.well-known',
  '/admin',
] as const;

/** A list setting's check that looks at each entry on its own: one problem per bad entry. */
export function eachEntry(check: (entry: string) => string | undefined): (entries: string[]) => string[] {
  return (entries) => entries.flatMap((entry) => check(entry) ?? []);
}

/** PUBLIC_URL: it is the OAuth issuer, which is an origin. */
export function originOnly(url: URL): string | undefined {
  if (url.search || (url.pathname !== '/' && url.pathname !== '')) {
    return `must be an origin only (scheme://host[:port]) without a path or query: it is the OAuth issuer; use ${url.origin} (MCP_PATH sets the MCP endpoint's path)`;
  }
  return undefined;
}

/** An ALLOWED_ORIGINS entry as a normalised origin, or undefined when it is not one. */
export function originOf(entry: string): string | undefined {
  try {
    const u = new URL(entry);
    const pathOk = u.pathname === '/' || u.pathname === '';
    if (['http:', 'https:'].includes(u.protocol) && pathOk && !u.search && !u.hash && !u.username)
      return u.origin;
  } catch {}
  return undefined;
}

export function originProblem(entry: string): string | undefined {
  return originOf(entry) === undefined
    ? `"${entry}" is not an origin; write each entry as scheme://host[:port], e.g. https://app.example.com`
    : undefined;
}

export function addressOrCidrProblem(entry: string): string | undefined {
  return isAddressOrCidr(entry)
    ? undefined
    : `"${entry}" is not an IP address or CIDR; write entries such as 127.0.0.1, ::1, 10.0.0.0/8 or fd00::/8`;
}

function isAddressOrCidr(entry: string): boolean {
  const [addr, bits, ...rest] = entry.split('/');
  if (rest.length > 0 || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n >= 0 && n <= (family === 4 ? 32 : 128);
}

/** A DNS name; `_` is allowed because container service names use it. */
const HOST_NAME =
  /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

/** `::1` and `[::1]` -> `::1`. */
export function unbracketed(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** PROXY_TARGET_HOST: a host only; the scheme and port have settings of their own. */
export function hostNameOrAddress(host: string): string | undefined {
  if (host.includes('://'))
    return 'is a URL, not a host name; give only the host (e.g. localhost) or set PROXY_TARGET_URL to the full URL';
  const bare = unbracketed(host);
  if (isIP(bare) !== 0 || HOST_NAME.test(bare)) return undefined;
  return 'is not a host name or IP address; give e.g. localhost, mcp.internal or 10.0.0.5 (the port goes in PROXY_TARGET_PORT)';
}

/** A listen address: host and port (`127.0.0.1:9090`, `[::1]:9090`, `0.0.0.0:9090`). */
export interface ListenAddress {
  /** Unbracketed (`::1`), as net.Server.listen takes it. */
  host: string;
  port: number;
}

/** `host:port` as a ListenAddress, or undefined when it is not one. */
export function listenAddressOf(text: string): ListenAddress | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const host = unbracketed(m[1] as string);
  const port = Number(m[2]);
  if (port > 65535 || (isIP(host) === 0 && !HOST_NAME.test(host))) return undefined;
  return { host, port };
}

/** ADMIN_LISTEN: a host and a port, both required (an IPv6 address in brackets). */
export function listenAddressProblem(text: string): string | undefined {
  return listenAddressOf(text) === undefined
    ? 'must be host:port, e.g. 127.0.0.1:9090 or [::1]:9090 (port 0 picks a free one)'
    : undefined;
}

/** The protocols of an HTTP target: PROXY_TARGET_URL, a `servers:` entry's url. */
export const TARGET_URL_PROTOCOLS = ['http:', 'https:'] as const;

/**
 * A URL setting's text as a URL of one of `protocols`, or what is wrong with it: the `url` kind's
 * parser, and a `servers:` entry's url. Credentials and fragments are refused: the first would be
 * shown wherever the URL is, the second is never sent.
 */
export function absoluteUrl(text: string, protocols: readonly string[], example?: string): URL | string {
  const wanted = `must be an absolute ${protocols.map((p) => p.replace(':', '')).join(' or ')} URL${example ? `, e.g. ${example}` : ''}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return wanted;
  }
  if (!protocols.includes(url.protocol)) return wanted;
  if (url.username || url.password) return 'must not contain credentials (user:password@); remove them';
  if (url.hash) return 'must not contain a #fragment; remove it';
  return url;
}

/** PROXY_TARGET_URL: requests are forwarded under its path; a query could not be combined with theirs. */
export function noQuery(url: URL): string | undefined {
  return url.search ? 'must not contain a query string; remove the ?... part' : undefined;
}

/** The first certificate of a PEM bundle must parse, so a wrong file is caught at start. */
export function pemCertificateProblem(text: string): string | undefined {
  const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(text);
  if (!first)
    return 'contains no PEM certificate (-----BEGIN CERTIFICATE-----); give a PEM file of CA certificates';
  try {
    new X509Certificate(first[0]);
  } catch {
    return 'holds a PEM block that is not a valid certificate; give a PEM file of CA certificates';
  }
  return undefined;
}

function isCleanPath(p: string): boolean {
  return (
    p.startsWith('/') &&
    !/[?#%\\\s]/.test(p) &&
    !p.includes('//') &&
    !p.split('/').some((s) => s === '.' || s === '..')
  );
}

/** `a` equals `b` or one is under the other (`/mcp` and `/mcp/x`). */
export function pathsOverlap(a: string, b: string): boolean {
  // The MCP route is `path === MCP_PATH || path under MCP_PATH/`; `/` only ever matches itself.
  const under = (x: string, y: string): boolean => x === y || (y !== '/' && x.startsWith(`${y}/`));
  return under(a, b) || under(b, a);
}

function reservedClash(path: string): string | undefined {
  return RESERVED_PATHS.find((r) => pathsOverlap(path, r));
}

export function mcpPathProblem(path: string): string | undefined {
  if (!isCleanPath(path) || (path.length > 1 && path.endsWith('/')))
    return 'must be a path such as /mcp: starting with /, no trailing /, no query, dot segments, spaces or %';
  const clash = reservedClash(path);
  return clash ? `clashes with ${clash}, which the proxy answers itself; choose e.g. /mcp` : undefined;
}

export function metricsPathProblem(path: string): string | undefined {
  if (!isCleanPath(path) || path === '/')
    return 'must be a path starting with / such as /metrics: no query, dot segments or %';
  const clash = reservedClash(path);
  return clash ? `clashes with ${clash}, which the proxy answers itself; choose e.g. /metrics` : undefined;
}

/** Above this, SERVER_WORKERS is more likely a typo than a machine's CPU count. */
export const MAX_WORKERS = 256;

/** SERVER_WORKERS: `auto`, or a whole number of worker processes from 1 to MAX_WORKERS. */
export function workersProblem(text: string): string | undefined {
  if (text.toLowerCase() === AUTO_WORKERS) return undefined;
  const n = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  return n >= 1 && n <= MAX_WORKERS
    ? undefined
    : `must be auto (one worker per CPU) or a whole number from 1 to ${MAX_WORKERS}, e.g. 4`;
}

/** SESSION_SECRET, ADMIN_TOKEN: long enough not to be guessed. Empty means unset. */
export function randomSecretProblem(secret: string): string | undefined {
  return secret !== '' && secret.length < 32
    ? 'must be at least 32 characters; generate one with `openssl rand -base64 48`'
    : undefined;
}

export function redisUrlProblem(url: string): string | undefined {
  return /^(rediss?|redis\+sentinel|redis\+cluster):\/\/[^/\s]/.test(url)
    ? undefined
    : 'must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL, e.g. redis://localhost:6379';
}

/**
 * REDIS_KEY_PREFIX: never empty (every key carries it, so a key without one is never the proxy's),
 * printable without spaces (it shows in redis-cli and in SCAN patterns), and short.
 */
export function redisKeyPrefixProblem(prefix: string): string | undefined {
  return /^[\x21-\x7e]{1,64}$/.test(prefix)
    ? undefined
    : 'must be 1 to 64 printable characters without spaces, e.g. mcp-oidc-proxy: or team-a:mcp:';
}

export function headerNameProblem(name: string): string | undefined {
  return /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)
    ? undefined
    : 'must be an HTTP header name such as X-Forwarded-User';
}

/**
 * A STDIO_ENV entry: an environment variable name (POSIX: letters, digits, _) that is not one of
 * `secrets`, the proxy's own (compared in capitals: on Windows names are case-insensitive).
 */
export function stdioEnvNameProblem(name: string, secrets: ReadonlySet<string>): string | undefined {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name))
    return `"${name}" is not an environment variable name; use letters, digits and _, not starting with a digit`;
  if (secrets.has(name.toUpperCase()))
    return `names ${name}, one of the proxy's secrets, which a stdio server must never get; remove it from STDIO_ENV (give the server a credential of its own, under another name)`;
  return undefined;
}

/** The hosts for which plain http is still local traffic. */
export function isLoopbackHost(hostname: string): boolean {
  return ['localhost', '127.0.0.1', '[::1]'].includes(hostname);
}

/** MICROSOFT_GRAPH_URL is sent the users' access tokens. */
export function httpsUnlessLoopback(url: URL): string | undefined {
  return url.protocol === 'http:' && !isLoopbackHost(url.hostname)
    ? "must be https: it is sent the users' access tokens (plain http only on loopback, for a local test server)"
    : undefined;
}

/**
 * The allow-list entry rules live with the policy that applies them; asked here one entry at a
 * time. Each line reads `ALLOWED_EMAILS: <message>`: the loader adds the key itself.
 */
function messageOf(line: string | undefined): string | undefined {
  return line?.slice(line.indexOf(': ') + 2);
}

export function allowedEmailProblem(entry: string): string | undefined {
  return messageOf(policyConfigProblems({ emails: [entry], domains: [], groups: [] })[0]);
}

export function allowedDomainProblem(entry: string): string | undefined {
  return messageOf(policyConfigProblems({ emails: [], domains: [entry], groups: [] })[0]);
}

/** MCP_CLIENTS: a list of clients, checked entry by entry (the secrets never appear in a message). */
export function mcpClientsProblems(value: unknown): CheckProblems {
  if (!Array.isArray(value)) return 'must be a list of clients: [{"client_id": ..., "redirect_uris": [...]}]';
  return checkEachClient(value).filter((checked) => typeof checked === 'string');
}

/** MCP_CLIENTS as the clients it lists (the entries that pass their check). */
export function preRegisteredClients(value: unknown): PreRegisteredClientConfig[] {
  if (!Array.isArray(value)) return [];
  return checkEachClient(value).filter((checked) => typeof checked !== 'string');
}

function checkEachClient(entries: unknown[]): Array<PreRegisteredClientConfig | string> {
  return entries.map((entry, i) => checkPreRegisteredClient(entry, `entry ${i + 1}`));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((u) => typeof u === 'string');
}

/** One MCP_CLIENTS entry, or the problem with it (never quoting its secret). */
function checkPreRegisteredClient(entry: unknown, where: string): PreRegisteredClientConfig | string {
  if (!isRecord(entry)) return `${where} must be a mapping with client_id and redirect_uris`;
  const { client_id: id, client_secret: secret, redirect_uris: uris, name } = entry;
  if (typeof id !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(id))
    return `${where}: client_id must be a non-empty string`;
  if (secret !== undefined && (typeof secret !== 'string' || secret.length < 16)) {
    return `${where} (${id}): client_secret must be a string of at least 16 characters, or left out for a public client`;
  }
  if (!isStringList(uris) || uris.length === 0) {
    return `${where} (${id}): redirect_uris must be a non-empty list of URLs`;
  }
  if (name !== undefined && typeof name !== 'string') return `${where} (${id}): name must be a string`;
  for (const uri of uris) {
    const verdict = validateRedirectUri(uri);
    if (!verdict.ok) return `${where} (${id}): redirect URI ${uri} ${verdict.reason}`;
  }
  return { clientId: id, clientSecret: secret, redirectUris: uris, name };
}
