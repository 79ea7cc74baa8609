import { createHash } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { isForbiddenAddress } from '../../net/public-address.js';
import { STORE_KEY_PREFIXES } from '../../store/key-prefixes.js';
import type { StateStore } from '../../store/state-store.js';
import { parseClientMetadata } from './client-metadata.js';
import type { MetadataDocumentResolver, OAuthClient } from './clients.js';
import { InvalidClientError, unlessStoreDown } from './errors.js';

/**
 * Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document, MCP 2025-11-25):
 * the client id is an https URL, and the document there is the client's registration. Claude.ai
 * uses `https://claude.ai/oauth/mcp-oauth-client-metadata`.
 *
 * Fetching a URL an anonymous caller chose is server-side request forgery waiting to happen, so:
 * - only https, canonical URLs with a path, no userinfo, fragment or dot segments;
 * - the host is resolved here, and every address it resolves to must be public (not loopback,
 *   private, link-local incl. 169.254.169.254, unique-local, CGNAT, multicast, reserved, or an
 *   IPv6 form embedding one of those); then the connection goes to exactly the addresses checked
 *   (a `lookup` that answers from them), so DNS rebinding between check and connect is impossible;
 * - a refusal happens before any socket is opened;
 * - no redirects are followed, the body is capped (64 KB), the whole exchange has a deadline
 *   (5 s), no compression is accepted;
 * - the document must be JSON whose `client_id` is the URL, with valid redirect URIs, and no
 *   shared secret (such clients are public: token_endpoint_auth_method none).
 * Good documents are cached in the StateStore per Cache-Control max-age (default 5 min, at most
 * 24 h; no-store/no-cache/max-age=0 are not cached). Failures are not cached.
 *
 * Node's http(s) client rather than undici: it takes the pinned `lookup` per request, and the
 * proxy does not load undici's full index (see proxy/undici-pool.ts).
 */

export const CIMD_MAX_BYTES = 64 * 1024;
export const CIMD_TIMEOUT_MS = 5_000;
export const CIMD_DEFAULT_TTL_MS = 5 * 60 * 1000;
export const CIMD_MAX_TTL_MS = 24 * 60 * 60 * 1000;
export const CIMD_MAX_URL_LENGTH = 2048;

const CACHE_PREFIX = STORE_KEY_PREFIXES.clientMetadataDocument;

/** Stable reasons a document was refused, for logs and metrics (`error.reason`). */
export type CimdFailure =
  | 'CIMD_URL_INVALID'
  | 'CIMD_ADDRESS_FORBIDDEN'
  | 'CIMD_DNS_FAILED'
  | 'CIMD_CONNECT_FAILED'
  | 'CIMD_TIMEOUT'
  | 'CIMD_TOO_LARGE'
  | 'CIMD_REDIRECT'
  | 'CIMD_HTTP_STATUS'
  | 'CIMD_INVALID_JSON'
  | 'CIMD_CLIENT_ID_MISMATCH'
  | 'CIMD_INVALID_METADATA';

/**
 * The client id is a metadata document URL the facade cannot use. An invalid_client (401) for the
 * caller; `reason` and `cause` say why for the logs (the description never names internal addresses).
 */
export class ClientMetadataDocumentError extends InvalidClientError {
  declare readonly reason: CimdFailure;

  constructor(reason: CimdFailure, description: string, options?: { cause?: unknown }) {
    super(description, { ...options, reason });
  }
}

export type ResolveHost = (hostname: string) => Promise<LookupAddress[]>;

export interface ClientMetadataDocumentsOptions {
  store: StateStore;
  /** Allow private and loopback addresses and http: URLs. Tests only. */
  allowPrivate?: boolean;
  maxBytes?: number;
  timeoutMs?: number;
  defaultTtlMs?: number;
  maxTtlMs?: number;
  /** DNS resolution (all addresses); default: the system resolver (getaddrinfo, /etc/hosts). */
  resolveHost?: ResolveHost;
}

/** Whether a client id is meant as a metadata document URL (dynamic ids never contain `:`). */
export function isMetadataDocumentClientId(clientId: string): boolean {
  return /^https?:\/\//i.test(clientId);
}

// --- fetching ---------------------------------------------------------------------------------

const systemResolve: ResolveHost = (hostname) =>
  new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true, verbatim: true }, (error, addresses) =>
      error ? reject(error) : resolve(addresses),
    );
  });

/** A `lookup` for net.connect that answers from addresses already checked: no second DNS query. */
function pinnedLookup(addresses: LookupAddress[]) {
  return (
    _hostname: string,
    options: { all?: boolean },
    callback: (error: Error | null, address: string | LookupAddress[], family?: number) => void,
  ): void => {
    if (options.all) callback(null, addresses);
    else callback(null, addresses[0]!.address, addresses[0]!.family);
  };
}

interface Fetched {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

function fail(reason: CimdFailure, description: string, cause?: unknown): ClientMetadataDocumentError {
  return new ClientMetadataDocumentError(reason, description, cause === undefined ? undefined : { cause });
}

/** Parses Cache-Control into a TTL: undefined = do not cache. */
export function cacheTtlMs(
  cacheControl: string | undefined,
  defaultTtlMs: number,
  maxTtlMs: number,
): number | undefined {
  if (!cacheControl) return Math.min(defaultTtlMs, maxTtlMs);
  const directives = cacheControl
    .toLowerCase()
    .split(',')
    .map((d) => d.trim());
  if (directives.some((d) => d === 'no-store' || d === 'no-cache')) return undefined;
  const maxAge = directives.map((d) => /^max-age\s*=\s*"?(\d+)"?$/.exec(d)).find((m) => m !== null);
  if (!maxAge) return Math.min(defaultTtlMs, maxTtlMs);
  const seconds = Number(maxAge[1]);
  if (seconds <= 0) return undefined;
  return Math.min(seconds * 1000, maxTtlMs);
}

export class ClientMetadataDocuments implements MetadataDocumentResolver {
  private readonly store: StateStore;
  private readonly allowPrivate: boolean;
  private readonly maxBytes: number;
  private readonly timeoutMs: number;
  private readonly defaultTtlMs: number;
  private readonly maxTtlMs: number;
  private readonly resolveHost: ResolveHost;
  /** One fetch per URL at a time: concurrent authorizations of one client share it. */
  private readonly inFlight = new Map<string, Promise<OAuthClient>>();

  constructor(options: ClientMetadataDocumentsOptions) {
    this.store = options.store;
    this.allowPrivate = options.allowPrivate ?? false;
    this.maxBytes = options.maxBytes ?? CIMD_MAX_BYTES;
    this.timeoutMs = options.timeoutMs ?? CIMD_TIMEOUT_MS;
    this.defaultTtlMs = options.defaultTtlMs ?? CIMD_DEFAULT_TTL_MS;
    this.maxTtlMs = options.maxTtlMs ?? CIMD_MAX_TTL_MS;
    this.resolveHost = options.resolveHost ?? systemResolve;
  }

  /** The client the document at `clientId` describes, from the cache or fetched. */
  async resolve(clientId: string): Promise<OAuthClient> {
    const url = this.checkUrl(clientId);
    const cached = await unlessStoreDown(() => this.store.get(cacheKey(clientId)));
    if (cached !== undefined) {
      try {
        return JSON.parse(cached) as OAuthClient;
      } catch {
        // A damaged entry is fetched again.
      }
    }
    let pending = this.inFlight.get(clientId);
    if (!pending) {
      pending = this.fetchAndCache(clientId, url).finally(() => this.inFlight.delete(clientId));
      this.inFlight.set(clientId, pending);
    }
    return pending;
  }

  async forget(clientId: string): Promise<void> {
    await unlessStoreDown(() => this.store.delete(cacheKey(clientId)));
  }

  /** The client id as a URL, or a ClientMetadataDocumentError saying what is wrong with it. */
  private checkUrl(clientId: string): URL {
    const bad = (why: string) =>
      fail('CIMD_URL_INVALID', `client_id ${JSON.stringify(clientId.slice(0, 200))} ${why}`);
    if (clientId.length > CIMD_MAX_URL_LENGTH) throw bad(`is longer than ${CIMD_MAX_URL_LENGTH} characters`);
    let url: URL;
    try {
      url = new URL(clientId);
    } catch {
      throw bad('is not a URL');
    }
    if (url.protocol !== 'https:' && !(this.allowPrivate && url.protocol === 'http:')) {
      throw bad('must be an https URL to be used as a client metadata document');
    }
    if (url.username || url.password) throw bad('must not contain userinfo');
    if (clientId.includes('#')) throw bad('must not contain a fragment');
    if (url.pathname === '/' || url.pathname === '') throw bad('must have a path');
    if (/\/\.{1,2}(?:[/?]|$)/.test(clientId.slice(url.protocol.length + 2))) {
      throw bad('must not contain . or .. path segments');
    }
    if (url.href !== clientId) throw bad(`must be written in canonical form (${url.href.slice(0, 200)})`);
    return url;
  }

  private async fetchAndCache(clientId: string, url: URL): Promise<OAuthClient> {
    const deadline = AbortSignal.timeout(this.timeoutMs);
    const fetched = await this.fetchDocument(url, deadline);
    const client = this.parseDocument(clientId, fetched);
    const ttl = cacheTtlMs(headerValue(fetched.headers['cache-control']), this.defaultTtlMs, this.maxTtlMs);
    if (ttl !== undefined) {
      await unlessStoreDown(() => this.store.set(cacheKey(clientId), JSON.stringify(client), ttl));
    }
    return client;
  }

  /** Resolves and checks the host's addresses; refuses before any socket is opened. */
  private async addressesFor(url: URL, deadline: AbortSignal): Promise<LookupAddress[]> {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    let addresses: LookupAddress[];
    const family = isIP(host);
    if (family !== 0) {
      addresses = [{ address: host, family }];
    } else {
      try {
        addresses = await withDeadline(this.resolveHost(host), deadline);
      } catch (error) {
        if (deadline.aborted)
          throw fail('CIMD_TIMEOUT', `resolving the host of ${url.href} took too long`, error);
        throw fail('CIMD_DNS_FAILED', `the host of ${url.href} does not resolve`, error);
      }
      if (addresses.length === 0) throw fail('CIMD_DNS_FAILED', `the host of ${url.href} does not resolve`);
    }
    if (!this.allowPrivate) {
      const forbidden = addresses.filter((a) => isForbiddenAddress(a.address));
      if (forbidden.length > 0) {
        throw fail(
          'CIMD_ADDRESS_FORBIDDEN',
          `the host of ${url.href} is not a public internet address; client metadata documents must be publicly reachable`,
          new Error(`refused addresses: ${forbidden.map((a) => a.address).join(', ')}`),
        );
      }
    }
    return addresses;
  }

  private async fetchDocument(url: URL, deadline: AbortSignal): Promise<Fetched> {
    const addresses = await this.addressesFor(url, deadline);
    const maxBytes = this.maxBytes;
    const client = url.protocol === 'https:' ? https : http;
    return new Promise<Fetched>((resolve, reject) => {
      let settled = false;
      const finish = (error: ClientMetadataDocumentError | undefined, value?: Fetched) => {
        if (settled) return;
        settled = true;
        deadline.removeEventListener('abort', onAbort);
        if (error) {
          request.destroy();
          reject(error);
        } else resolve(value!);
      };
      const onAbort = () =>
        finish(fail('CIMD_TIMEOUT', `fetching ${url.href} took longer than ${this.timeoutMs} ms`));
      const request = client.request(
        {
          protocol: url.protocol,
          hostname: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port || undefined,
          path: `${url.pathname}${url.search}`,
          method: 'GET',
          headers: {
            accept: 'application/json',
            'accept-encoding': 'identity',
            'user-agent': 'mcp-oidc-proxy',
          },
          agent: false,
          lookup: pinnedLookup(addresses) as never,
          maxHeaderSize: 16 * 1024,
        },
        (response) => {
          const status = response.statusCode ?? 0;
          if (status >= 300 && status < 400) {
            return finish(
              fail(
                'CIMD_REDIRECT',
                `${url.href} answered with a redirect (${status}); redirects are not followed`,
              ),
            );
          }
          if (status !== 200)
            return finish(fail('CIMD_HTTP_STATUS', `${url.href} answered with HTTP ${status}`));
          const encoding = headerValue(response.headers['content-encoding']);
          if (encoding && encoding.toLowerCase() !== 'identity') {
            return finish(
              fail(
                'CIMD_INVALID_JSON',
                `${url.href} answered compressed (${encoding}); send it uncompressed`,
              ),
            );
          }
          const declared = Number(response.headers['content-length']);
          if (Number.isFinite(declared) && declared > maxBytes) {
            return finish(fail('CIMD_TOO_LARGE', `${url.href} is larger than ${maxBytes} bytes`));
          }
          const chunks: Buffer[] = [];
          let size = 0;
          response.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxBytes)
              finish(fail('CIMD_TOO_LARGE', `${url.href} is larger than ${maxBytes} bytes`));
            else chunks.push(chunk);
          });
          response.on('end', () =>
            finish(undefined, { status, headers: response.headers, body: Buffer.concat(chunks) }),
          );
          response.on('error', (error) =>
            finish(fail('CIMD_CONNECT_FAILED', `the connection to ${url.href} failed while reading`, error)),
          );
        },
      );
      request.on('error', (error) =>
        finish(fail('CIMD_CONNECT_FAILED', `${url.href} could not be fetched`, error)),
      );
      if (deadline.aborted) onAbort();
      else deadline.addEventListener('abort', onAbort, { once: true });
      request.end();
    });
  }

  private parseDocument(clientId: string, fetched: Fetched): OAuthClient {
    let body: unknown;
    try {
      body = JSON.parse(fetched.body.toString('utf8'));
    } catch (error) {
      throw fail('CIMD_INVALID_JSON', `the client metadata document at ${clientId} is not JSON`, error);
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw fail('CIMD_INVALID_JSON', `the client metadata document at ${clientId} is not a JSON object`);
    }
    const doc = body as Record<string, unknown>;
    if (doc.client_id !== clientId) {
      throw fail(
        'CIMD_CLIENT_ID_MISMATCH',
        `the client metadata document's client_id must be its own URL ${clientId}, got ${JSON.stringify(String(doc.client_id).slice(0, 200))}`,
      );
    }
    if ('client_secret' in doc || 'client_secret_expires_at' in doc) {
      throw fail('CIMD_INVALID_METADATA', 'a client metadata document must not contain a client_secret');
    }
    let metadata: ReturnType<typeof parseClientMetadata>;
    try {
      metadata = parseClientMetadata(doc, { defaultAuthMethod: 'none', allowedAuthMethods: ['none'] });
    } catch (error) {
      const detail = error instanceof Error ? error.message : String(error);
      throw fail(
        'CIMD_INVALID_METADATA',
        `the client metadata document at ${clientId} is invalid: ${detail}`,
        error,
      );
    }
    return {
      ...metadata,
      client_id: clientId,
      client_id_issued_at: 0,
      source: 'metadata-document',
      confidential: false,
    };
  }
}

function cacheKey(clientId: string): string {
  return CACHE_PREFIX + createHash('sha256').update(clientId).digest('base64url');
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function withDeadline<T>(promise: Promise<T>, deadline: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(deadline.reason);
    if (deadline.aborted) return onAbort();
    deadline.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        deadline.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        deadline.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
