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

/** `Cache-Control: max-age` of /jwks.json: how long a verifier elsewhere may keep an old copy. */
export const JWKS_MAX_AGE_SECONDS = 300;

/**
 * How long a scheduled successor is published before it signs. It must exceed the JWKS max-age
 * (300 s) so every verifier caching /jwks.json holds the new key before a token carries its kid;
 * an hour also covers JWKS clients that cache longer than max-age says (jose's remote key set
 * keeps a copy for 10 minutes) and any clock skew between instances, and costs nothing against a
 * period counted in days.
 */
export const PUBLICATION_LEAD_SECONDS = 3600;

/**
 * Store TTL of the active key and of its public entry. The contract needs a finite TTL; an active
 * key is replaced by rotate(), not by expiry, so this only bounds a key nobody rotates for a decade.
 */
const ACTIVE_KEY_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

const ACTIVE_KEY = 'signing-key:active';
const PUBLIC_PREFIX = STORE_KEY_PREFIXES.signingKeyPublic;
const ROTATION_PREFIX = STORE_KEY_PREFIXES.signingKeyRotation;
const NEXT_PREFIX = STORE_KEY_PREFIXES.signingKeyNext;
const DAY_MS = 24 * 3600 * 1000;

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

/**
 * What `signing-key:active` holds: the private JWK is sealed with that store key as context (a
 * scheduled successor waiting in `signing-key:next-after:<kid>` is sealed the same way, so it
 * moves into the active slot as it is).
 */
interface ActiveRecord {
  kid: string;
  jwk: PublicJwk;
  sealedPrivateJwk: string;
  createdAt: number;
  /** Epoch ms at which it began to sign (the schedule counts from here); createdAt for old records. */
  activatedAt: number;
}

/** What `signing-key:next-after:<kid>` holds: the successor of `<kid>`, published, not yet signing. */
interface NextRecord extends ActiveRecord {
  /** Epoch ms its public key entered the JWKS: it signs no earlier than the publication lead after. */
  publishedAt: number;
}

/** Why the active key changed, as reported to `onRotated`. */
export type RotationReason =
  /** SIGNING_KEY_ROTATION_DAYS elapsed (the successor was published the lead time before). */
  | 'schedule'
  /** rotate(): the admin API's "rotate now". */
  | 'manual'
  /** The active key was sealed with another SESSION_SECRET, and the store now is this instance's. */
  | 'unreadable';

/** The signing keys as the admin API shows them: kids and times, never key material. */
export interface SigningKeysStatus {
  active: { kid: string; activatedAt: number };
  /** The scheduled successor, published, and when it may sign at the earliest. */
  next?: { kid: string; publishedAt: number; signsFrom: number };
  /** Retired keys still published, until when. */
  retired: Array<{ kid: string; publishedUntil: number }>;
  /** SIGNING_KEY_ROTATION_DAYS in ms; 0 = no schedule. */
  rotationPeriodMs: number;
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
  /** SIGNING_KEY_ROTATION_DAYS in ms: how long a key signs before its successor takes over; 0 (default) = never. */
  rotationPeriodMs?: number;
  /** How long a successor is published before it signs; PUBLICATION_LEAD_SECONDS by default. */
  publicationLeadMs?: number;
  /**
   * Whether this instance may replace an active key it cannot decrypt (sealed with another
   * SESSION_SECRET): SealingCheck.isMine. Without it such a key is a SigningKeyError.
   */
  mayReplaceUnreadable?: () => Promise<boolean>;
  /** Told whenever this instance changed the active key (for the log). */
  onRotated?: (change: { previousKid: string; kid: string; reason: RotationReason }) => void;
}

/** SIGNING_KEY_ROTATION_DAYS as SigningKeysOptions.rotationPeriodMs. */
export function rotationPeriodMs(days: number): number {
  return days * DAY_MS;
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
 * - `signing-key:public:<kid>`: every published public key. A key's entry is written before the
 *   key becomes active, so no instance can sign with a key that is not yet published. A retired
 *   key's entry gets `publishedUntil` = retirement + longest token lifetime + grace, and a store
 *   TTL to match.
 * - `signing-key:next-after:<kid>`: the scheduled successor of the active key `<kid>`, published
 *   (in the JWKS) but not yet signing; claimed with setIfAbsent, so however many instances reach
 *   the schedule at once there is one successor per period.
 * - `signing-key:rotated-from:<kid>`: one-shot marker that serialises every switch away from the
 *   same active key (schedule, "rotate now", replacement), so two instances agree on one successor.
 *
 * Schedule (`rotationPeriodMs`): a publication lead before the active key's period ends, the
 * first instance to mint (or serve the JWKS) publishes the successor; once the period has ended
 * and the successor has been published for the whole lead, the first instance to mint switches
 * to it. Every instance reads the active slot on each mint (one store read), so the others follow
 * at once. Nothing runs while nobody mints: an idle deployment rotates on its next use, and
 * still publishes before it signs.
 *
 * Creation is race-safe: every instance that finds no active key generates one, publishes its
 * public half, and claims the active slot with setIfAbsent; losers withdraw their public entry and
 * use the winner's key. Verification caches public keys by kid.
 */
export class SigningKeys {
  readonly maxTokenTtlSeconds: number;
  readonly rotationPeriodMs: number;
  readonly publicationLeadMs: number;
  private readonly keyCacheMs: number;
  private readonly now: () => number;
  private readonly mayReplaceUnreadable: () => Promise<boolean>;
  private readonly onRotated: NonNullable<SigningKeysOptions['onRotated']>;
  /** Imported private keys by kid: decrypting and importing once per key is enough. */
  private readonly privateKeys = new Map<string, CryptoKey>();
  private readonly publicKeys = new Map<string, { key: CryptoKey; checkedAt: number; until?: number }>();
  /** The successor this instance last saw published, so minting in the lead reads it once. */
  private knownNext: { after: string; record: NextRecord } | undefined;

  constructor(
    private readonly store: StateStore,
    private readonly keys: SealingKeys,
    options: SigningKeysOptions = {},
  ) {
    const maxTtl = options.maxTokenTtlSeconds ?? DEFAULT_MAX_TOKEN_TTL_SECONDS;
    if (!Number.isInteger(maxTtl) || maxTtl <= 0) {
      throw new RangeError(`maxTokenTtlSeconds must be a positive integer, got ${maxTtl}`);
    }
    const period = options.rotationPeriodMs ?? 0;
    const lead = options.publicationLeadMs ?? PUBLICATION_LEAD_SECONDS * 1000;
    if (!Number.isFinite(period) || period < 0) {
      throw new RangeError(`rotationPeriodMs must be 0 (off) or a positive number, got ${period}`);
    }
    if (!Number.isFinite(lead) || lead < JWKS_MAX_AGE_SECONDS * 1000 || (period > 0 && lead >= period)) {
      throw new RangeError(
        `publicationLeadMs must be at least the JWKS max-age (${JWKS_MAX_AGE_SECONDS} s) and shorter than the rotation period, got ${lead}`,
      );
    }
    this.maxTokenTtlSeconds = maxTtl;
    this.rotationPeriodMs = period;
    this.publicationLeadMs = lead;
    this.keyCacheMs = options.keyCacheMs ?? DEFAULT_KEY_CACHE_MS;
    this.now = options.now ?? Date.now;
    this.mayReplaceUnreadable = options.mayReplaceUnreadable ?? (() => Promise.resolve(false));
    this.onRotated = options.onRotated ?? (() => {});
  }

  /** The key new tokens are signed with; created (once, across instances) when there is none. */
  async activeKey(): Promise<ActiveSigningKey> {
    let record = await this.current();
    let privateKey = await this.openPrivate(record);
    if (privateKey === undefined) {
      if (!(await this.mayReplaceUnreadable())) {
        throw new SigningKeyError(
          'The token signing key in the session store cannot be decrypted: this instance has a ' +
            'different SESSION_SECRET from the one that created it. Set the same SESSION_SECRET on ' +
            'every instance that shares the store (or give each deployment its own REDIS_KEY_PREFIX).',
        );
      }
      // The store is sealed with this instance's secret now (a restart with a new one): the old
      // key is retired like any other and a new one signs from here on.
      record = await this.switchFrom(record, await this.generate(), 'unreadable');
      privateKey = await this.openPrivate(record);
      if (privateKey === undefined) {
        // Another instance is replacing it at this very moment; its key is in the slot next time.
        throw new SigningKeyError('The token signing key is being replaced; try again.');
      }
    }
    return { kid: record.kid, privateKey };
  }

  /** The kid of the active key (creating it when there is none). */
  async activeKid(): Promise<string> {
    return (await this.current()).kid;
  }

  /**
   * "Rotate now": a new key signs from this moment. A successor already published by the
   * schedule is used (it has been in the JWKS longest); otherwise a new key is published in the
   * same step, before it signs. Not the schedule's publication lead, on purpose: an operator
   * rotating by hand suspects the key, and every further token it signed would need trusting.
   * The proxy itself finds a new kid in the store at once; a verifier holding a cached JWKS sees
   * an unknown kid and fetches it again, as JWKS clients do. The previous key stays published
   * until every token it signed has expired. Returns the new active kid; when another instance
   * rotated from the same key at the same moment, both return that instance's key.
   */
  async rotate(): Promise<string> {
    const current = await this.loadOrCreateActive();
    const prepared = await this.readNext(current.kid);
    const next = prepared && (await this.openPrivate(prepared)) ? prepared : await this.generate();
    return (await this.switchFrom(current, next, 'manual')).kid;
  }

  /** The public JWKS: the active key first, then its scheduled successor and retired keys still in their window. */
  async jwks(): Promise<Jwks> {
    const active = await this.current();
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

  /** Kids and times of the active key, its successor and the retired keys (no key material). */
  async status(): Promise<SigningKeysStatus> {
    const active = await this.current();
    const next = await this.readNext(active.kid);
    const now = this.now();
    const retired: SigningKeysStatus['retired'] = [];
    for (const storeKey of await this.store.keys(PUBLIC_PREFIX)) {
      const record = parsePublic(await this.store.get(storeKey));
      if (record?.publishedUntil !== undefined && isPublished(record, now)) {
        retired.push({ kid: record.jwk.kid, publishedUntil: record.publishedUntil });
      }
    }
    return {
      active: { kid: active.kid, activatedAt: active.activatedAt },
      ...(next && {
        next: {
          kid: next.kid,
          publishedAt: next.publishedAt,
          signsFrom: Math.max(next.publishedAt + this.publicationLeadMs, this.periodEnd(active)),
        },
      }),
      retired: retired.sort((a, b) => a.publishedUntil - b.publishedUntil),
      rotationPeriodMs: this.rotationPeriodMs,
    };
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

  /** The active key, after following the schedule (publishing the successor, or switching to it). */
  private async current(): Promise<ActiveRecord> {
    const active = await this.loadOrCreateActive();
    if (this.rotationPeriodMs === 0) return active;
    const now = this.now();
    if (now < this.periodEnd(active) - this.publicationLeadMs) return active;
    const next = await this.publishedSuccessor(active);
    if (
      next === undefined ||
      now < this.periodEnd(active) ||
      now < next.publishedAt + this.publicationLeadMs
    ) {
      return active;
    }
    return this.switchFrom(active, next, 'schedule');
  }

  private periodEnd(active: ActiveRecord): number {
    return this.rotationPeriodMs === 0
      ? Number.POSITIVE_INFINITY
      : active.activatedAt + this.rotationPeriodMs;
  }

  /**
   * The successor of `active`, published now when nobody has yet (one per key across instances:
   * setIfAbsent; a loser withdraws its own). A successor this instance cannot decrypt (sealed
   * with another SESSION_SECRET) is replaced when the store is this instance's, and otherwise
   * left for the instance that can use it (undefined: no switch from here).
   */
  private async publishedSuccessor(active: ActiveRecord): Promise<NextRecord | undefined> {
    if (this.knownNext !== undefined && this.knownNext.after === active.kid) return this.knownNext.record;
    let next = await this.readNext(active.kid);
    if (next !== undefined && (await this.openPrivate(next)) === undefined) {
      if (!(await this.mayReplaceUnreadable())) return undefined;
      await this.withdraw(NEXT_PREFIX + active.kid, next.kid);
      next = undefined;
    }
    if (next === undefined) {
      const candidate: NextRecord = { ...(await this.generate()), publishedAt: this.now() };
      await this.publish(candidate.jwk, ACTIVE_KEY_TTL_MS);
      if (
        await this.store.setIfAbsent(NEXT_PREFIX + active.kid, JSON.stringify(candidate), ACTIVE_KEY_TTL_MS)
      ) {
        // The switch away from `active` sets its marker before it withdraws the successor slot:
        // a successor claimed after that marker would never sign, and nobody would withdraw it.
        if ((await this.store.get(ROTATION_PREFIX + active.kid)) !== undefined) {
          await this.withdraw(NEXT_PREFIX + active.kid, candidate.kid);
          return undefined;
        }
        next = candidate;
      } else {
        await this.store.delete(PUBLIC_PREFIX + candidate.kid);
        next = await this.readNext(active.kid);
        if (next === undefined) return undefined;
      }
    }
    this.knownNext = { after: active.kid, record: next };
    return next;
  }

  private async readNext(activeKid: string): Promise<NextRecord | undefined> {
    const record = parseActive(await this.store.get(NEXT_PREFIX + activeKid));
    return record !== undefined && 'publishedAt' in record ? record : undefined;
  }

  /**
   * Makes `next` the active key in place of `current`, once across instances (the rotated-from
   * marker); `next` must already be published or is published here, before the switch. The
   * previous key stays published until every token it can have signed has expired; a scheduled
   * successor of `current` that is not `next` is withdrawn (it never signed). Returns the key
   * active afterwards: the winner's when another instance switched from `current` first.
   */
  private async switchFrom(
    current: ActiveRecord,
    next: ActiveRecord,
    reason: RotationReason,
  ): Promise<ActiveRecord> {
    await this.publish(next.jwk, ACTIVE_KEY_TTL_MS);
    const windowMs = (this.maxTokenTtlSeconds + RETIREMENT_GRACE_SECONDS) * 1000;
    const won = await this.store.setIfAbsent(ROTATION_PREFIX + current.kid, next.kid, windowMs);
    if (!won) {
      if (!(await this.isScheduledSuccessor(current.kid, next.kid)))
        await this.store.delete(PUBLIC_PREFIX + next.kid);
      const winner = parseActive(await this.store.get(ACTIVE_KEY));
      // The winner may not have written the slot yet: the current key still signs meanwhile (its
      // retirement window starts at the switch, so such a token stays verifiable).
      return winner ?? current;
    }
    const now = this.now();
    const activated: ActiveRecord = {
      kid: next.kid,
      jwk: next.jwk,
      sealedPrivateJwk: next.sealedPrivateJwk,
      createdAt: next.createdAt,
      activatedAt: now,
    };
    await this.store.set(ACTIVE_KEY, JSON.stringify(activated), ACTIVE_KEY_TTL_MS);
    // Retired after the switch: tokens signed with the old key up to now expire within the window.
    const retired: PublicRecord = { jwk: current.jwk, publishedUntil: now + windowMs };
    await this.store.set(PUBLIC_PREFIX + current.kid, JSON.stringify(retired), windowMs);
    this.publicKeys.delete(current.kid);
    const scheduled = await this.readNext(current.kid);
    if (scheduled !== undefined && scheduled.kid !== next.kid)
      await this.store.delete(PUBLIC_PREFIX + scheduled.kid);
    await this.store.delete(NEXT_PREFIX + current.kid);
    this.knownNext = undefined;
    this.onRotated({ previousKid: current.kid, kid: next.kid, reason });
    return activated;
  }

  private async isScheduledSuccessor(activeKid: string, kid: string): Promise<boolean> {
    return (await this.readNext(activeKid))?.kid === kid;
  }

  /** Deletes a record and the public entry of its key (a key that never signed). */
  private async withdraw(storeKey: string, kid: string): Promise<void> {
    await this.store.delete(storeKey);
    await this.store.delete(PUBLIC_PREFIX + kid);
  }

  /** The record's private key, imported once; undefined when it is sealed with another secret. */
  private async openPrivate(record: ActiveRecord): Promise<CryptoKey | undefined> {
    const known = this.privateKeys.get(record.kid);
    if (known !== undefined) return known;
    const plain = this.keys.decrypt(record.sealedPrivateJwk, ACTIVE_KEY);
    if (plain === undefined) return undefined;
    const privateKey = (await importJWK(JSON.parse(plain) as JWK, SIGNING_ALG)) as CryptoKey;
    this.privateKeys.set(record.kid, privateKey);
    return privateKey;
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
    const now = this.now();
    return {
      kid,
      jwk,
      sealedPrivateJwk: this.keys.encrypt(JSON.stringify({ ...priv, kid, alg: SIGNING_ALG }), ACTIVE_KEY),
      createdAt: now,
      activatedAt: now,
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

function parseActive(value: string | undefined): ActiveRecord | NextRecord | undefined {
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
  const createdAt = typeof record.createdAt === 'number' ? record.createdAt : 0;
  const parsed: ActiveRecord = {
    kid: record.kid,
    jwk: record.jwk,
    sealedPrivateJwk: record.sealedPrivateJwk,
    createdAt,
    activatedAt: typeof record.activatedAt === 'number' ? record.activatedAt : createdAt,
  };
  const { publishedAt } = record as Partial<NextRecord>;
  return typeof publishedAt === 'number' ? ({ ...parsed, publishedAt } as NextRecord) : parsed;
}
