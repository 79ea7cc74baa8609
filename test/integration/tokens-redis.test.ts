import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { InvalidGrantError, InvalidTokenError } from '../../src/auth/facade/errors.js';
import { AccessTokens, type MintAccessTokenInput } from '../../src/auth/tokens/access-tokens.js';
import { hashRefreshToken, RefreshTokens } from '../../src/auth/tokens/refresh-tokens.js';
import { SigningKeys } from '../../src/auth/tokens/signing-keys.js';
import { createStateStore } from '../../src/store/index.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';
import type { StateStore } from '../../src/store/state-store.js';
import { REDIS_URL, rawRedis, scanKeys } from '../helpers/shared-redis.js';
import { waitFor } from '../helpers/wait.js';

/** Every key this run writes lives under this prefix and is deleted afterwards. */
const RUN_PREFIX = `mcp-oidc-proxy-test:tokens:${randomUUID()}:`;
const PUBLIC_URL = 'https://proxy.example.com';
const RESOURCE = `${PUBLIC_URL}/mcp`;
const SECRET = 'shared-session-secret';

const input: MintAccessTokenInput = {
  sub: 'alice',
  clientId: 'client-1',
  scope: 'mcp',
  audience: RESOURCE,
  ttlSeconds: 300,
};

const family = {
  clientId: 'client-1',
  sub: 'alice',
  scope: 'mcp',
  resource: RESOURCE,
  email: 'alice@example.com',
};

describe('proxy tokens on a shared Redis (one connection per simulated instance)', () => {
  const raw = rawRedis(RUN_PREFIX);
  const stores: StateStore[] = [];
  let testPrefix = RUN_PREFIX;
  let caseNumber = 0;

  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  /** A fresh key space for one test: every instance of the test shares it. */
  function newKeySpace(): void {
    testPrefix = `${RUN_PREFIX}${++caseNumber}:`;
  }

  /** One proxy instance: its own Redis connection, the shared SESSION_SECRET. */
  function instance(options: { maxTokenTtlSeconds?: number; reuseGraceSeconds?: number } = {}) {
    const store = createStateStore({ kind: 'redis', redisUrl: REDIS_URL, keyPrefix: testPrefix });
    stores.push(store);
    const keys = new SealingKeys(SECRET);
    const signingKeys = new SigningKeys(store, keys, {
      maxTokenTtlSeconds: options.maxTokenTtlSeconds ?? 600,
    });
    const access = new AccessTokens(signingKeys, store, { publicUrl: PUBLIC_URL });
    return {
      store,
      signingKeys,
      access,
      refresh: new RefreshTokens(store, keys, {
        reuseGraceSeconds: options.reuseGraceSeconds,
        onFamilyRevoked: (familyId) => access.revokeGrant(familyId),
      }),
    };
  }

  /** Every key of this test's key space with its value, read straight from Redis. */
  async function dump(): Promise<Map<string, string>> {
    const found = new Map<string, string>();
    for (const key of await scanKeys(raw, `${testPrefix}*`)) found.set(key, (await raw.get(key)) ?? '');
    return found;
  }

  it('persists the signing key: another instance (and a restart) verifies tokens with the same kid', async () => {
    newKeySpace();
    const a = instance();
    const minted = await a.access.mintAccessToken(input);
    await a.store.close();
    const b = instance();
    expect(await b.signingKeys.activeKid()).toBe(minted.kid);
    await expect(b.access.verifyAccessToken(minted.token, { audience: RESOURCE })).resolves.toMatchObject({
      sub: 'alice',
      clientId: 'client-1',
    });
    const ttl = await raw.pttl(`${testPrefix}signing-key:active`);
    expect(ttl).toBeGreaterThan(0);
  });

  it('ten instances starting at once create one key', async () => {
    newKeySpace();
    const instances = Array.from({ length: 10 }, () => instance());
    const kids = await Promise.all(instances.map((i) => i.signingKeys.activeKid()));
    expect(new Set(kids).size).toBe(1);
    const keys = [...(await dump()).keys()].filter((k) => k.includes('signing-key:public:'));
    expect(keys).toEqual([`${testPrefix}signing-key:public:${kids[0]}`]);
  });

  it('rotation on one instance: the others sign with the new key and still verify the old tokens', async () => {
    newKeySpace();
    const a = instance({ maxTokenTtlSeconds: 600 });
    const b = instance({ maxTokenTtlSeconds: 600 });
    const old = await b.access.mintAccessToken(input);
    const newKid = await a.signingKeys.rotate();
    const fresh = await b.access.mintAccessToken(input);
    expect(fresh.kid).toBe(newKid);
    for (const verifier of [a, b]) {
      await expect(
        verifier.access.verifyAccessToken(old.token, { audience: RESOURCE }),
      ).resolves.toBeTruthy();
      await expect(
        verifier.access.verifyAccessToken(fresh.token, { audience: RESOURCE }),
      ).resolves.toBeTruthy();
    }
    expect((await b.signingKeys.jwks()).keys.map((k) => k.kid)).toEqual([newKid, old.kid]);
    // The retired key's publication ends with the window Redis enforces: longest token + grace.
    const ttl = await raw.pttl(`${testPrefix}signing-key:public:${old.kid}`);
    expect(ttl).toBeGreaterThan(600_000);
    expect(ttl).toBeLessThanOrEqual(720_000);
  });

  it('refuses tokens for another audience or issuer, tampered, unsigned and revoked ones', async () => {
    newKeySpace();
    const a = instance();
    const b = instance();
    const { token, jti, expiresAt } = await a.access.mintAccessToken(input);
    const reason = (promise: Promise<unknown>) =>
      promise.then(
        () => 'accepted',
        (e: unknown) => (e instanceof InvalidTokenError ? e.reason : `unexpected ${String(e)}`),
      );
    expect(await reason(b.access.verifyAccessToken(token, { audience: `${PUBLIC_URL}/other` }))).toBe(
      'audience',
    );
    expect(
      await reason(b.access.verifyAccessToken(token, { audience: RESOURCE, issuer: 'https://evil.example' })),
    ).toBe('issuer');
    const [h, p, s] = token.split('.') as [string, string, string];
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>;
    const forged = Buffer.from(JSON.stringify({ ...payload, scope: 'admin' })).toString('base64url');
    expect(await reason(b.access.verifyAccessToken(`${h}.${forged}.${s}`, { audience: RESOURCE }))).toBe(
      'signature',
    );
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url');
    expect(await reason(b.access.verifyAccessToken(`${none}.${p}.`, { audience: RESOURCE }))).toBe(
      'algorithm',
    );
    expect(await reason(b.access.verifyAccessToken(token, { audience: RESOURCE }))).toBe('accepted');
    await a.access.revokeJti(jti, expiresAt);
    expect(await reason(b.access.verifyAccessToken(token, { audience: RESOURCE }))).toBe('revoked');
    const ttl = await raw.pttl(`${testPrefix}revoked-jti:${jti}`);
    expect(ttl).toBeGreaterThan(290_000);
    expect(ttl).toBeLessThanOrEqual(310_000);
  });

  it('refresh: rotation across instances, reuse (grace 0) revokes the family everywhere', async () => {
    newKeySpace();
    const a = instance({ reuseGraceSeconds: 0 });
    const b = instance({ reuseGraceSeconds: 0 });
    const first = await a.refresh.issue(family);
    const second = await b.refresh.rotate(first.token, { clientId: 'client-1' });
    expect(second.family).toMatchObject(family);
    const reuse = await a.refresh.rotate(first.token).catch((e: unknown) => e);
    expect(reuse).toBeInstanceOf(InvalidGrantError);
    expect((reuse as InvalidGrantError).reason).toBe('reuse_detected');
    const after = await b.refresh.rotate(second.token).catch((e: unknown) => e);
    expect((after as InvalidGrantError).reason).toBe('revoked');
  });

  it('refresh: instances rotating the same token at once (grace 0), exactly one wins', async () => {
    newKeySpace();
    const instances = Array.from({ length: 4 }, () => instance({ reuseGraceSeconds: 0 }));
    const first = await instances[0]!.refresh.issue(family);
    const results = await Promise.allSettled(instances.map((i) => i.refresh.rotate(first.token)));
    const won = results.filter(
      (r): r is PromiseFulfilledResult<Awaited<ReturnType<RefreshTokens['rotate']>>> =>
        r.status === 'fulfilled',
    );
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(3);
    for (const r of lost) expect(r.reason).toMatchObject({ reason: 'reuse_detected' });
    const next = await instances[1]!.refresh.rotate(won[0]!.value.token).catch((e: unknown) => e);
    expect((next as InvalidGrantError).reason).toBe('revoked');
  });

  it('refresh: instances rotating the same token at once (grace): one rotation, one successor for all, the family lives on', async () => {
    newKeySpace();
    const instances = Array.from({ length: 4 }, () => instance());
    const first = await instances[0]!.refresh.issue(family);
    const results = await Promise.all(
      instances.map((i) => i.refresh.rotate(first.token, { clientId: 'client-1' })),
    );
    expect(new Set(results.map((r) => r.token)).size).toBe(1);
    expect(results.filter((r) => !r.repeated)).toHaveLength(1);
    // One chain in Redis: the first token and its one successor.
    expect([...(await dump()).keys()].filter((k) => k.includes('refresh-token:'))).toHaveLength(2);
    const next = await instances[3]!.refresh.rotate(results[0]!.token, { clientId: 'client-1' });
    expect(next).toMatchObject({ repeated: false });
    expect(next.family.id).toBe(first.family.id);
  });

  it('refresh: reuse past the grace, on another instance, revokes the family and the access tokens of the grant everywhere', async () => {
    newKeySpace();
    const a = instance({ reuseGraceSeconds: 0.2 });
    const b = instance({ reuseGraceSeconds: 0.2 });
    const first = await a.refresh.issue(family);
    const minted = await a.access.mintAccessToken({ ...input, grantId: first.family.id });
    const second = await a.refresh.rotate(first.token);
    // Read after the rotation: its marker's time is no later than this.
    const rotatedAt = Date.now();
    await waitFor(() => Date.now() - rotatedAt > 200, 2000, 'the grace to pass');
    const reuse = await b.refresh.rotate(first.token).catch((e: unknown) => e);
    expect((reuse as InvalidGrantError).reason).toBe('reuse_detected');
    expect(
      ((await a.refresh.rotate(second.token).catch((e: unknown) => e)) as InvalidGrantError).reason,
    ).toBe('revoked');
    const refused = await a.access
      .verifyAccessToken(minted.token, { audience: RESOURCE })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(InvalidTokenError);
    expect((refused as InvalidTokenError).reason).toBe('revoked');
  });

  it('refresh: revoking an unknown token is fine; Redis holds only hashes', async () => {
    newKeySpace();
    const a = instance();
    expect(await a.refresh.revoke('A'.repeat(43))).toBe('unknown');
    const first = await a.refresh.issue(family);
    const second = await a.refresh.rotate(first.token);
    const third = await a.refresh.issue({ ...family, sub: 'bob' });
    const contents = await dump();
    expect(contents.has(`${testPrefix}refresh-token:${hashRefreshToken(second.token)}`)).toBe(true);
    expect(contents.size).toBeGreaterThanOrEqual(6);
    for (const [key, value] of contents) {
      for (const token of [first.token, second.token, third.token]) {
        expect(key).not.toContain(token);
        expect(value).not.toContain(token);
      }
      expect(value).not.toContain('alice@example.com');
    }
    expect(await a.refresh.revoke(third.token)).toBe('revoked');
    const refused = await a.refresh.rotate(third.token).catch((e: unknown) => e);
    expect((refused as InvalidGrantError).reason).toBe('revoked');
  });
});
