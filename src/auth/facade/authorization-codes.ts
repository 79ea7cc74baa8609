import { createHash, randomBytes } from 'node:crypto';
import { STORE_KEY_PREFIXES } from '../../store/key-prefixes.js';
import type { SealingKeys } from '../../store/sealing-keys.js';
import type { StateStore } from '../../store/state-store.js';

/**
 * Authorization codes: 256 random bits, single use, 60 s, stored only under their SHA-256.
 *
 * Store layout:
 * - `authz-code:<hash>`: the grant (sealed with SealingKeys bound to the key: it names the user),
 *   taken (read and deleted at once) by the one redemption that wins;
 * - `authz-code-used:<hash>`: written by that redemption, then overwritten with what it issued
 *   (access token jti, refresh family), so a replay can revoke it (OAuth 2.1 §4.1.3);
 * - `authz-code-replayed:<hash>`: set by a replay, read by the redemption after it issued, so a
 *   replay racing the first redemption still gets its tokens revoked.
 */

export const AUTHORIZATION_CODE_TTL_MS = 60_000;
/** How long a redeemed code is remembered, so a replay is recognised and answered by revocation. */
export const USED_CODE_TTL_MS = 60 * 60 * 1000;

const CODE_PREFIX = STORE_KEY_PREFIXES.authorizationCode;
const USED_PREFIX = STORE_KEY_PREFIXES.authorizationCodeUsed;
const REPLAYED_PREFIX = STORE_KEY_PREFIXES.authorizationCodeReplayed;
/** 32 random bytes, base64url. */
const CODE_SHAPE = /^[A-Za-z0-9_-]{43}$/;

/** What the user approved at /authorize, bound to the code. */
export interface AuthorizationGrant {
  clientId: string;
  redirectUri: string;
  /** S256 challenge (base64url SHA-256 of the verifier). */
  codeChallenge: string;
  resource: string;
  scope: string;
  sub: string;
  email?: string;
  emailVerified?: boolean;
  groups: string[];
  /** The browser session that consented. */
  sessionId: string;
  /**
   * Epoch ms the user signed in (the session's start) and the code was issued (the approval):
   * a revocation of the user covers grants from sign-ins up to it, one of the client grants
   * approved up to it. Absent on codes of an older version: covered by any revocation.
   */
  signedInAt?: number;
  approvedAt?: number;
}

/** What a redemption issued, for revocation on replay. */
export interface IssuedFromCode {
  jti?: string;
  /** Epoch seconds: the access token's expiry. */
  accessTokenExpiresAt?: number;
  refreshFamilyId?: string;
}

export type Redemption =
  | { kind: 'redeemed'; hash: string; grant: AuthorizationGrant }
  | { kind: 'replayed'; hash: string; issued: IssuedFromCode }
  | { kind: 'unknown' };

export function hashAuthorizationCode(code: string): string {
  return createHash('sha256').update(code, 'utf8').digest('base64url');
}

export class AuthorizationCodes {
  constructor(
    private readonly store: StateStore,
    private readonly keys: SealingKeys,
  ) {}

  /** Stores the grant and returns the code for the redirect. */
  async issue(grant: AuthorizationGrant): Promise<string> {
    const code = randomBytes(32).toString('base64url');
    const key = CODE_PREFIX + hashAuthorizationCode(code);
    await this.store.set(key, this.keys.encrypt(JSON.stringify(grant), key), AUTHORIZATION_CODE_TTL_MS);
    return code;
  }

  /**
   * Takes the code. The first caller gets the grant (and the code is spent, whatever the token
   * endpoint decides next); a later one gets `replayed` with what the first was issued.
   */
  async redeem(code: string): Promise<Redemption> {
    if (!CODE_SHAPE.test(code)) return { kind: 'unknown' };
    const hash = hashAuthorizationCode(code);
    const key = CODE_PREFIX + hash;
    const sealed = await this.store.take(key);
    if (sealed !== undefined) {
      await this.store.set(USED_PREFIX + hash, '{}', USED_CODE_TTL_MS);
      const plain = this.keys.decrypt(sealed, key);
      if (plain === undefined) return { kind: 'unknown' };
      return { kind: 'redeemed', hash, grant: JSON.parse(plain) as AuthorizationGrant };
    }
    const used = await this.store.get(USED_PREFIX + hash);
    if (used === undefined) return { kind: 'unknown' };
    await this.store.set(REPLAYED_PREFIX + hash, '1', USED_CODE_TTL_MS);
    return { kind: 'replayed', hash, issued: parseIssued(used) };
  }

  /**
   * Deletes the codes not redeemed yet whose grant matches (admin "revoke user" or "revoke
   * client"), so a code issued just before the revocation cannot mint tokens after it; how many.
   */
  async revokeWhere(matches: (grant: AuthorizationGrant) => boolean): Promise<number> {
    const keys = await this.store.keys(CODE_PREFIX);
    const revoked = await Promise.all(
      keys.map(async (key) => {
        const sealed = await this.store.get(key);
        const plain = sealed === undefined ? undefined : this.keys.decrypt(sealed, key);
        if (plain === undefined || !matches(JSON.parse(plain) as AuthorizationGrant)) return false;
        await this.store.delete(key);
        return true;
      }),
    );
    return revoked.filter(Boolean).length;
  }

  /**
   * Records what the redemption of `hash` issued. True when the code was replayed meanwhile:
   * the caller then revokes what it issued instead of handing it out.
   */
  async recordIssued(hash: string, issued: IssuedFromCode): Promise<boolean> {
    await this.store.set(USED_PREFIX + hash, JSON.stringify(issued), USED_CODE_TTL_MS);
    return (await this.store.get(REPLAYED_PREFIX + hash)) !== undefined;
  }
}

function parseIssued(value: string): IssuedFromCode {
  try {
    const parsed = JSON.parse(value) as IssuedFromCode;
    return {
      ...(typeof parsed.jti === 'string' ? { jti: parsed.jti } : {}),
      ...(typeof parsed.accessTokenExpiresAt === 'number'
        ? { accessTokenExpiresAt: parsed.accessTokenExpiresAt }
        : {}),
      ...(typeof parsed.refreshFamilyId === 'string' ? { refreshFamilyId: parsed.refreshFamilyId } : {}),
    };
  } catch {
    return {};
  }
}
