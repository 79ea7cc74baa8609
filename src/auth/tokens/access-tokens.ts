import { createHash, randomBytes } from 'node:crypto';
import { errors, type JWTPayload, jwtVerify, SignJWT } from 'jose';
import { STORE_KEY_PREFIXES } from '../../store/key-prefixes.js';
import type { StateStore } from '../../store/state-store.js';
import { InvalidTokenError } from '../facade/errors.js';
import { SIGNING_ALG, type SigningKeys } from './signing-keys.js';
import { type VerifiedToken, VerifiedTokens } from './verified-tokens.js';

/** RFC 9068 media type of an access token JWT (`typ` header). */
export const ACCESS_TOKEN_TYP = 'at+jwt';

export const DEFAULT_CLOCK_TOLERANCE_SECONDS = 5;
/** Upper bound on the tolerance: more would let expired tokens live noticeably longer. */
export const MAX_CLOCK_TOLERANCE_SECONDS = 30;

const REVOKED_PREFIX = STORE_KEY_PREFIXES.revokedAccessToken;
/** `<prefix><encoded sub or client id>` = epoch seconds: tokens issued then or earlier are refused. */
const REVOKED_SUBJECT_PREFIX = STORE_KEY_PREFIXES.revokedSubject;
const REVOKED_CLIENT_PREFIX = STORE_KEY_PREFIXES.revokedClient;
/** `<prefix><grant id>`: every access token minted from that grant (refresh-token family) is refused. */
const REVOKED_GRANT_PREFIX = STORE_KEY_PREFIXES.revokedGrant;

/**
 * Verified tokens remembered per process, so a client's next request with the same token skips
 * the ES256 signature check (~0.1 ms of CPU, most of what a bearer request cost the proxy).
 * Bounded in count and in characters held; the least recently used goes first.
 */
const VERIFIED_CACHE_MAX_ENTRIES = 1000;
const VERIFIED_CACHE_MAX_CHARS = 4 * 1024 * 1024;

/** The issuer (`iss`) for a PUBLIC_URL: its origin, no path, no trailing slash. */
export function issuerFromPublicUrl(publicUrl: string): string {
  return new URL(publicUrl).origin;
}

export interface MintAccessTokenInput {
  sub: string;
  clientId: string;
  /** Space-separated scopes granted. */
  scope: string;
  /** The resource URL (RFC 8707) the token is for; becomes `aud`. */
  audience: string;
  email?: string;
  /** The provider's `email_verified`, when it sent one: the allow-lists read it on every request. */
  emailVerified?: boolean;
  groups?: string[];
  /**
   * The grant (refresh-token family) the token is minted from, carried as the `gid` claim so that
   * revoking the grant ends the token too (revokeGrant); absent for a client without refresh tokens.
   */
  grantId?: string;
  ttlSeconds: number;
}

export interface MintedAccessToken {
  token: string;
  jti: string;
  kid: string;
  /** Epoch seconds. */
  expiresAt: number;
}

/** Whose grant, and when it began: what the revocation cut-offs are compared with (epoch ms). */
export interface GrantTimes {
  sub: string;
  clientId: string;
  /** When the user signed in (the browser session's start). */
  signedInAt: number;
  /** When the user approved the grant (its authorization code was issued). */
  approvedAt: number;
}

/** What a verified token says. */
export interface AccessTokenClaims {
  sub: string;
  clientId: string;
  scope: string;
  audience: string;
  issuer: string;
  jti: string;
  /** Epoch seconds. */
  issuedAt: number;
  /** Epoch seconds. */
  expiresAt: number;
  email?: string;
  emailVerified?: boolean;
  groups?: string[];
}

export type AccessTokenFailure =
  | 'malformed'
  | 'algorithm'
  | 'unknown_key'
  | 'signature'
  | 'type'
  | 'issuer'
  | 'audience'
  | 'expired'
  | 'not_yet_valid'
  | 'claims'
  | 'revoked';

/**
 * A bearer token the proxy refuses: RFC 6750's `invalid_token` (what the client needs to know),
 * the failure as its `reason` (for logs and metrics).
 */
function refused(reason: AccessTokenFailure, message: string, cause?: unknown): InvalidTokenError {
  return new InvalidTokenError(message, cause === undefined ? { reason } : { reason, cause });
}

export interface AccessTokensOptions {
  /** PUBLIC_URL (its origin becomes `iss`). */
  publicUrl: string;
  /** Seconds of clock skew tolerated on exp/nbf; at most 30. */
  clockToleranceSeconds?: number;
  /** Epoch ms; tests move it. */
  now?: () => number;
}

export interface VerifyAccessTokenOptions {
  /** The resource URL this request is for: `aud` must be exactly this. */
  audience: string;
  /** Defaults to this service's issuer. */
  issuer?: string;
}

/**
 * Mints and verifies the proxy's access tokens: RFC 9068 JWTs signed ES256 with the active key
 * of SigningKeys. Revocation is by `jti`, by grant (the `gid` claim: revoking a refresh-token
 * family ends the access tokens minted from it), or of everything a user or a client was issued
 * up to now (a cut-off time per subject or client id); all are remembered in the store until the
 * tokens they cover have expired, so they hold across instances, and all are read on every
 * verification in one store call (MGET on Redis): a revocation bites at the next request on every
 * instance. A cut-off has one-second resolution (`iat`): a token minted in the very second of the
 * revocation is refused too.
 */
export class AccessTokens {
  readonly issuer: string;
  private readonly clockTolerance: number;
  private readonly now: () => number;
  private readonly verified = new VerifiedTokens(VERIFIED_CACHE_MAX_ENTRIES, VERIFIED_CACHE_MAX_CHARS);

  constructor(
    private readonly signingKeys: SigningKeys,
    private readonly store: StateStore,
    options: AccessTokensOptions,
  ) {
    this.issuer = issuerFromPublicUrl(options.publicUrl);
    const tolerance = options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
    if (!Number.isFinite(tolerance) || tolerance < 0 || tolerance > MAX_CLOCK_TOLERANCE_SECONDS) {
      throw new RangeError(
        `clockToleranceSeconds must be between 0 and ${MAX_CLOCK_TOLERANCE_SECONDS}, got ${tolerance}`,
      );
    }
    this.clockTolerance = tolerance;
    this.now = options.now ?? Date.now;
  }

  async mintAccessToken(input: MintAccessTokenInput): Promise<MintedAccessToken> {
    const { ttlSeconds } = input;
    if (
      !Number.isInteger(ttlSeconds) ||
      ttlSeconds <= 0 ||
      ttlSeconds > this.signingKeys.maxTokenTtlSeconds
    ) {
      // A longer token could outlive its key's publication after a rotation.
      throw new RangeError(
        `ttlSeconds must be an integer between 1 and ${this.signingKeys.maxTokenTtlSeconds}, got ${ttlSeconds}`,
      );
    }
    for (const [name, value] of [
      ['sub', input.sub],
      ['clientId', input.clientId],
      ['audience', input.audience],
    ] as const) {
      if (typeof value !== 'string' || value === '')
        throw new TypeError(`${name} must be a non-empty string`);
    }
    const { kid, privateKey } = await this.signingKeys.activeKey();
    const iat = Math.floor(this.now() / 1000);
    const exp = iat + ttlSeconds;
    const jti = randomBytes(16).toString('base64url');
    const claims: JWTPayload = { client_id: input.clientId, scope: input.scope };
    if (input.email !== undefined) claims.email = input.email;
    if (input.emailVerified !== undefined) claims.email_verified = input.emailVerified;
    if (input.groups !== undefined) claims.groups = [...input.groups];
    if (input.grantId !== undefined) claims.gid = grantDigest(input.grantId);
    const token = await new SignJWT(claims)
      .setProtectedHeader({ alg: SIGNING_ALG, kid, typ: ACCESS_TOKEN_TYP })
      .setIssuer(this.issuer)
      .setSubject(input.sub)
      .setAudience(input.audience)
      .setIssuedAt(iat)
      .setNotBefore(iat)
      .setExpirationTime(exp)
      .setJti(jti)
      .sign(privateKey);
    return { token, jti, kid, expiresAt: exp };
  }

  /**
   * The claims of a token this proxy issued for `audience`; an InvalidTokenError (with the
   * failure as its `reason`) otherwise. A store that
   * cannot be reached rejects with StoreUnavailableError instead (503, never fail open).
   */
  async verifyAccessToken(token: string, options: VerifyAccessTokenOptions): Promise<AccessTokenClaims> {
    const { claims, revocationKeys } = await this.verifySigned(token, options);
    const { jti, subject, client, grant } = revocationKeys;
    // One store call for every revocation that may cover the token (one MGET on Redis).
    const [byJti, subjectCutoff, clientCutoff, byGrant] = await this.store.getMany(
      grant === undefined ? [jti, subject, client] : [jti, subject, client, grant],
    );
    if (
      byJti !== undefined ||
      byGrant !== undefined ||
      claims.issuedAt <= Number(subjectCutoff ?? Number.NEGATIVE_INFINITY) ||
      claims.issuedAt <= Number(clientCutoff ?? Number.NEGATIVE_INFINITY)
    ) {
      throw refused('revoked', 'the access token has been revoked');
    }
    return claims;
  }

  /**
   * Whether a revocation of the user or of the client covers a grant (an authorization code or a
   * refresh-token family): the user's cut-off is compared with when they signed in, so a sign-in
   * before the revocation yields nothing after it however its grants race the revocation; the
   * client's with when the grant was approved, so the client can be approved again at once.
   */
  async grantRevoked(grant: GrantTimes): Promise<boolean> {
    const [subjectCutoff, clientCutoff] = await Promise.all([
      this.store.get(REVOKED_SUBJECT_PREFIX + encodeURIComponent(grant.sub)),
      this.store.get(REVOKED_CLIENT_PREFIX + encodeURIComponent(grant.clientId)),
    ]);
    return (
      Math.floor(grant.signedInAt / 1000) <= Number(subjectCutoff ?? Number.NEGATIVE_INFINITY) ||
      Math.floor(grant.approvedAt / 1000) <= Number(clientCutoff ?? Number.NEGATIVE_INFINITY)
    );
  }

  /** Refuses every access token issued to the user `sub` until now (admin "revoke user"). */
  revokeSubject(sub: string): Promise<void> {
    return this.revokeIssuedUntilNow(REVOKED_SUBJECT_PREFIX + encodeURIComponent(sub));
  }

  /** Refuses every access token issued to the client until now (admin "revoke client"). */
  revokeClient(clientId: string): Promise<void> {
    return this.revokeIssuedUntilNow(REVOKED_CLIENT_PREFIX + encodeURIComponent(clientId));
  }

  private async revokeIssuedUntilNow(key: string): Promise<void> {
    const cutoff = Math.floor(this.now() / 1000);
    await this.store.set(key, String(cutoff), this.longestTokenLifeMs());
  }

  /**
   * How long a revocation that covers tokens issued until now must be kept: as long as the
   * longest of them can live (its lifetime, the clock tolerance, and a second for `iat` rounding);
   * after that it has nothing left to refuse.
   */
  private longestTokenLifeMs(): number {
    return (this.signingKeys.maxTokenTtlSeconds + this.clockTolerance + 1) * 1000;
  }

  /**
   * Refuses every access token minted from the grant (`gid`), on every instance from its next
   * request. Kept as long as such a token can live; the grant itself cannot mint new ones (its
   * refresh-token family is revoked by the caller).
   */
  async revokeGrant(grantId: string): Promise<void> {
    await this.store.set(REVOKED_GRANT_PREFIX + grantDigest(grantId), '1', this.longestTokenLifeMs());
  }

  /** Refuses the token with this `jti` until `expiresAt` (epoch seconds) has passed. */
  async revokeJti(jti: string, expiresAt: number): Promise<void> {
    const ttlMs = (expiresAt + this.clockTolerance) * 1000 - this.now();
    if (ttlMs <= 0) return; // already refused as expired
    await this.store.set(REVOKED_PREFIX + jti, '1', ttlMs);
  }

  /**
   * The signature and claims checks. A token that passed them before (same string, audience and
   * issuer) passes again without the signature check while its time claims still hold, as jose
   * checks them, and its kid still resolves to the key that verified it (so a key that is no
   * longer published refuses its tokens as before). Anything else takes the full check, whose
   * outcome is exactly the one without the cache. Revocation is not part of this: it is read
   * from the store on every call by verifyAccessToken.
   */
  private async verifySigned(token: string, options: VerifyAccessTokenOptions): Promise<VerifiedToken> {
    const issuer = options.issuer ?? this.issuer;
    if (typeof token !== 'string' || token === '') {
      throw refused('malformed', 'the access token is empty');
    }
    const known = this.verified.get(token);
    if (known !== undefined) {
      if (
        known.claims.audience === options.audience &&
        known.claims.issuer === issuer &&
        this.timeClaimsHold(known) &&
        (await this.signingKeys.verificationKey(known.kid)) === known.key
      ) {
        return known;
      }
      this.verified.delete(token);
    }
    let payload: JWTPayload;
    let verifiedWith: { kid: string; key: CryptoKey } | undefined;
    try {
      ({ payload } = await jwtVerify(
        token,
        async (header) => {
          if (typeof header.kid !== 'string' || header.kid === '') {
            throw refused('unknown_key', 'the access token has no kid');
          }
          const key = await this.signingKeys.verificationKey(header.kid);
          if (key === undefined) {
            throw refused('unknown_key', 'the access token was signed with an unknown key');
          }
          verifiedWith = { kid: header.kid, key };
          return key;
        },
        {
          algorithms: [SIGNING_ALG],
          typ: ACCESS_TOKEN_TYP,
          issuer,
          audience: options.audience,
          clockTolerance: this.clockTolerance,
          currentDate: new Date(this.now()),
          requiredClaims: ['sub', 'exp', 'iat', 'jti', 'client_id'],
        },
      ));
    } catch (error) {
      throw classify(error);
    }
    // jose accepts an array that merely contains the audience; ours carry exactly one.
    const aud = Array.isArray(payload.aud) && payload.aud.length === 1 ? payload.aud[0] : payload.aud;
    if (aud !== options.audience) {
      throw refused('audience', 'the access token is for another audience as well');
    }
    const { sub, jti, exp, iat, client_id: clientId, scope, email, groups, gid } = payload;
    const emailVerified = payload.email_verified;
    if (
      typeof sub !== 'string' ||
      typeof jti !== 'string' ||
      typeof exp !== 'number' ||
      typeof iat !== 'number' ||
      typeof clientId !== 'string' ||
      (scope !== undefined && typeof scope !== 'string') ||
      (email !== undefined && typeof email !== 'string') ||
      (emailVerified !== undefined && typeof emailVerified !== 'boolean') ||
      (groups !== undefined && !(Array.isArray(groups) && groups.every((g) => typeof g === 'string'))) ||
      (gid !== undefined && (typeof gid !== 'string' || gid === ''))
    ) {
      throw refused('claims', 'the access token claims have the wrong types');
    }
    // Frozen: the same object is handed to every later caller of this token.
    const claims: AccessTokenClaims = Object.freeze({
      sub,
      clientId,
      scope: scope ?? '',
      audience: options.audience,
      issuer,
      jti,
      issuedAt: iat,
      expiresAt: exp,
      ...(email !== undefined ? { email } : {}),
      ...(emailVerified !== undefined ? { emailVerified } : {}),
      ...(groups !== undefined ? { groups: Object.freeze([...(groups as string[])]) as string[] } : {}),
    });
    // jose resolves the key before it checks the signature: a verified token always has one.
    if (verifiedWith === undefined) throw refused('unknown_key', 'the access token has no key');
    const verified: VerifiedToken = {
      claims,
      ...verifiedWith,
      notBefore: typeof payload.nbf === 'number' ? payload.nbf : undefined,
      revocationKeys: {
        jti: REVOKED_PREFIX + jti,
        subject: REVOKED_SUBJECT_PREFIX + encodeURIComponent(sub),
        client: REVOKED_CLIENT_PREFIX + encodeURIComponent(clientId),
        ...(gid !== undefined ? { grant: REVOKED_GRANT_PREFIX + (gid as string) } : {}),
      },
    };
    this.verified.set(token, verified);
    return verified;
  }

  /** jose's exp and nbf checks (whole seconds, with the clock tolerance), for a remembered token. */
  private timeClaimsHold(known: VerifiedToken): boolean {
    const now = Math.floor(this.now() / 1000);
    return (
      known.claims.expiresAt > now - this.clockTolerance &&
      (known.notBefore === undefined || known.notBefore <= now + this.clockTolerance)
    );
  }
}

/**
 * What the `gid` claim carries and the revoked-grants keys are named by: a digest of the grant's
 * id, so a token's holder (or a log it lands in) never learns the id of a store record.
 */
function grantDigest(grantId: string): string {
  return createHash('sha256').update('mcp-oidc-proxy grant\u0000').update(grantId).digest('base64url');
}

/** jose's errors -> ours; anything that is not about the token (store down) passes through. */
function classify(error: unknown): unknown {
  if (error instanceof InvalidTokenError) return error;
  const fail = (reason: AccessTokenFailure, message: string): InvalidTokenError =>
    refused(reason, message, error);
  if (error instanceof errors.JWTExpired) return fail('expired', 'the access token has expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'iss':
        return fail('issuer', 'the access token was issued by someone else');
      case 'aud':
        return fail('audience', 'the access token is for another resource');
      case 'nbf':
        return fail('not_yet_valid', 'the access token is not valid yet');
      case 'typ':
        return fail('type', 'the token is not an access token (typ)');
      default:
        return fail('claims', `the access token claim "${error.claim}" is missing or invalid`);
    }
  }
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) {
    return fail('algorithm', 'the access token is not signed with ES256');
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) {
    return fail('signature', 'the access token signature does not verify');
  }
  if (error instanceof errors.JOSEError) return fail('malformed', 'the access token is malformed');
  return error;
}
