import { calculateJwkThumbprint, exportSPKI, generateKeyPair, importJWK, SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidGrantError, InvalidTokenError } from '../../src/auth/facade/errors.js';
import {
  AccessTokens,
  issuerFromPublicUrl,
  type MintAccessTokenInput,
} from '../../src/auth/tokens/access-tokens.js';
import { hashRefreshToken, RefreshTokens } from '../../src/auth/tokens/refresh-tokens.js';
import {
  RETIREMENT_GRACE_SECONDS,
  SigningKeyError,
  SigningKeys,
} from '../../src/auth/tokens/signing-keys.js';
import { MemoryStateStore } from '../../src/store/memory.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';
import { StoreUnavailableError } from '../../src/store/state-store.js';

const PUBLIC_URL = 'https://proxy.example.com';
const RESOURCE = 'https://proxy.example.com/mcp';
const SECRET = 'unit-test-secret';

const stores: MemoryStateStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

function newStore(): MemoryStateStore {
  const store = new MemoryStateStore();
  stores.push(store);
  return store;
}

/** One proxy instance on `store`: its keys, access and refresh tokens, sharing a clock the test moves. */
function instance(
  store: MemoryStateStore,
  clock = { now: Date.now() },
  options: {
    secret?: string;
    maxTokenTtlSeconds?: number;
    publicUrl?: string;
    keyCacheMs?: number;
    reuseGraceSeconds?: number;
  } = {},
) {
  const now = (): number => clock.now;
  const keys = new SealingKeys(options.secret ?? SECRET);
  const signingKeys = new SigningKeys(store, keys, {
    maxTokenTtlSeconds: options.maxTokenTtlSeconds ?? 3600,
    keyCacheMs: options.keyCacheMs,
    now,
  });
  const access = new AccessTokens(signingKeys, store, { publicUrl: options.publicUrl ?? PUBLIC_URL, now });
  const refresh = new RefreshTokens(store, keys, {
    tokenTtlSeconds: 3600,
    familyMaxLifetimeSeconds: 86_400,
    reuseGraceSeconds: options.reuseGraceSeconds,
    // As the authorization server wires it: a revoked grant ends its access tokens.
    onFamilyRevoked: (familyId) => access.revokeGrant(familyId),
    now,
  });
  return { clock, keys, signingKeys, access, refresh };
}

const input: MintAccessTokenInput = {
  sub: 'alice',
  clientId: 'client-1',
  scope: 'mcp',
  audience: RESOURCE,
  email: 'alice@example.com',
  groups: ['eng'],
  ttlSeconds: 600,
};

/** The InvalidTokenError the promise rejects with (fails the test when it resolves or rejects otherwise). */
async function accessFailure(promise: Promise<unknown>): Promise<InvalidTokenError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InvalidTokenError);
  return error as InvalidTokenError;
}

async function refreshFailure(promise: Promise<unknown>): Promise<InvalidGrantError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InvalidGrantError);
  return error as InvalidGrantError;
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decodeSegment(token: string, index: number): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[index]!, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}

describe('SigningKeys', () => {
  it('persists the key in the store: a second instance uses the same kid and verifies the first one’s tokens', async () => {
    const store = newStore();
    const a = instance(store);
    const b = instance(store);
    const { token, kid } = await a.access.mintAccessToken(input);
    expect(await b.signingKeys.activeKid()).toBe(kid);
    const claims = await b.access.verifyAccessToken(token, { audience: RESOURCE });
    expect(claims).toMatchObject({
      sub: 'alice',
      clientId: 'client-1',
      scope: 'mcp',
      audience: RESOURCE,
      issuer: PUBLIC_URL,
      email: 'alice@example.com',
      groups: ['eng'],
    });
  });

  it('creates exactly one key when ten instances start at once', async () => {
    const store = newStore();
    const kids = await Promise.all(Array.from({ length: 10 }, () => instance(store).signingKeys.activeKid()));
    expect(new Set(kids).size).toBe(1);
    expect(await store.count('signing-key:public:')).toBe(1);
    const jwks = await instance(store).signingKeys.jwks();
    expect(jwks.keys.map((k) => k.kid)).toEqual([kids[0]]);
  });

  it('publishes only public members, with use, alg and an RFC 7638 kid', async () => {
    const store = newStore();
    const { signingKeys } = instance(store);
    const { keys } = await signingKeys.jwks();
    expect(keys).toHaveLength(1);
    const jwk = keys[0]!;
    expect(Object.keys(jwk).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwk.kid).toBe(await calculateJwkThumbprint({ kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y }));
  });

  it('keeps the private key encrypted at rest, bound to its store key', async () => {
    const store = newStore();
    const { signingKeys, keys } = instance(store);
    const kid = await signingKeys.activeKid();
    const raw = (await store.get('signing-key:active'))!;
    const record = JSON.parse(raw) as { jwk: Record<string, unknown>; sealedPrivateJwk: string };
    expect(record.jwk).not.toHaveProperty('d');
    expect(raw).not.toMatch(/"d":/);
    const opened = JSON.parse(keys.decrypt(record.sealedPrivateJwk, 'signing-key:active')!) as Record<
      string,
      unknown
    >;
    expect(opened).toMatchObject({ kty: 'EC', kid });
    expect(typeof opened.d).toBe('string');
    expect(raw).not.toContain(opened.d as string);
    // Bound to the slot: the same ciphertext does not open under another key name.
    expect(keys.decrypt(record.sealedPrivateJwk, `signing-key:public:${kid}`)).toBeUndefined();
  });

  it('refuses to sign with a key it cannot decrypt (different SESSION_SECRET), with a stable code', async () => {
    const store = newStore();
    await instance(store).signingKeys.activeKid();
    const other = instance(store, undefined, { secret: 'another-secret' });
    const error = await other.access.mintAccessToken(input).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(SigningKeyError);
    expect((error as SigningKeyError).code).toBe('SIGNING_KEY_UNREADABLE');
    expect((error as Error).message).toContain('SESSION_SECRET');
  });

  it('rotation keeps the previous key published until its longest token has expired', async () => {
    const store = newStore();
    const clock = { now: Date.now() };
    const a = instance(store, clock, { maxTokenTtlSeconds: 600 });
    const b = instance(store, clock, { maxTokenTtlSeconds: 600 });
    const old = await a.access.mintAccessToken(input);
    const newKid = await a.signingKeys.rotate();
    expect(newKid).not.toBe(old.kid);
    // The other instance picks the new key up at once.
    const fresh = await b.access.mintAccessToken(input);
    expect(fresh.kid).toBe(newKid);
    expect((await b.signingKeys.jwks()).keys.map((k) => k.kid)).toEqual([newKid, old.kid]);
    for (const verifier of [a, b]) {
      await expect(
        verifier.access.verifyAccessToken(old.token, { audience: RESOURCE }),
      ).resolves.toBeTruthy();
      await expect(
        verifier.access.verifyAccessToken(fresh.token, { audience: RESOURCE }),
      ).resolves.toBeTruthy();
    }

    // Just before the window closes the old key is still there; just after, it is gone.
    clock.now += (600 + RETIREMENT_GRACE_SECONDS) * 1000 - 1000;
    expect((await instance(store, clock).signingKeys.jwks()).keys).toHaveLength(2);
    clock.now += 2000;
    const later = instance(store, clock, { maxTokenTtlSeconds: 600 });
    expect((await later.signingKeys.jwks()).keys.map((k) => k.kid)).toEqual([newKid]);
    expect(await later.signingKeys.verificationKey(old.kid)).toBeUndefined();
    expect(await b.signingKeys.verificationKey(old.kid)).toBeUndefined();
  });

  it('two instances rotating at once agree on one successor', async () => {
    const store = newStore();
    const a = instance(store);
    const b = instance(store);
    const first = await a.signingKeys.activeKid();
    const [x, y] = await Promise.all([a.signingKeys.rotate(), b.signingKeys.rotate()]);
    expect(x).toBe(y);
    expect(x).not.toBe(first);
    expect(await a.signingKeys.activeKid()).toBe(x);
    expect((await b.signingKeys.jwks()).keys.map((k) => k.kid)).toEqual([x, first]);
    expect(await store.count('signing-key:public:')).toBe(2);
  });
});

describe('access tokens', () => {
  it('mints an RFC 9068 JWT: kid and typ in the header, the claims the resource needs', async () => {
    const store = newStore();
    const { access, clock } = instance(store);
    const minted = await access.mintAccessToken(input);
    const header = decodeSegment(minted.token, 0);
    expect(header).toEqual({ alg: 'ES256', kid: minted.kid, typ: 'at+jwt' });
    const payload = decodeSegment(minted.token, 1);
    const iat = Math.floor(clock.now / 1000);
    expect(payload).toMatchObject({
      iss: PUBLIC_URL,
      sub: 'alice',
      aud: RESOURCE,
      client_id: 'client-1',
      scope: 'mcp',
      iat,
      nbf: iat,
      exp: iat + 600,
      jti: minted.jti,
    });
    expect(minted.jti.length).toBeGreaterThanOrEqual(22);
    expect((await access.mintAccessToken(input)).jti).not.toBe(minted.jti);
  });

  it('carries the provider’s email_verified, so the allow-lists can read it on every request', async () => {
    const { access } = instance(newStore());
    for (const emailVerified of [false, true]) {
      const minted = await access.mintAccessToken({ ...input, emailVerified });
      expect(decodeSegment(minted.token, 1).email_verified).toBe(emailVerified);
      const claims = await access.verifyAccessToken(minted.token, { audience: RESOURCE });
      expect(claims.emailVerified).toBe(emailVerified);
    }
    const unknown = await access.verifyAccessToken((await access.mintAccessToken(input)).token, {
      audience: RESOURCE,
    });
    expect(unknown).not.toHaveProperty('emailVerified');
  });

  it('derives the issuer from the PUBLIC_URL origin', () => {
    expect(issuerFromPublicUrl('https://proxy.example.com/some/path/')).toBe('https://proxy.example.com');
    expect(issuerFromPublicUrl('http://localhost:8080')).toBe('http://localhost:8080');
  });

  it('refuses a lifetime longer than the keys allow', async () => {
    const { access } = instance(newStore(), undefined, { maxTokenTtlSeconds: 600 });
    await expect(access.mintAccessToken({ ...input, ttlSeconds: 601 })).rejects.toThrow(RangeError);
    await expect(access.mintAccessToken({ ...input, ttlSeconds: 0 })).rejects.toThrow(RangeError);
  });

  it('refuses a token for another resource, and one that names this resource among others', async () => {
    const store = newStore();
    const { access, signingKeys } = instance(store);
    const other = await access.mintAccessToken({ ...input, audience: 'https://other.example.com/mcp' });
    const e1 = await accessFailure(access.verifyAccessToken(other.token, { audience: RESOURCE }));
    expect(e1.code).toBe('invalid_token');
    expect(e1.reason).toBe('audience');

    const { kid, privateKey } = await signingKeys.activeKey();
    const multi = await new SignJWT({ client_id: 'c', scope: 'mcp' })
      .setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' })
      .setIssuer(PUBLIC_URL)
      .setSubject('alice')
      .setAudience([RESOURCE, 'https://other.example.com/mcp'])
      .setIssuedAt()
      .setExpirationTime('5m')
      .setJti('multi')
      .sign(privateKey);
    expect((await accessFailure(access.verifyAccessToken(multi, { audience: RESOURCE }))).reason).toBe(
      'audience',
    );
  });

  it('refuses a token from another issuer, even signed with the same keys', async () => {
    const store = newStore();
    const ours = instance(store);
    const theirs = instance(store, undefined, { publicUrl: 'https://evil.example.com' });
    const foreign = await theirs.access.mintAccessToken(input);
    const error = await accessFailure(ours.access.verifyAccessToken(foreign.token, { audience: RESOURCE }));
    expect(error.reason).toBe('issuer');
    const mine = await ours.access.mintAccessToken(input);
    const e2 = await accessFailure(
      ours.access.verifyAccessToken(mine.token, { audience: RESOURCE, issuer: 'https://evil.example.com' }),
    );
    expect(e2.reason).toBe('issuer');
  });

  it('refuses an expired token, tolerating only a few seconds of skew', async () => {
    const store = newStore();
    const { access, clock } = instance(store);
    const minted = await access.mintAccessToken({ ...input, ttlSeconds: 60 });
    clock.now += 62_000; // 2 s past exp: within the default 5 s tolerance
    await expect(access.verifyAccessToken(minted.token, { audience: RESOURCE })).resolves.toBeTruthy();
    clock.now += 10_000;
    expect((await accessFailure(access.verifyAccessToken(minted.token, { audience: RESOURCE }))).reason).toBe(
      'expired',
    );
  });

  it('refuses a token whose nbf is in the future', async () => {
    const store = newStore();
    const { access, clock } = instance(store);
    const minted = await access.mintAccessToken(input);
    clock.now -= 60_000;
    expect((await accessFailure(access.verifyAccessToken(minted.token, { audience: RESOURCE }))).reason).toBe(
      'not_yet_valid',
    );
  });

  it('refuses more than 30 s of clock tolerance', () => {
    const store = newStore();
    const { signingKeys } = instance(store);
    expect(
      () => new AccessTokens(signingKeys, store, { publicUrl: PUBLIC_URL, clockToleranceSeconds: 31 }),
    ).toThrow(RangeError);
  });

  it('refuses a tampered payload and a tampered signature', async () => {
    const { access } = instance(newStore());
    const { token } = await access.mintAccessToken(input);
    const [h, p, s] = token.split('.') as [string, string, string];
    const forgedPayload = b64({ ...decodeSegment(token, 1), sub: 'mallory' });
    const e1 = await accessFailure(
      access.verifyAccessToken(`${h}.${forgedPayload}.${s}`, { audience: RESOURCE }),
    );
    expect(e1.reason).toBe('signature');
    const flipped = (s[0] === 'A' ? 'B' : 'A') + s.slice(1);
    const e2 = await accessFailure(access.verifyAccessToken(`${h}.${p}.${flipped}`, { audience: RESOURCE }));
    expect(e2.reason).toBe('signature');
  });

  it('refuses an unsigned token (alg: none)', async () => {
    const { access, signingKeys } = instance(newStore());
    const { token } = await access.mintAccessToken(input);
    const kid = await signingKeys.activeKid();
    const unsigned = `${b64({ alg: 'none', typ: 'at+jwt', kid })}.${token.split('.')[1]}.`;
    const error = await accessFailure(access.verifyAccessToken(unsigned, { audience: RESOURCE }));
    expect(error.reason).toBe('algorithm');
  });

  it('refuses HS256 tokens whose HMAC key is the public key (PEM or JWK bytes)', async () => {
    const { access, signingKeys } = instance(newStore());
    const { keys } = await signingKeys.jwks();
    const jwk = keys[0]!;
    const pem = await exportSPKI((await importJWK(jwk, 'ES256', { extractable: true })) as CryptoKey);
    for (const secret of [pem, JSON.stringify(jwk), jwk.x]) {
      const forged = await new SignJWT({ client_id: 'client-1', scope: 'mcp' })
        .setProtectedHeader({ alg: 'HS256', kid: jwk.kid, typ: 'at+jwt' })
        .setIssuer(PUBLIC_URL)
        .setSubject('mallory')
        .setAudience(RESOURCE)
        .setIssuedAt()
        .setExpirationTime('5m')
        .setJti('forged')
        .sign(new TextEncoder().encode(secret));
      expect((await accessFailure(access.verifyAccessToken(forged, { audience: RESOURCE }))).reason).toBe(
        'algorithm',
      );
    }
  });

  it('refuses a token signed by an unpublished key and one without the at+jwt type', async () => {
    const { access, signingKeys } = instance(newStore());
    const stranger = await generateKeyPair('ES256');
    const build = (typ: string, kid: string) =>
      new SignJWT({ client_id: 'client-1', scope: 'mcp' })
        .setProtectedHeader({ alg: 'ES256', kid, typ })
        .setIssuer(PUBLIC_URL)
        .setSubject('alice')
        .setAudience(RESOURCE)
        .setIssuedAt()
        .setExpirationTime('5m')
        .setJti('x');
    const unknown = await build('at+jwt', 'not-a-published-kid').sign(stranger.privateKey);
    expect((await accessFailure(access.verifyAccessToken(unknown, { audience: RESOURCE }))).reason).toBe(
      'unknown_key',
    );
    const { kid, privateKey } = await signingKeys.activeKey();
    // Our signature and our kid, but an ID-token type: not usable as an access token.
    const idToken = await build('JWT', kid).sign(privateKey);
    expect((await accessFailure(access.verifyAccessToken(idToken, { audience: RESOURCE }))).reason).toBe(
      'type',
    );
  });

  it('refuses garbage with a stable reason', async () => {
    const { access } = instance(newStore());
    const cases: [string, string][] = [
      ['', 'malformed'],
      ['abc', 'malformed'],
      ['a.b.c', 'malformed'],
      ['..', 'malformed'],
      [`${b64({ alg: 'ES256', typ: 'at+jwt' })}.e30.`, 'unknown_key'],
      [`${b64({ alg: 'ES256', typ: 'at+jwt', kid: 'nope' })}.e30.`, 'unknown_key'],
    ];
    for (const [garbage, reason] of cases) {
      const error = await accessFailure(access.verifyAccessToken(garbage, { audience: RESOURCE }));
      expect(error.reason).toBe(reason);
      expect(error.error).toBe('invalid_token');
    }
  });

  it('refuses a revoked jti on every instance', async () => {
    const store = newStore();
    const a = instance(store);
    const b = instance(store);
    const minted = await a.access.mintAccessToken(input);
    const kept = await a.access.mintAccessToken(input);
    await a.access.revokeJti(minted.jti, minted.expiresAt);
    expect(
      (await accessFailure(b.access.verifyAccessToken(minted.token, { audience: RESOURCE }))).reason,
    ).toBe('revoked');
    await expect(b.access.verifyAccessToken(kept.token, { audience: RESOURCE })).resolves.toBeTruthy();
    expect(await store.get(`revoked-jti:${minted.jti}`)).toBeDefined();
  });

  it('revokes every access token of a grant (gid) on every instance, and only those', async () => {
    const clock = { now: Date.now() };
    // The store expires entries on the test's clock too.
    const store = new MemoryStateStore({ now: () => clock.now });
    stores.push(store);
    const a = instance(store, clock);
    const b = instance(store, a.clock);
    const first = await a.access.mintAccessToken({ ...input, grantId: 'grant-1' });
    const second = await a.access.mintAccessToken({ ...input, grantId: 'grant-1' });
    const otherGrant = await a.access.mintAccessToken({ ...input, grantId: 'grant-2' });
    const noGrant = await a.access.mintAccessToken(input);
    await a.access.revokeGrant('grant-1');
    for (const { token } of [first, second]) {
      expect((await accessFailure(b.access.verifyAccessToken(token, { audience: RESOURCE }))).reason).toBe(
        'revoked',
      );
    }
    for (const { token } of [otherGrant, noGrant]) {
      await expect(b.access.verifyAccessToken(token, { audience: RESOURCE })).resolves.toMatchObject({
        sub: 'alice',
      });
    }
    // The token carries a digest of the grant id, never the id itself.
    const payload = JSON.parse(Buffer.from(first.token.split('.')[1]!, 'base64url').toString()) as {
      gid?: string;
    };
    expect(payload.gid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(first.token).not.toContain(Buffer.from('grant-1').toString('base64url'));
    // Kept as long as the longest token can live (3600 s + tolerance + 1 s), then forgotten.
    expect(await store.keys('revoked-grant:')).toEqual([`revoked-grant:${payload.gid}`]);
    clock.now += (3600 + 5 + 1) * 1000 - 1;
    expect(await store.count('revoked-grant:')).toBe(1);
    clock.now += 1;
    expect(await store.count('revoked-grant:')).toBe(0);
  });

  it('forgets a revoked jti only after the token has expired', async () => {
    const store = newStore();
    const { access, clock } = instance(store);
    const minted = await access.mintAccessToken(input);
    await access.revokeJti(minted.jti, minted.expiresAt);
    // Recorded until exp (+ tolerance): a TTL below the remaining lifetime would let it back in.
    expect(await store.keys('revoked-jti:')).toEqual([`revoked-jti:${minted.jti}`]);
    clock.now = (minted.expiresAt + 60) * 1000;
    await access.revokeJti('late', minted.expiresAt);
    expect(await store.get('revoked-jti:late')).toBeUndefined();
  });

  it('revokes everything a user or a client was issued until now, on every instance, until those tokens expire', async () => {
    const store = newStore();
    const a = instance(store);
    const b = instance(store, a.clock);
    const alices = await a.access.mintAccessToken(input);
    const bobs = await a.access.mintAccessToken({ ...input, sub: 'bob' });
    const otherClient = await a.access.mintAccessToken({ ...input, sub: 'carol', clientId: 'client-2' });
    await a.access.revokeSubject('alice');
    expect(
      (await accessFailure(b.access.verifyAccessToken(alices.token, { audience: RESOURCE }))).reason,
    ).toBe('revoked');
    await expect(b.access.verifyAccessToken(bobs.token, { audience: RESOURCE })).resolves.toBeTruthy();
    await a.access.revokeClient('client-1');
    expect((await accessFailure(b.access.verifyAccessToken(bobs.token, { audience: RESOURCE }))).reason).toBe(
      'revoked',
    );
    await expect(b.access.verifyAccessToken(otherClient.token, { audience: RESOURCE })).resolves.toBeTruthy();
    // A token minted after the cut-off second is accepted: revoking is not banning.
    a.clock.now += 1000;
    const fresh = await a.access.mintAccessToken(input);
    await expect(b.access.verifyAccessToken(fresh.token, { audience: RESOURCE })).resolves.toBeTruthy();
    expect(await store.keys('revoked-sub:')).toEqual(['revoked-sub:alice']);
    expect(await store.keys('revoked-client:')).toEqual(['revoked-client:client-1']);
  });

  it('keeps subjects apart in the cut-off keys (an encoded : or % cannot name another user)', async () => {
    const store = newStore();
    const { access } = instance(store);
    const tricky = await access.mintAccessToken({ ...input, sub: 'a:b%3A' });
    const plain = await access.mintAccessToken({ ...input, sub: 'a:b:' });
    await access.revokeSubject('a:b:');
    await expect(access.verifyAccessToken(tricky.token, { audience: RESOURCE })).resolves.toBeTruthy();
    expect((await accessFailure(access.verifyAccessToken(plain.token, { audience: RESOURCE }))).reason).toBe(
      'revoked',
    );
  });

  it('reports an unreachable store as StoreUnavailableError, not as a bad token', async () => {
    const store = newStore();
    const { access } = instance(store);
    const { token } = await access.mintAccessToken(input);
    const checked = await access.mintAccessToken(input);
    await access.verifyAccessToken(checked.token, { audience: RESOURCE });
    await store.close();
    // Also for a token checked before: its revocation cannot be read, so it is not let through.
    for (const t of [token, checked.token]) {
      await expect(access.verifyAccessToken(t, { audience: RESOURCE })).rejects.toBeInstanceOf(
        StoreUnavailableError,
      );
    }
  });

  it('checks a token seen before again for revocation, audience, issuer, expiry and nbf', async () => {
    const store = newStore();
    const { access, clock } = instance(store);
    const minted = await access.mintAccessToken({ ...input, ttlSeconds: 60 });
    const verify = (options: { audience: string; issuer?: string }) =>
      access.verifyAccessToken(minted.token, options);
    const first = await verify({ audience: RESOURCE });
    const again = await verify({ audience: RESOURCE });
    expect(again).toEqual(first);
    // The same claims object may serve later requests: nobody can change it for them.
    expect(Object.isFrozen(again)).toBe(true);
    expect(Object.isFrozen(again.groups)).toBe(true);
    expect((await accessFailure(verify({ audience: `${PUBLIC_URL}/other` }))).reason).toBe('audience');
    expect((await accessFailure(verify({ audience: RESOURCE, issuer: 'https://evil.example' }))).reason).toBe(
      'issuer',
    );
    await expect(verify({ audience: RESOURCE })).resolves.toEqual(first);
    // A clock set back before nbf (beyond the tolerance), then forward again.
    clock.now -= 60_000;
    expect((await accessFailure(verify({ audience: RESOURCE }))).reason).toBe('not_yet_valid');
    clock.now += 60_000;
    await expect(verify({ audience: RESOURCE })).resolves.toEqual(first);
    clock.now += 62_000; // 2 s past exp: within the 5 s tolerance
    await expect(verify({ audience: RESOURCE })).resolves.toEqual(first);
    clock.now += 4_000;
    expect((await accessFailure(verify({ audience: RESOURCE }))).reason).toBe('expired');
    clock.now -= 66_000;
    await expect(verify({ audience: RESOURCE })).resolves.toEqual(first);
    await access.revokeJti(minted.jti, minted.expiresAt);
    expect((await accessFailure(verify({ audience: RESOURCE }))).reason).toBe('revoked');
  });

  it('refuses a token seen before once its signing key is no longer published', async () => {
    const store = newStore();
    const { access, clock } = instance(store);
    const minted = await access.mintAccessToken(input);
    const kept = await access.mintAccessToken(input);
    for (const { token } of [minted, kept, minted]) {
      await expect(access.verifyAccessToken(token, { audience: RESOURCE })).resolves.toBeTruthy();
    }
    // Past the verification key cache (60 s): the key is looked up again and imported anew.
    clock.now += 61_000;
    await expect(access.verifyAccessToken(kept.token, { audience: RESOURCE })).resolves.toBeTruthy();
    // The key record is gone from the store (an operator withdrew it): refused once the key
    // cache expires, exactly when a token never seen before would be.
    await store.delete(`signing-key:public:${minted.kid}`);
    clock.now += 61_000;
    expect((await accessFailure(access.verifyAccessToken(minted.token, { audience: RESOURCE }))).reason).toBe(
      'unknown_key',
    );
  });
});

describe('refresh tokens', () => {
  const family = {
    clientId: 'client-1',
    sub: 'alice',
    scope: 'mcp',
    resource: RESOURCE,
    email: 'alice@example.com',
    groups: ['eng'],
  };

  it('issues opaque 256-bit tokens and rotates them, carrying the grant', async () => {
    const { refresh } = instance(newStore());
    const first = await refresh.issue(family);
    expect(first.token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(first.token, 'base64url')).toHaveLength(32);
    const second = await refresh.rotate(first.token, { clientId: 'client-1' });
    expect(second.token).not.toBe(first.token);
    expect(second.family).toEqual(first.family);
    expect(second.family).toMatchObject(family);
    const third = await refresh.rotate(second.token);
    expect(third.family.id).toBe(first.family.id);
  });

  it('keeps an unverified email marked as such through every rotation', async () => {
    const { refresh } = instance(newStore());
    const first = await refresh.issue({ ...family, emailVerified: false });
    const second = await refresh.rotate(first.token);
    expect(second.family.emailVerified).toBe(false);
  });

  it('with a grace of 0, treats a used token as reuse: the whole family is revoked', async () => {
    const { refresh } = instance(newStore(), undefined, { reuseGraceSeconds: 0 });
    const first = await refresh.issue(family);
    const second = await refresh.rotate(first.token);
    const reuse = await refreshFailure(refresh.rotate(first.token));
    expect(reuse.code).toBe('invalid_grant');
    expect(reuse.reason).toBe('reuse_detected');
    expect((await refreshFailure(refresh.rotate(second.token))).reason).toBe('revoked');
    expect((await refreshFailure(refresh.rotate(first.token))).reason).toBe('revoked');
    // Other families are untouched.
    const otherFamily = await refresh.issue(family);
    await expect(refresh.rotate(otherFamily.token)).resolves.toBeTruthy();
  });

  it('with a grace of 0, lets exactly one of two concurrent rotations win; the other is reuse', async () => {
    const { refresh } = instance(newStore(), undefined, { reuseGraceSeconds: 0 });
    const first = await refresh.issue(family);
    const results = await Promise.allSettled([refresh.rotate(first.token), refresh.rotate(first.token)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ reason: 'reuse_detected' });
    // Reuse revoked the family, the winner's successor included.
    const winner = (won[0] as PromiseFulfilledResult<{ token: string }>).value;
    expect((await refreshFailure(refresh.rotate(winner.token))).reason).toBe('revoked');
  });

  it('within the grace, the same client presenting a rotated token again gets the same successor', async () => {
    const { refresh } = instance(newStore());
    const first = await refresh.issue(family);
    const second = await refresh.rotate(first.token, { clientId: 'client-1' });
    expect(second.repeated).toBe(false);
    const again = await refresh.rotate(first.token, { clientId: 'client-1' });
    expect(again).toMatchObject({ token: second.token, repeated: true, expiresAt: second.expiresAt });
    expect(again.family).toEqual(second.family);
    // The family lives on, as one chain: the successor rotates normally.
    const third = await refresh.rotate(second.token, { clientId: 'client-1' });
    expect(third).toMatchObject({ repeated: false });
    expect(third.family.id).toBe(first.family.id);
  });

  it('N concurrent rotations of one token: one rotation, every caller gets the same successor', async () => {
    const store = newStore();
    const { refresh } = instance(store);
    const first = await refresh.issue(family);
    const results = await Promise.all(
      Array.from({ length: 5 }, () => refresh.rotate(first.token, { clientId: 'client-1' })),
    );
    expect(new Set(results.map((r) => r.token)).size).toBe(1);
    expect(results.filter((r) => !r.repeated)).toHaveLength(1);
    // One chain: the presented token and its one successor, no sibling.
    expect(await store.count('refresh-token:')).toBe(2);
    await expect(refresh.rotate(results[0]!.token, { clientId: 'client-1' })).resolves.toBeTruthy();
  });

  it('answers a late repeat with the newest token of the chain, never a spent one', async () => {
    const { refresh, clock } = instance(newStore());
    const first = await refresh.issue(family);
    const second = await refresh.rotate(first.token);
    clock.now += 5_000;
    const third = await refresh.rotate(second.token);
    clock.now += 5_000;
    const late = await refresh.rotate(first.token);
    expect(late).toMatchObject({ token: third.token, repeated: true, expiresAt: third.expiresAt });
    await expect(refresh.rotate(late.token)).resolves.toMatchObject({ repeated: false });
  });

  it('after the grace, presenting a rotated token again revokes the family and its access tokens', async () => {
    const { refresh, access, clock } = instance(newStore(), undefined, { reuseGraceSeconds: 30 });
    const first = await refresh.issue(family);
    const second = await refresh.rotate(first.token);
    const minted = await access.mintAccessToken({ ...input, grantId: first.family.id });
    await expect(access.verifyAccessToken(minted.token, { audience: RESOURCE })).resolves.toBeTruthy();
    clock.now += 30_000;
    // The last millisecond of the grace still answers.
    await expect(refresh.rotate(first.token)).resolves.toMatchObject({ token: second.token, repeated: true });
    clock.now += 1;
    expect((await refreshFailure(refresh.rotate(first.token))).reason).toBe('reuse_detected');
    expect((await refreshFailure(refresh.rotate(second.token))).reason).toBe('revoked');
    expect((await accessFailure(access.verifyAccessToken(minted.token, { audience: RESOURCE }))).reason).toBe(
      'revoked',
    );
  });

  it('a spent token presented by another client revokes the family, within the grace too', async () => {
    const { refresh } = instance(newStore());
    const first = await refresh.issue(family);
    const second = await refresh.rotate(first.token, { clientId: 'client-1' });
    expect((await refreshFailure(refresh.rotate(first.token, { clientId: 'client-2' }))).reason).toBe(
      'reuse_detected',
    );
    expect((await refreshFailure(refresh.rotate(second.token, { clientId: 'client-1' }))).reason).toBe(
      'revoked',
    );
  });

  it('a repeat refused by its check changes nothing: the family lives on', async () => {
    const { refresh } = instance(newStore());
    const first = await refresh.issue(family);
    const second = await refresh.rotate(first.token);
    const wrong = new Error('another resource');
    await expect(
      refresh.rotate(first.token, {
        check: () => {
          throw wrong;
        },
      }),
    ).rejects.toBe(wrong);
    await expect(refresh.rotate(second.token)).resolves.toMatchObject({ repeated: false });
  });

  it('rotates a family of an older version (no successor secret) strictly: a repeat is reuse', async () => {
    const store = newStore();
    const { refresh, keys } = instance(store);
    const first = await refresh.issue(family);
    // What an older version stored: the same family without the secret.
    const key = `refresh-family:${first.family.id}`;
    const stored = JSON.parse(keys.decrypt((await store.get(key))!, key)!) as Record<string, unknown>;
    expect(stored.successorKey).toEqual(expect.any(String));
    delete stored.successorKey;
    await store.set(key, keys.encrypt(JSON.stringify(stored), key), 3600_000);
    const second = await refresh.rotate(first.token);
    expect(second.repeated).toBe(false);
    expect((await refreshFailure(refresh.rotate(first.token))).reason).toBe('reuse_detected');
    expect((await refreshFailure(refresh.rotate(second.token))).reason).toBe('revoked');
  });

  it('refuses a negative grace', () => {
    expect(() => new RefreshTokens(newStore(), new SealingKeys(SECRET), { reuseGraceSeconds: -1 })).toThrow(
      /reuseGraceSeconds must be a number >= 0/,
    );
  });

  it('refuses a token of another client without spending it', async () => {
    const { refresh } = instance(newStore());
    const first = await refresh.issue(family);
    expect((await refreshFailure(refresh.rotate(first.token, { clientId: 'client-2' }))).reason).toBe(
      'client_mismatch',
    );
    await expect(refresh.rotate(first.token, { clientId: 'client-1' })).resolves.toBeTruthy();
  });

  it('refuses a request its check throws for without spending the token', async () => {
    const { refresh } = instance(newStore());
    const first = await refresh.issue(family);
    const wrongResource = new Error('the authorization was for another resource');
    const check = (): void => {
      throw wrongResource;
    };
    await expect(refresh.rotate(first.token, { check })).rejects.toBe(wrongResource);
    const seen: string[] = [];
    const rotated = await refresh.rotate(first.token, { check: (f) => void seen.push(f.resource) });
    expect(seen).toEqual([RESOURCE]);
    expect(rotated.family.id).toBe(first.family.id);
  });

  it('refuses unknown and malformed tokens as invalid', async () => {
    const { refresh } = instance(newStore());
    await refresh.issue(family);
    for (const token of ['', 'short', 'A'.repeat(43), `${'A'.repeat(42)}!`]) {
      expect((await refreshFailure(refresh.rotate(token))).reason).toBe('invalid');
    }
  });

  it('revoke (RFC 7009): unknown is not an error; a known token revokes its family', async () => {
    const { refresh } = instance(newStore());
    expect(await refresh.revoke('A'.repeat(43))).toBe('unknown');
    expect(await refresh.revoke('garbage')).toBe('unknown');
    const first = await refresh.issue(family);
    const second = await refresh.rotate(first.token);
    expect(await refresh.revoke(second.token, { clientId: 'client-2' })).toBe('client_mismatch');
    await expect(refresh.readFamily(first.family.id)).resolves.toBeDefined();
    // Revoking the spent first token revokes the grant, so the live second one dies too.
    expect(await refresh.revoke(first.token)).toBe('revoked');
    expect((await refreshFailure(refresh.rotate(second.token))).reason).toBe('revoked');
    expect(await refresh.revoke(second.token)).toBe('unknown');
  });

  it('revokeFamily and revokeSubject refuse every token of the family afterwards', async () => {
    const { refresh } = instance(newStore());
    const a = await refresh.issue(family);
    const a2 = await refresh.rotate(a.token);
    const b = await refresh.issue({ ...family, sub: 'bob' });
    expect(await refresh.revokeFamily(a.family.id)).toBe(true);
    expect(await refresh.revokeFamily(a.family.id)).toBe(false);
    expect((await refreshFailure(refresh.rotate(a2.token))).reason).toBe('revoked');
    const c = await refresh.issue(family);
    const d = await refresh.issue(family);
    expect(await refresh.revokeSubject('alice')).toBe(2);
    expect((await refreshFailure(refresh.rotate(c.token))).reason).toBe('revoked');
    expect((await refreshFailure(refresh.rotate(d.token))).reason).toBe('revoked');
    await expect(refresh.rotate(b.token)).resolves.toBeTruthy();
  });

  it('lists live families (no token values) and revokes those of one client', async () => {
    const { refresh } = instance(newStore());
    const a = await refresh.issue(family);
    const b = await refresh.issue({ ...family, sub: 'bob' });
    const c = await refresh.issue({ ...family, clientId: 'client-2' });
    const listed = await refresh.list();
    expect(listed.map((f) => f.id).sort()).toEqual([a.family.id, b.family.id, c.family.id].sort());
    expect(JSON.stringify(listed)).not.toContain(a.token);
    expect(await refresh.revokeClient('client-1')).toBe(2);
    expect((await refresh.list()).map((f) => f.clientId)).toEqual(['client-2']);
    expect((await refreshFailure(refresh.rotate(b.token))).reason).toBe('revoked');
    await expect(refresh.rotate(c.token)).resolves.toBeTruthy();
  });

  it('expires a token after its lifetime, and the family at its absolute limit however often rotated', async () => {
    const { refresh, clock } = instance(newStore());
    const idle = await refresh.issue(family);
    clock.now += 3600_000;
    expect((await refreshFailure(refresh.rotate(idle.token))).reason).toBe('expired');

    let current = await refresh.issue(family);
    expect(current.family.expiresAt).toBe(clock.now + 86_400_000);
    // Rotating every 50 minutes keeps each token fresh, but not the family past 24 h.
    for (let i = 0; i < 28; i++) {
      clock.now += 50 * 60_000;
      current = await refresh.rotate(current.token);
      expect(current.expiresAt).toBeLessThanOrEqual(current.family.expiresAt);
    }
    clock.now += 50 * 60_000;
    expect((await refreshFailure(refresh.rotate(current.token))).reason).toBe('expired');
  });

  it('stores only hashes: no raw token (nor the email) appears in any store key or value', async () => {
    const store = newStore();
    const { refresh } = instance(store);
    const first = await refresh.issue(family);
    const second = await refresh.rotate(first.token);
    const third = await refresh.issue({ ...family, sub: 'bob' });
    const raw = [first.token, second.token, third.token];
    const keys = await store.keys('');
    expect(keys).toContain(`refresh-token:${hashRefreshToken(first.token)}`);
    expect(keys).toContain(`refresh-token:${hashRefreshToken(second.token)}`);
    expect(keys).toContain(`refresh-used:${hashRefreshToken(first.token)}`);
    for (const key of keys) {
      const value = (await store.get(key)) ?? '';
      for (const token of raw) {
        expect(key).not.toContain(token);
        expect(value).not.toContain(token);
      }
      expect(value).not.toContain('alice@example.com');
    }
  });
});
