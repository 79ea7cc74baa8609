import { createHash, createHmac, randomBytes } from 'node:crypto';
import { STORE_KEY_PREFIXES } from '../../store/key-prefixes.js';
import { randomId, type SealingKeys } from '../../store/sealing-keys.js';
import type { StateStore } from '../../store/state-store.js';
import { InvalidGrantError } from '../facade/errors.js';

export const DEFAULT_REFRESH_TOKEN_TTL_SECONDS = 30 * 24 * 3600;
export const DEFAULT_FAMILY_MAX_LIFETIME_SECONDS = 90 * 24 * 3600;
/** REFRESH_REUSE_GRACE's default: how long a rotated token may be presented again by its client. */
export const DEFAULT_REFRESH_REUSE_GRACE_SECONDS = 30;
/**
 * How far along the family's chain a repeated presentation looks for the newest token: a client
 * rotating that often within the grace is already far outside anything real clients do.
 */
const MAX_SUCCESSOR_HOPS = 16;

const FAMILY_PREFIX = STORE_KEY_PREFIXES.refreshFamily;
const REVOKED_FAMILY_PREFIX = STORE_KEY_PREFIXES.refreshFamilyRevoked;
const TOKEN_PREFIX = STORE_KEY_PREFIXES.refreshToken;
const USED_PREFIX = STORE_KEY_PREFIXES.refreshTokenUsed;

/** 32 random bytes, base64url: exactly 43 characters. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** What one authorization granted; every refresh token of the family carries it. */
export interface RefreshFamilyInput {
  clientId: string;
  sub: string;
  scope: string;
  /** The resource (RFC 8707) the access tokens are for. */
  resource: string;
  email?: string;
  /** The provider's `email_verified` at the authorization: the allow-lists read it at each refresh. */
  emailVerified?: boolean;
  groups?: string[];
  /** Absolute lifetime of the family, from now; defaults to the service's setting. */
  maxLifetimeSeconds?: number;
  /** Epoch ms the user signed in and approved the grant (see GrantTimes); default: now. */
  signedInAt?: number;
  approvedAt?: number;
}

export interface RefreshFamily {
  id: string;
  clientId: string;
  sub: string;
  scope: string;
  resource: string;
  email?: string;
  emailVerified?: boolean;
  groups?: string[];
  /** Epoch ms. */
  createdAt: number;
  /** Epoch ms: no token of the family is honoured after this, however recently it was rotated. */
  expiresAt: number;
  /**
   * Epoch ms the user signed in and approved the grant, which the admin revocation cut-offs are
   * compared with; absent on families of an older version (their `createdAt` stands in).
   */
  signedInAt?: number;
  approvedAt?: number;
}

export interface IssuedRefreshToken {
  /** The opaque token for the client; the store only ever sees its SHA-256. */
  token: string;
  /** Epoch ms. */
  expiresAt: number;
  family: RefreshFamily;
}

export interface RotatedRefreshToken extends IssuedRefreshToken {
  /**
   * True when this answers a token presented again within the reuse grace: `token` is the
   * successor an earlier request already received (the family stays one chain), not a new one.
   */
  repeated: boolean;
}

export type RefreshTokenFailure =
  | 'invalid'
  | 'expired'
  | 'revoked'
  | 'reuse_detected'
  | 'client_mismatch'
  | 'unreadable';

/** A refresh token the token endpoint refuses: always `invalid_grant`, the failure as its `reason`. */
function refused(reason: RefreshTokenFailure, message: string): InvalidGrantError {
  return new InvalidGrantError(message, { reason });
}

export interface RefreshTokensOptions {
  /** Lifetime of one refresh token (each rotation starts a new one), capped by the family's. */
  tokenTtlSeconds?: number;
  familyMaxLifetimeSeconds?: number;
  /**
   * REFRESH_REUSE_GRACE: seconds after a token's rotation during which the same client presenting
   * it again gets the successor instead of the family's revocation; 0 = every reuse revokes.
   */
  reuseGraceSeconds?: number;
  /**
   * Called with a family's id before the family is revoked, whatever revokes it (RFC 7009, the
   * admin API, a user's or client's revocation, reuse detection): the authorization server ends
   * the access tokens minted from the family here (AccessTokens.revokeGrant).
   */
  onFamilyRevoked?: (familyId: string) => Promise<void>;
  /** Epoch ms; tests move it. */
  now?: () => number;
}

/** What `refresh-token:<sha256>` holds. */
interface TokenRecord {
  familyId: string;
  expiresAt: number;
}

/** What `refresh-used:<sha256>` holds: when the token was rotated (epoch ms). */
interface SpentRecord {
  at: number;
}

/**
 * The family as sealed in the store: what RefreshFamily shows, and the secret its successor
 * tokens are derived from. The secret never leaves this module (not in `list()`, nor in the
 * family handed to callers).
 */
interface SealedFamily extends RefreshFamily {
  /** 32 random bytes, base64url; absent on families of an older version (they rotate strictly). */
  successorKey?: string;
}

/** SHA-256 of the token, base64url: the only form in which a refresh token reaches the store. */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/**
 * Opaque, rotating refresh tokens (OAuth 2.1 §4.3.1, MCP security best practices).
 *
 * Store layout (token values appear only as SHA-256 hashes):
 * - `refresh-family:<id>`: the family (who, which client, scope, resource, and the secret its
 *   successors are derived from), sealed with SealingKeys bound to its key (it holds email and
 *   groups); TTL = the family's absolute lifetime.
 * - `refresh-family-revoked:<id>`: tombstone, so a revoked family is told apart from an expired one.
 * - `refresh-token:<hash>`: { familyId, expiresAt } for every token issued, used ones included,
 *   until the token would have expired, so a replay is recognised.
 * - `refresh-used:<hash>`: the single-use marker { at: when it was rotated }, claimed with
 *   setIfAbsent: of any number of concurrent rotations, on any number of instances, exactly one
 *   claims it.
 *
 * Reuse grace (REFRESH_REUSE_GRACE). Real clients refresh from several processes at once (two
 * editor windows sharing one credential file): strict single use turns the second refresh into
 * "reuse" and logs the user out. So a token presented again by its own client within the grace
 * after its rotation is answered with the *same* successor the first request got, not a sibling:
 * the family stays a single chain (no branch an attacker could keep alive unnoticed), the answer
 * is idempotent (a client that lost a response and retries gets what it missed), and nothing new
 * has to be stored per answer. The successor is not stored either: it is HMAC(family secret,
 * presented token), so whichever instance answers derives it, and only a holder of the presented
 * token can. If the successor has itself been rotated meanwhile, the newest token of the chain
 * is returned instead, so the answer never hands out a spent token. The access token of the
 * answer is minted anew (it is cheap, and each carries the grant id, so revoking the grant ends
 * them all).
 *
 * Outside the grace, a token whose marker is claimed is reuse: either an attacker replays a
 * stolen token or the client lost a response long ago; the two cannot be told apart, so the
 * whole family is revoked (OAuth 2.1 §4.3.1). A spent token presented by another client is reuse
 * too, whenever it comes: that client never held it. With a grace of 0 every second presentation
 * revokes, as the MCP security best practices ask in their strictest reading.
 */
export class RefreshTokens {
  private readonly tokenTtlMs: number;
  private readonly familyMaxLifetimeMs: number;
  private readonly reuseGraceMs: number;
  private readonly now: () => number;
  private readonly onFamilyRevoked: ((familyId: string) => Promise<void>) | undefined;

  constructor(
    private readonly store: StateStore,
    private readonly keys: SealingKeys,
    options: RefreshTokensOptions = {},
  ) {
    this.tokenTtlMs = seconds(
      'tokenTtlSeconds',
      options.tokenTtlSeconds ?? DEFAULT_REFRESH_TOKEN_TTL_SECONDS,
    );
    this.familyMaxLifetimeMs = seconds(
      'familyMaxLifetimeSeconds',
      options.familyMaxLifetimeSeconds ?? DEFAULT_FAMILY_MAX_LIFETIME_SECONDS,
    );
    const grace = options.reuseGraceSeconds ?? DEFAULT_REFRESH_REUSE_GRACE_SECONDS;
    if (!Number.isFinite(grace) || grace < 0) {
      throw new RangeError(`reuseGraceSeconds must be a number >= 0, got ${grace}`);
    }
    this.reuseGraceMs = grace * 1000;
    this.now = options.now ?? Date.now;
    this.onFamilyRevoked = options.onFamilyRevoked;
  }

  /** Starts a family for a new authorization and returns its first refresh token. */
  async issue(input: RefreshFamilyInput): Promise<IssuedRefreshToken> {
    const lifetimeMs =
      input.maxLifetimeSeconds === undefined
        ? this.familyMaxLifetimeMs
        : seconds('maxLifetimeSeconds', input.maxLifetimeSeconds);
    const now = this.now();
    const family: SealedFamily = {
      id: randomId(),
      clientId: input.clientId,
      sub: input.sub,
      scope: input.scope,
      resource: input.resource,
      ...(input.email !== undefined ? { email: input.email } : {}),
      ...(input.emailVerified !== undefined ? { emailVerified: input.emailVerified } : {}),
      ...(input.groups !== undefined ? { groups: [...input.groups] } : {}),
      createdAt: now,
      expiresAt: now + lifetimeMs,
      signedInAt: input.signedInAt ?? now,
      approvedAt: input.approvedAt ?? now,
      successorKey: randomBytes(32).toString('base64url'),
    };
    const key = FAMILY_PREFIX + family.id;
    await this.store.set(key, this.keys.encrypt(JSON.stringify(family), key), lifetimeMs);
    const token = randomBytes(32).toString('base64url');
    return this.recordToken(token, withoutSecret(family), now);
  }

  /**
   * Exchanges a refresh token for its successor. The presented token is spent whatever happens
   * next; presenting a spent one revokes its family and throws `reuse_detected`, unless the same
   * client presents it within the reuse grace (see the class comment): then the answer is the
   * chain's newest token, `repeated`. With `clientId`, an unspent token issued to another client
   * is refused (RFC 6749 §6) without being spent; so is a request `check` throws for (a
   * `resource` or `scope` the grant does not cover): a client that asked wrongly keeps its grant
   * instead of losing it to reuse detection at its next try.
   */
  async rotate(
    token: string,
    options: { clientId?: string; check?: (family: RefreshFamily) => void } = {},
  ): Promise<RotatedRefreshToken> {
    const hash = this.hashIfWellFormed(token);
    const record =
      hash === undefined ? undefined : parseTokenRecord(await this.store.get(TOKEN_PREFIX + hash));
    if (hash === undefined || record === undefined) {
      throw refused('invalid', 'unknown or expired refresh token');
    }
    const now = this.now();
    const sealed = await this.liveFamily(record.familyId, now);
    const family = withoutSecret(sealed);
    if (now >= record.expiresAt) throw refused('expired', 'the refresh token has expired');
    if (options.clientId !== undefined && options.clientId !== family.clientId) {
      // Another client never held this token: presenting it once it is spent is theft.
      if ((await this.store.get(USED_PREFIX + hash)) !== undefined) await this.reuseDetected(family.id);
      throw refused('client_mismatch', 'the refresh token was issued to another client');
    }
    options.check?.(family);
    const { successorKey } = sealed;
    const successor =
      successorKey === undefined ? randomBytes(32).toString('base64url') : derive(successorKey, token);
    // Recorded before the claim: a repeated presentation that sees the claim can hand the
    // successor out at once. Derived successors are the same for every request, so whoever
    // writes first wins and the rest change nothing.
    const issued = await this.recordToken(successor, family, now);
    const spent: SpentRecord = { at: now };
    if (await this.store.setIfAbsent(USED_PREFIX + hash, JSON.stringify(spent), record.expiresAt - now)) {
      return { ...issued, repeated: false };
    }
    if (successorKey === undefined) {
      // A random successor nobody will ever receive.
      await this.store.delete(TOKEN_PREFIX + hashRefreshToken(successor));
    } else if (this.withinGrace(await this.store.get(USED_PREFIX + hash), now)) {
      const newest = await this.newestOfChain(successorKey, successor);
      const newestRecord = parseTokenRecord(await this.store.get(TOKEN_PREFIX + hashRefreshToken(newest)));
      return {
        ...issued,
        token: newest,
        expiresAt: newestRecord?.expiresAt ?? issued.expiresAt,
        repeated: true,
      };
    }
    return this.reuseDetected(family.id);
  }

  /** Whether a spent marker says the token was rotated no longer than the grace ago. */
  private withinGrace(marker: string | undefined, now: number): boolean {
    const spent = parseSpentRecord(marker);
    return this.reuseGraceMs > 0 && spent !== undefined && now - spent.at <= this.reuseGraceMs;
  }

  /** From `token` on, the first token of the chain that is not spent yet (bounded). */
  private async newestOfChain(successorKey: string, token: string): Promise<string> {
    let current = token;
    for (let hop = 0; hop < MAX_SUCCESSOR_HOPS; hop++) {
      if ((await this.store.get(USED_PREFIX + hashRefreshToken(current))) === undefined) return current;
      current = derive(successorKey, current);
    }
    return current;
  }

  private async reuseDetected(familyId: string): Promise<never> {
    await this.revokeFamily(familyId);
    throw refused('reuse_detected', 'refresh token reuse: the whole grant has been revoked');
  }

  /**
   * RFC 7009: revokes the grant the token belongs to. An unknown, expired or malformed token is
   * not an error ('unknown'); a token of another client is left alone ('client_mismatch').
   */
  async revoke(
    token: string,
    options: { clientId?: string } = {},
  ): Promise<'revoked' | 'unknown' | 'client_mismatch'> {
    const hash = this.hashIfWellFormed(token);
    if (hash === undefined) return 'unknown';
    const record = parseTokenRecord(await this.store.get(TOKEN_PREFIX + hash));
    if (record === undefined) return 'unknown';
    const family = await this.readFamily(record.familyId);
    if (family === undefined) return 'unknown';
    if (options.clientId !== undefined && options.clientId !== family.clientId) return 'client_mismatch';
    await this.revokeFamily(family.id);
    return 'revoked';
  }

  /**
   * Revokes every token of the family, used or not, and (through `onFamilyRevoked`) the access
   * tokens minted from it; true when there was a live family.
   */
  async revokeFamily(familyId: string): Promise<boolean> {
    const key = FAMILY_PREFIX + familyId;
    const sealed = await this.store.get(key);
    if (sealed === undefined) return false;
    // Access tokens first: once the family is gone nothing else remembers which tokens it minted.
    await this.onFamilyRevoked?.(familyId);
    const family = this.unseal(sealed, familyId);
    const remainingMs = family === undefined ? this.familyMaxLifetimeMs : family.expiresAt - this.now();
    // Tombstone first: between the two writes the family is already refused.
    if (remainingMs > 0) await this.store.set(REVOKED_FAMILY_PREFIX + familyId, '1', remainingMs);
    await this.store.delete(key);
    return true;
  }

  /** Revokes every family of a user (allow-list removal, admin "delete user"); how many. */
  revokeSubject(sub: string): Promise<number> {
    return this.revokeWhere((family) => family.sub === sub);
  }

  /** Revokes every family granted to a client (admin "delete client"); how many. */
  revokeClient(clientId: string): Promise<number> {
    return this.revokeWhere((family) => family.clientId === clientId);
  }

  /** Every live family (the grants MCP clients hold), for the admin API; no token values. */
  async list(): Promise<RefreshFamily[]> {
    const keys = await this.store.keys(FAMILY_PREFIX);
    const families = await Promise.all(keys.map((key) => this.readFamily(key.slice(FAMILY_PREFIX.length))));
    return families.filter((f): f is RefreshFamily => f !== undefined);
  }

  private async revokeWhere(matches: (family: RefreshFamily) => boolean): Promise<number> {
    const revoked = await Promise.all(
      (await this.list()).filter(matches).map((family) => this.revokeFamily(family.id)),
    );
    return revoked.filter(Boolean).length;
  }

  /** The family when it is live, for callers that need it without rotating. */
  async readFamily(familyId: string): Promise<RefreshFamily | undefined> {
    const sealed = await this.store.get(FAMILY_PREFIX + familyId);
    if (sealed === undefined) return undefined;
    const family = this.unseal(sealed, familyId);
    return family !== undefined && this.now() < family.expiresAt ? withoutSecret(family) : undefined;
  }

  private async liveFamily(familyId: string, now: number): Promise<SealedFamily> {
    const sealed = await this.store.get(FAMILY_PREFIX + familyId);
    if (sealed === undefined) {
      const revoked = (await this.store.get(REVOKED_FAMILY_PREFIX + familyId)) !== undefined;
      throw revoked
        ? refused('revoked', 'the grant of this refresh token has been revoked')
        : refused('expired', 'the grant of this refresh token has expired');
    }
    const family = this.unseal(sealed, familyId);
    if (family === undefined) {
      throw refused('unreadable', 'the grant cannot be decrypted (SESSION_SECRET changed?)');
    }
    if (now >= family.expiresAt) throw refused('expired', 'the grant has reached its lifetime');
    return family;
  }

  /** Makes `token` a live token of the family; a record already there (same token) is kept. */
  private async recordToken(token: string, family: RefreshFamily, now: number): Promise<IssuedRefreshToken> {
    const expiresAt = Math.min(now + this.tokenTtlMs, family.expiresAt);
    const record: TokenRecord = { familyId: family.id, expiresAt };
    await this.store.setIfAbsent(
      TOKEN_PREFIX + hashRefreshToken(token),
      JSON.stringify(record),
      expiresAt - now,
    );
    return { token, expiresAt, family };
  }

  private hashIfWellFormed(token: string): string | undefined {
    return typeof token === 'string' && TOKEN_SHAPE.test(token) ? hashRefreshToken(token) : undefined;
  }

  private unseal(sealed: string, familyId: string): SealedFamily | undefined {
    const plain = this.keys.decrypt(sealed, FAMILY_PREFIX + familyId);
    if (plain === undefined) return undefined;
    try {
      const family = JSON.parse(plain) as SealedFamily;
      return family.id === familyId && typeof family.expiresAt === 'number' ? family : undefined;
    } catch {
      return undefined;
    }
  }
}

/** The family as callers see it: the successor secret stays in this module. */
function withoutSecret(family: SealedFamily): RefreshFamily {
  const { successorKey: _secret, ...visible } = family;
  return visible;
}

/**
 * The successor of `token` in its family: 32 bytes of HMAC-SHA256 under the family's secret,
 * base64url (the shape of every refresh token). Deterministic, so every instance answering a
 * repeated presentation derives the same one; unpredictable without the token and the secret.
 */
function derive(successorKey: string, token: string): string {
  return createHmac('sha256', Buffer.from(successorKey, 'base64url'))
    .update('refresh-token-successor\u0000')
    .update(token)
    .digest('base64url');
}

function seconds(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new RangeError(`${name} must be a positive number, got ${value}`);
  return value * 1000;
}

/** A marker of an older version holds the family id: it has no time, so it gets no grace. */
function parseSpentRecord(value: string | undefined): SpentRecord | undefined {
  if (value === undefined) return undefined;
  try {
    const spent = JSON.parse(value) as Partial<SpentRecord>;
    return typeof spent.at === 'number' && Number.isFinite(spent.at) ? { at: spent.at } : undefined;
  } catch {
    return undefined;
  }
}

function parseTokenRecord(value: string | undefined): TokenRecord | undefined {
  if (value === undefined) return undefined;
  try {
    const record = JSON.parse(value) as Partial<TokenRecord>;
    return typeof record.familyId === 'string' && typeof record.expiresAt === 'number'
      ? { familyId: record.familyId, expiresAt: record.expiresAt }
      : undefined;
  } catch {
    return undefined;
  }
}
