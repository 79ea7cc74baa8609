import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { STORE_KEY_PREFIXES } from '../../store/key-prefixes.js';
import { randomId } from '../../store/sealing-keys.js';
import type { StateStore } from '../../store/state-store.js';
import { isMetadataDocumentClientId } from './cimd.js';
import { type ClientMetadata, parseClientMetadata } from './client-metadata.js';
import { AccessDeniedError, InvalidClientError, unlessStoreDown } from './errors.js';
import { TOKEN_ENDPOINT_AUTH_METHODS, type TokenEndpointAuthMethod } from './metadata.js';
import { validateRedirectUri } from './redirect-uris.js';

/**
 * The OAuth clients the facade knows, from three sources:
 * - dynamic: registered at /register (RFC 7591), stored in the StateStore;
 * - pre-registered: listed in the config (for servers that keep registration closed), held in
 *   memory, never stored, never deletable;
 * - metadata documents: the client id is an https URL the client publishes its metadata at
 *   (resolved and cached by cimd.ts, passed in as `metadataDocuments`).
 *
 * Secrets: a dynamic client's secret is 256 random bits, shown once in the registration response
 * and stored only as its SHA-256 (a slow hash adds nothing for a secret that cannot be guessed).
 * Secrets are compared as digests with timingSafeEqual.
 *
 * Lifetime of a dynamic registration: UNUSED_CLIENT_TTL_MS (1 h) until the token endpoint first
 * issues tokens to it (`recordUse`), then CLIENT_TTL_MS (90 days) from its last use, rewritten at
 * most once a day. So a flood of registrations nobody completes expires soon (and, in the memory
 * store, is what gets evicted first, not sessions), while a client in use never expires. A client
 * that did expire gets `invalid_client` (401) at /token and registers again, as Claude and the SDK
 * do; a memory store that lost its clients in a restart heals the same way.
 */

export const CLIENT_TTL_MS = 90 * 24 * 60 * 60 * 1000;
export const UNUSED_CLIENT_TTL_MS = 60 * 60 * 1000;
/** A client in use has its TTL pushed back at most this often (one store write per day). */
export const CLIENT_REFRESH_INTERVAL_MS = 24 * 60 * 60 * 1000;
export const MAX_CLIENT_ID_LENGTH = 2048;
export const MIN_PRE_REGISTERED_SECRET_LENGTH = 16;

const KEY_PREFIX = STORE_KEY_PREFIXES.client;

export type ClientSource = 'dynamic' | 'pre-registered' | 'metadata-document';

/** A client as the other endpoints see it (never with its secret or secret hash). */
export interface OAuthClient extends ClientMetadata {
  client_id: string;
  /** Seconds since the epoch. */
  client_id_issued_at: number;
  source: ClientSource;
  /** Holds a secret and must authenticate with it at /token and /revoke. */
  confidential: boolean;
}

/** RFC 7591 §3.2.1 response: the metadata as registered, the id and (confidential clients) the secret. */
export interface ClientInformationResponse extends ClientMetadata {
  client_id: string;
  client_secret?: string;
  client_id_issued_at: number;
  /** Present with a secret: 0, it does not expire. */
  client_secret_expires_at?: 0;
}

export interface PreRegisteredClient {
  clientId: string;
  /** Absent: a public client (PKCE only, token_endpoint_auth_method none). */
  clientSecret?: string;
  redirectUris: string[];
  name?: string;
}

/** Resolves client ids that are metadata document URLs (cimd.ts). */
export interface MetadataDocumentResolver {
  /** The client described by the document; throws an InvalidClientError when it cannot be used. */
  resolve(clientId: string): Promise<OAuthClient>;
  /** Drops a cached document. */
  forget(clientId: string): Promise<void>;
}

export interface ClientRegistryOptions {
  store: StateStore;
  /** /register open to anyone; when false, `register` refuses with access_denied. */
  dcrEnabled: boolean;
  preRegistered?: readonly PreRegisteredClient[];
  /** Accept metadata document URLs as client ids; leave out to refuse them. */
  metadataDocuments?: MetadataDocumentResolver;
  ttlMs?: number;
  unusedTtlMs?: number;
  /** Epoch milliseconds; tests move it. */
  now?: () => number;
}

export type DeleteClientResult = 'deleted' | 'not_found' | 'pre_registered';

interface StoredClient {
  v: 1;
  client_id: string;
  client_id_issued_at: number;
  metadata: ClientMetadata;
  /** base64url SHA-256 of the secret; absent for public clients. */
  secret_hash?: string;
  /** Epoch ms of the last write by `recordUse`; absent until the first token exchange. */
  used_at?: number;
}

interface KnownClient {
  client: OAuthClient;
  secretHash?: Buffer;
}

function hashSecret(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Compared when there is nothing to compare against, so every path does the same work. */
const DUMMY_HASH = hashSecret('not a secret');

export class ClientRegistry {
  readonly dcrEnabled: boolean;
  private readonly store: StateStore;
  private readonly preRegistered = new Map<string, KnownClient>();
  private readonly metadataDocuments: MetadataDocumentResolver | undefined;
  private readonly ttlMs: number;
  private readonly unusedTtlMs: number;
  private readonly now: () => number;

  /** Throws an Error naming the client and the problem when a pre-registered client is unusable. */
  constructor(options: ClientRegistryOptions) {
    this.store = options.store;
    this.dcrEnabled = options.dcrEnabled;
    this.metadataDocuments = options.metadataDocuments;
    this.ttlMs = options.ttlMs ?? CLIENT_TTL_MS;
    this.unusedTtlMs = options.unusedTtlMs ?? UNUSED_CLIENT_TTL_MS;
    this.now = options.now ?? Date.now;
    const issuedAt = Math.floor(this.now() / 1000);
    for (const pre of options.preRegistered ?? []) {
      const known = preRegisteredClient(pre, issuedAt);
      if (this.preRegistered.has(pre.clientId)) {
        throw new Error(`pre-registered client ${JSON.stringify(pre.clientId)} is listed twice`);
      }
      this.preRegistered.set(pre.clientId, known);
    }
  }

  /**
   * RFC 7591 registration. `body` is the parsed JSON request body (its size is bounded by the
   * caller). Throws AccessDeniedError when registration is off, InvalidRedirectUriError or
   * InvalidClientMetadataError for a bad body, TemporarilyUnavailableError when the store is down.
   */
  async register(body: unknown): Promise<ClientInformationResponse> {
    if (!this.dcrEnabled) {
      throw new AccessDeniedError(
        'dynamic client registration is turned off on this server: ask its operator for a client id (and secret) registered in its configuration',
      );
    }
    const metadata = parseClientMetadata(body, {
      defaultAuthMethod: 'client_secret_basic',
      allowedAuthMethods: TOKEN_ENDPOINT_AUTH_METHODS,
    });
    const clientId = randomId();
    const issuedAt = Math.floor(this.now() / 1000);
    const secret =
      metadata.token_endpoint_auth_method === 'none' ? undefined : randomBytes(32).toString('base64url');
    const record: StoredClient = { v: 1, client_id: clientId, client_id_issued_at: issuedAt, metadata };
    if (secret !== undefined) record.secret_hash = hashSecret(secret).toString('base64url');
    await unlessStoreDown(() =>
      this.store.set(KEY_PREFIX + clientId, JSON.stringify(record), this.unusedTtlMs),
    );
    const response: ClientInformationResponse = {
      ...metadata,
      client_id: clientId,
      client_id_issued_at: issuedAt,
    };
    if (secret !== undefined) {
      response.client_secret = secret;
      response.client_secret_expires_at = 0;
    }
    return response;
  }

  /** The client, or undefined when unknown or expired. A metadata document that fails throws. */
  async get(clientId: string): Promise<OAuthClient | undefined> {
    return (await this.find(clientId))?.client;
  }

  /**
   * Client authentication at /token and /revoke. `method` is how the request presented
   * credentials: `none` (client_id only), `client_secret_basic` or `client_secret_post`.
   * A confidential client may use either secret method whatever it registered; a public client
   * must not present a secret (an empty one counts as none). Throws InvalidClientError (401).
   */
  async authenticate(
    clientId: string,
    secret: string | undefined,
    method: TokenEndpointAuthMethod,
  ): Promise<OAuthClient> {
    const known = await this.find(clientId);
    const presented = secret === undefined || secret === '' || method === 'none' ? undefined : secret;
    const expected = known?.secretHash ?? DUMMY_HASH;
    const matches = timingSafeEqual(hashSecret(presented ?? ''), expected);
    if (!known) {
      throw new InvalidClientError(
        'unknown client_id: the client is not registered or its registration expired; register again',
      );
    }
    if (known.secretHash === undefined) {
      if (presented !== undefined) {
        throw new InvalidClientError(
          'this client is public (token_endpoint_auth_method none) and has no secret: send client_id without a secret',
        );
      }
      return known.client;
    }
    if (presented === undefined) {
      throw new InvalidClientError(
        'this client is confidential: authenticate with its client_secret (client_secret_basic or client_secret_post)',
      );
    }
    if (!matches) throw new InvalidClientError('client authentication failed: wrong client_secret');
    return known.client;
  }

  /**
   * Called by the token endpoint after it issued tokens to the client: keeps a dynamic client
   * alive for another CLIENT_TTL_MS (one store write per CLIENT_REFRESH_INTERVAL_MS at most).
   * A client deleted concurrently by an admin can come back if this write lands after the delete.
   */
  async recordUse(clientId: string): Promise<void> {
    if (this.preRegistered.has(clientId) || isMetadataDocumentClientId(clientId)) return;
    const key = KEY_PREFIX + clientId;
    const record = await this.readStored(clientId);
    if (!record) return;
    const now = this.now();
    if (record.used_at !== undefined && now - record.used_at < CLIENT_REFRESH_INTERVAL_MS) return;
    record.used_at = now;
    await unlessStoreDown(() => this.store.set(key, JSON.stringify(record), this.ttlMs));
  }

  /** Removes a dynamic client (or a cached metadata document); pre-registered clients stay. */
  async delete(clientId: string): Promise<DeleteClientResult> {
    if (this.preRegistered.has(clientId)) return 'pre_registered';
    if (isMetadataDocumentClientId(clientId)) {
      if (!this.metadataDocuments) return 'not_found';
      await this.metadataDocuments.forget(clientId);
      return 'deleted';
    }
    if (!(await this.readStored(clientId))) return 'not_found';
    await unlessStoreDown(() => this.store.delete(KEY_PREFIX + clientId));
    return 'deleted';
  }

  /** Pre-registered and dynamic clients (not metadata documents), for the admin API. */
  async list(): Promise<OAuthClient[]> {
    const clients = [...this.preRegistered.values()].map((k) => k.client);
    const keys = await unlessStoreDown(() => this.store.keys(KEY_PREFIX));
    for (const key of keys) {
      const record = await this.readStored(key.slice(KEY_PREFIX.length));
      if (record) clients.push(dynamicClient(record));
    }
    return clients;
  }

  private async find(clientId: string): Promise<KnownClient | undefined> {
    if (typeof clientId !== 'string' || clientId === '' || clientId.length > MAX_CLIENT_ID_LENGTH) {
      return undefined;
    }
    const pre = this.preRegistered.get(clientId);
    if (pre) return pre;
    if (isMetadataDocumentClientId(clientId)) {
      if (!this.metadataDocuments) return undefined;
      return { client: await this.metadataDocuments.resolve(clientId) };
    }
    const record = await this.readStored(clientId);
    if (!record) return undefined;
    return {
      client: dynamicClient(record),
      secretHash: record.secret_hash === undefined ? undefined : Buffer.from(record.secret_hash, 'base64url'),
    };
  }

  private async readStored(clientId: string): Promise<StoredClient | undefined> {
    // Dynamic ids are base64url; anything else cannot be one and is not looked up.
    if (!/^[A-Za-z0-9_-]{1,128}$/.test(clientId)) return undefined;
    const raw = await unlessStoreDown(() => this.store.get(KEY_PREFIX + clientId));
    if (raw === undefined) return undefined;
    try {
      const record = JSON.parse(raw) as StoredClient;
      return record.v === 1 && record.client_id === clientId ? record : undefined;
    } catch {
      return undefined;
    }
  }
}

function dynamicClient(record: StoredClient): OAuthClient {
  return {
    ...record.metadata,
    client_id: record.client_id,
    client_id_issued_at: record.client_id_issued_at,
    source: 'dynamic',
    confidential: record.secret_hash !== undefined,
  };
}

function preRegisteredClient(pre: PreRegisteredClient, issuedAt: number): KnownClient {
  const name = JSON.stringify(String(pre.clientId));
  if (typeof pre.clientId !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(pre.clientId)) {
    throw new Error(`pre-registered client ${name}: the client id must be 1-200 printable ASCII characters`);
  }
  if (isMetadataDocumentClientId(pre.clientId)) {
    throw new Error(
      `pre-registered client ${name}: the client id must not be a URL (those are metadata documents)`,
    );
  }
  if (pre.clientSecret !== undefined && pre.clientSecret.length < MIN_PRE_REGISTERED_SECRET_LENGTH) {
    throw new Error(
      `pre-registered client ${name}: the secret must be at least ${MIN_PRE_REGISTERED_SECRET_LENGTH} characters (e.g. openssl rand -base64 32)`,
    );
  }
  if (pre.redirectUris.length === 0) {
    throw new Error(`pre-registered client ${name}: list at least one redirect URI`);
  }
  for (const uri of pre.redirectUris) {
    const check = validateRedirectUri(uri);
    if (!check.ok)
      throw new Error(`pre-registered client ${name}: redirect URI ${JSON.stringify(uri)} ${check.reason}`);
  }
  const confidential = pre.clientSecret !== undefined;
  return {
    client: {
      client_id: pre.clientId,
      client_id_issued_at: issuedAt,
      redirect_uris: [...new Set(pre.redirectUris)],
      token_endpoint_auth_method: confidential ? 'client_secret_basic' : 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      client_name: pre.name ?? pre.clientId,
      source: 'pre-registered',
      confidential,
    },
    secretHash: confidential ? hashSecret(pre.clientSecret!) : undefined,
  };
}
