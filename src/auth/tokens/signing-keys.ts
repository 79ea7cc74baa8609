import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from 'jose';
import { STORE_KEY_PREFIXES } from '../../store/key-prefixes.js';
import type { SealingKeys } from '../../store/sealing-keys.js';
import type { StateStore } from '../../store/state-store.js';

/** The one algorithm the proxy signs with and accepts. */
export const SIGNING_ALG = 'ES256';

/** Longest access token lifetime by default; mint refuses longer ones so rotation stays safe. */
export const DEFAULT_MAX_TOKEN_TTL_SECONDS = 3600;

/**
 * Added to a retired key's publication window: covers an instance that read the old active key
 * just before the rotation and signed with it just after, and clock skew between instances.
 */
export const RETIREMENT_GRACE_SECONDS = 120;

/** How long a verification key found in the store is trusted before it is looked up again. */
export const DEFAULT_KEY_CACHE_MS = 60_000;

/**
 * Store TTL of the active key and of its public entry. The contract needs a finite TTL; an active
 * key is replaced by rotate(), not by expiry, so this only bounds a key nobody rotates for a decade.
 */
const ACTIVE_KEY_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

const ACTIVE_KEY = 'signing-key:active';
const PUBLIC_PREFIX = STORE_KEY_PREFIXES.signingKeyPublic;
const ROTATION_PREFIX = STORE_KEY_PREFIXES.signingKeyRotation;

/** A published verification key: only the public members, as served at /jwks.json. */
export interface PublicJwk {
  kty: 'EC';
  crv: 'P-256';
  x: string;
  y: string;
  kid: string;
  alg: typeof SIGNING_ALG;
  use: 'sig';
}

export interface Jwks {
  keys: PublicJwk[];
}

/** What `signing-key:public:<kid>` holds. */
interface PublicRecord {
  jwk: PublicJwk;
  /** Epoch ms after which the key is no longer published; absent while it is the active key. */
  publishedUntil?: number;
}

/** What `signing-key:active` holds: the private JWK is sealed with the store key as context. */
interface ActiveRecord {
  kid: string;
  jwk: PublicJwk;
  sealedPrivateJwk: string;
  createdAt: number;
}

/** The signing key is present but cannot be used: the stable code lets operators find it in logs. */
export class SigningKeyError extends Error {
  readonly code = 'SIGNING_KEY_UNREADABLE';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SigningKeyError';
  }
}

export interface SigningKeysOptions {
  /** Longest access token lifetime; a retired key stays published this long (plus a grace). */
  maxTokenTtlSeconds?: number;
  /** How long a verification key is cached in this process; 0 looks it up every time. */
  keyCacheMs?: number;
  /** Epoch ms; tests move it. */
  now?: () => number;
}

export interface ActiveSigningKey {
  kid: string;
  privateKey: CryptoKey;
}

/**
 * The proxy's token signing keys, kept in the StateStore so a restart or a second instance
 * keeps issued tokens valid.
 *
 * Layout:
 * - `signing-key:active`: the active key (public JWK, private JWK sealed with SealingKeys bound
 *   to this store key, so a Redis dump holds no usable private key).
 * - `signing-key:public:<kid>`: every published public key. The active key's entry is written
 *   before the key becomes active, so no instance can sign with a key that is not yet published.
 *   A retired key's entry gets `publishedUntil` = rotation + longest token lifetime + grace, and
 *   a store TTL to match.
 * - `signing-key:rotated-from:<kid>`: one-shot marker that serialises rotations starting from the
 *   same active key, so two instances rotating at once agree on one successor.
 *
 * Creation is race-safe: every instance that finds no active key generates one, publishes its
 * public half, and claims the active slot with setIfAbsent; losers withdraw their public entry and
 * use the winner's key. Minting reads the active slot on every call (one store read) so a
 * rotation by another instance is picked up at once; verification caches public keys by kid.
 */
export class SigningKeys {
  readonly maxTokenTtlSeconds: number;
  private readonly keyCacheMs: number;
  private readonly now: () => number;
  /** Imported private keys by kid: decrypting and importing once per key is enough. */
  private readonly privateKeys = new Map<string, CryptoKey>();
  private readonly publicKeys = new Map<string, { key: CryptoKey; checkedAt: number; until?: number }>();

  constructor(
    private readonly store: StateStore,
    private readonly keys: SealingKeys,
    options: SigningKeysOptions = {},
  ) {
    const maxTtl = options.maxTokenTtlSeconds ?? DEFAULT_MAX_TOKEN_TTL_SECONDS;
    if (!Number.isInteger(maxTtl) || maxTtl <= 0) {
      throw new RangeError(`maxTokenTtlSeconds must be a positive integer, got ${maxTtl}`);
    }
    this.maxTokenTtlSeconds = maxTtl;
    this.keyCacheMs = options.keyCacheMs ?? DEFAULT_KEY_CACHE_MS;
    this.now = options.now ?? Date.now;
  }

  /** The key new tokens are signed with; created (once, across instances) when there is none. */
  async activeKey(): Promise<ActiveSigningKey> {
    const record = await this.loadOrCreateActive();
    let privateKey = this.privateKeys.get(record.kid);
    if (privateKey === undefined) {
      const plain = this.keys.decrypt(record.sealedPrivateJwk, ACTIVE_KEY);
      if (plain === undefined) {
        throw new SigningKeyError(
          'The token signing key in the session store cannot be decrypted: this instance has a ' +
            'different SESSION_SECRET from the one that created it. Set the same SESSION_SECRET on ' +
            'every instance that shares the store.',
        );
      }
      privateKey = (await importJWK(JSON.parse(plain) as JWK, SIGNING_ALG)) as CryptoKey;
      this.privateKeys.set(record.kid, privateKey);
    }
    return { kid: record.kid, privateKey };
  }

  /** The kid of the active key (creating it when there is none). */
  async activeKid(): Promise<string> {
    return (await this.loadOrCreateActive()).kid;
  }

  /**
   * Makes a new active key. The previous one stays published until every token it can have
   * signed has expired. Returns the new active kid; when another instance rotated from the same
   * key at the same moment, both return that instance's key.
   */
  async rotate(): Promise<string> {
    const current = await this.loadOrCreateActive();
    const next = await this.generate();
    await this.publish(next.jwk, ACTIVE_KEY_TTL_MS);
    const windowMs = (this.maxTokenTtlSeconds + RETIREMENT_GRACE_SECONDS) * 1000;
    const won = await this.store.setIfAbsent(ROTATION_PREFIX + current.kid, next.kid, windowMs);
    if (!won) {
      await this.store.delete(PUBLIC_PREFIX + next.kid);
      const winner = await this.store.get(ROTATION_PREFIX + current.kid);
      return winner ?? (await this.activeKid());
    }
    await this.store.set(ACTIVE_KEY, JSON.stringify(next), ACTIVE_KEY_TTL_MS);
    // Retired after the switch: tokens signed with the old key up to now expire within the window.
    const retired: PublicRecord = { jwk: current.jwk, publishedUntil: this.now() + windowMs };
    await this.store.set(PUBLIC_PREFIX + current.kid, JSON.stringify(retired), windowMs);
    this.publicKeys.delete(current.kid);
    return next.kid;
  }

  /** The public JWKS: the active key first, then retired keys still in their window. */
  async jwks(): Promise<Jwks> {
    const active = await this.loadOrCreateActive();
    const now = this.now();
    const keys: PublicJwk[] = [publicOnly(active.jwk)];
    for (const storeKey of await this.store.keys(PUBLIC_PREFIX)) {
      const kid = storeKey.slice(PUBLIC_PREFIX.length);
      if (kid === active.kid) continue;
      const record = parsePublic(await this.store.get(storeKey));
      if (record === undefined || record.jwk.kid !== kid || !isPublished(record, now)) continue;
      keys.push(publicOnly(record.jwk));
    }
    return { keys };
  }

  /** The public key for `kid` when it is published, for verifying a token; undefined otherwise. */
  async verificationKey(kid: string): Promise<CryptoKey | undefined> {
    const now = this.now();
    const cached = this.publicKeys.get(kid);
    if (cached !== undefined && now - cached.checkedAt < this.keyCacheMs) {
      if (cached.until === undefined || now < cached.until) return cached.key;
    }
    this.publicKeys.delete(kid);
    const record = parsePublic(await this.store.get(PUBLIC_PREFIX + kid));
    if (record === undefined || record.jwk.kid !== kid || !isPublished(record, now)) return undefined;
    const key = (await importJWK(publicOnly(record.jwk), SIGNING_ALG)) as CryptoKey;
    this.publicKeys.set(kid, { key, checkedAt: now, until: record.publishedUntil });
    return key;
  }

  private async loadOrCreateActive(): Promise<ActiveRecord> {
    const existing = parseActive(await this.store.get(ACTIVE_KEY));
    if (existing !== undefined) return existing;
    const candidate = await this.generate();
    // Published before it can become active: nobody signs with a key verifiers cannot find.
    await this.publish(candidate.jwk, ACTIVE_KEY_TTL_MS);
    if (await this.store.setIfAbsent(ACTIVE_KEY, JSON.stringify(candidate), ACTIVE_KEY_TTL_MS)) {
      return candidate;
    }
    // Another instance won the slot: withdraw ours (never used) and take theirs.
    await this.store.delete(PUBLIC_PREFIX + candidate.kid);
    const winner = parseActive(await this.store.get(ACTIVE_KEY));
    if (winner === undefined)
      throw new SigningKeyError(
        'The active signing key in the session store is unreadable (corrupted record); delete ' +
          `the store key ${ACTIVE_KEY} to let the proxy create a new one.`,
      );
    return winner;
  }

  private async publish(jwk: PublicJwk, ttlMs: number): Promise<void> {
    const record: PublicRecord = { jwk };
    await this.store.set(PUBLIC_PREFIX + jwk.kid, JSON.stringify(record), ttlMs);
  }

  private async generate(): Promise<ActiveRecord> {
    const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALG, { extractable: true });
    const pub = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(pub, 'sha256');
    const priv = await exportJWK(privateKey);
    const jwk = publicOnly({ ...pub, kid } as PublicJwk);
    return {
      kid,
      jwk,
      sealedPrivateJwk: this.keys.encrypt(JSON.stringify({ ...priv, kid, alg: SIGNING_ALG }), ACTIVE_KEY),
      createdAt: this.now(),
    };
  }
}

/** Copies only the public members, whatever the input carries: `d` can never leak. */
function publicOnly(jwk: PublicJwk): PublicJwk {
  return { kty: 'EC', crv: 'P-256', x: jwk.x, y: jwk.y, kid: jwk.kid, alg: SIGNING_ALG, use: 'sig' };
}

function isPublished(record: PublicRecord, now: number): boolean {
  return record.publishedUntil === undefined || now < record.publishedUntil;
}

function parseJson(value: string | undefined): unknown {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

function isPublicJwk(value: unknown): value is PublicJwk {
  const jwk = value as Partial<PublicJwk> | null;
  return (
    typeof jwk === 'object' &&
    jwk !== null &&
    jwk.kty === 'EC' &&
    jwk.crv === 'P-256' &&
    typeof jwk.x === 'string' &&
    typeof jwk.y === 'string' &&
    typeof jwk.kid === 'string'
  );
}

function parsePublic(value: string | undefined): PublicRecord | undefined {
  const record = parseJson(value) as Partial<PublicRecord> | undefined;
  if (record === undefined || record === null || !isPublicJwk(record.jwk)) return undefined;
  if (record.publishedUntil !== undefined && typeof record.publishedUntil !== 'number') return undefined;
  return { jwk: record.jwk, publishedUntil: record.publishedUntil };
}

function parseActive(value: string | undefined): ActiveRecord | undefined {
  const record = parseJson(value) as Partial<ActiveRecord> | undefined;
  if (
    record === undefined ||
    record === null ||
    typeof record.kid !== 'string' ||
    !isPublicJwk(record.jwk) ||
    record.jwk.kid !== record.kid ||
    typeof record.sealedPrivateJwk !== 'string'
  ) {
    return undefined;
  }
  return {
    kid: record.kid,
    jwk: record.jwk,
    sealedPrivateJwk: record.sealedPrivateJwk,
    createdAt: typeof record.createdAt === 'number' ? record.createdAt : 0,
  };
}
