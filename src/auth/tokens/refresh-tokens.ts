import { createHash, randomBytes } from 'node:crypto';
import { STORE_KEY_PREFIXES } from '../../store/key-prefixes.js';
import { randomId, type SealingKeys } from '../../store/sealing-keys.js';
import type { StateStore } from '../../store/state-store.js';
import { InvalidGrantError } from '../facade/errors.js';

export const DEFAULT_REFRESH_TOKEN_TTL_SECONDS = 30 * 24 * 3600;
export const DEFAULT_FAMILY_MAX_LIFETIME_SECONDS = 90 * 24 * 3600;

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
  /** Epoch ms; tests move it. */
  now?: () => number;
}

/** What `refresh-token:<sha256>` holds. */
interface TokenRecord {
  familyId: string;
  expiresAt: number;
}

/** SHA-256 of the token, base64url: the only form in which a refresh token reaches the store. */
export function hashRefreshToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/**
 * Opaque, rotating refresh tokens (OAuth 2.1 §4.3.1, MCP security best practices).
 *
 * Store layout (token values appear only as SHA-256 hashes):
 * - `refresh-family:<id>`: the family (who, which client, scope, resource), sealed with SealingKeys
 *   bound to its key (it holds email and groups); TTL = the family's absolute lifetime.
 * - `refresh-family-revoked:<id>`: tombstone, so a revoked family is told apart from an expired one.
 * - `refresh-token:<hash>`: { familyId, expiresAt } for every token issued, used ones included,
 *   until the token would have expired, so a replay is recognised.
 * - `refresh-used:<hash>`: the single-use marker, claimed with setIfAbsent.
 *
 * Rotation claims the marker atomically. A token whose marker is already claimed is reuse: either
 * an attacker replays a stolen token or the client lost a response; the two cannot be told apart,
 * so the whole family is revoked (OAuth 2.1 §4.3.1). Two concurrent rotations of one token are
 * the same case: exactly one claims the marker and gets a new token, the other gets
 * `reuse_detected` and revokes the family, so the winner's new token is refused at its next use
 * too and the client must authorize again. A client that refreshes from two places at once with
 * one token is indistinguishable from theft; the MCP security best practices ask for exactly this.
 */
export class RefreshTokens {
  private readonly tokenTtlMs: number;
  private readonly familyMaxLifetimeMs: number;
  private readonly now: () => number;

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
    this.now = options.now ?? Date.now;
  }

  /** Starts a family for a new authorization and returns its first refresh token. */
  async issue(input: RefreshFamilyInput): Promise<IssuedRefreshToken> {
    const lifetimeMs =
      input.maxLifetimeSeconds === undefined
        ? this.familyMaxLifetimeMs
        : seconds('maxLifetimeSeconds', input.maxLifetimeSeconds);
    const now = this.now();
    const family: RefreshFamily = {
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
    };
    const key = FAMILY_PREFIX + family.id;
    await this.store.set(key, this.keys.encrypt(JSON.stringify(family), key), lifetimeMs);
    return this.newToken(family, now);
  }

  /**
   * Exchanges a refresh token for its successor. The presented token is spent whatever happens
   * next; presenting a spent one revokes its family and throws `reuse_detected`. With `clientId`,
   * a token issued to another client is refused (RFC 6749 §6) without being spent; so is a
   * request `check` throws for (a `resource` or `scope` the grant does not cover): a client
   * that asked wrongly keeps its grant instead of losing it to reuse detection at its next try.
   */
  async rotate(
    token: string,
    options: { clientId?: string; check?: (family: RefreshFamily) => void } = {},
  ): Promise<IssuedRefreshToken> {
    const hash = this.hashIfWellFormed(token);
    const record =
      hash === undefined ? undefined : parseTokenRecord(await this.store.get(TOKEN_PREFIX + hash));
    if (hash === undefined || record === undefined) {
      throw refused('invalid', 'unknown or expired refresh token');
    }
    const now = this.now();
    const family = await this.liveFamily(record.familyId, now);
    if (now >= record.expiresAt) throw refused('expired', 'the refresh token has expired');
    if (options.clientId !== undefined && options.clientId !== family.clientId) {
      throw refused('client_mismatch', 'the refresh token was issued to another client');
    }
    options.check?.(family);
    const first = await this.store.setIfAbsent(USED_PREFIX + hash, family.id, record.expiresAt - now);
    if (!first) {
      await this.revokeFamily(family.id);
      throw refused('reuse_detected', 'refresh token reuse: the whole grant has been revoked');
    }
    return this.newToken(family, now);
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

  /** Revokes every token of the family, used or not; true when there was a live family. */
  async revokeFamily(familyId: string): Promise<boolean> {
    const key = FAMILY_PREFIX + familyId;
    const sealed = await this.store.get(key);
    if (sealed === undefined) return false;
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
    return family !== undefined && this.now() < family.expiresAt ? family : undefined;
  }

  private async liveFamily(familyId: string, now: number): Promise<RefreshFamily> {
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

  private async newToken(family: RefreshFamily, now: number): Promise<IssuedRefreshToken> {
    const token = randomBytes(32).toString('base64url');
    const expiresAt = Math.min(now + this.tokenTtlMs, family.expiresAt);
    const record: TokenRecord = { familyId: family.id, expiresAt };
    await this.store.set(TOKEN_PREFIX + hashRefreshToken(token), JSON.stringify(record), expiresAt - now);
    return { token, expiresAt, family };
  }

  private hashIfWellFormed(token: string): string | undefined {
    return typeof token === 'string' && TOKEN_SHAPE.test(token) ? hashRefreshToken(token) : undefined;
  }

  private unseal(sealed: string, familyId: string): RefreshFamily | undefined {
    const plain = this.keys.decrypt(sealed, FAMILY_PREFIX + familyId);
    if (plain === undefined) return undefined;
    try {
      const family = JSON.parse(plain) as RefreshFamily;
      return family.id === familyId && typeof family.expiresAt === 'number' ? family : undefined;
    } catch {
      return undefined;
    }
  }
}

function seconds(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0)
    throw new RangeError(`${name} must be a positive number, got ${value}`);
  return value * 1000;
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
