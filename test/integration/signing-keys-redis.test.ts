/**
 * The signing-key schedule with two instances on one Redis, each with its own connection, as two
 * proxies would be; the clock is the test's (the schedule runs on the instances' clock, Redis
 * only holds the records).
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { AccessTokens, type MintAccessTokenInput } from '../../src/auth/tokens/access-tokens.js';
import {
  PUBLICATION_LEAD_SECONDS,
  RETIREMENT_GRACE_SECONDS,
  rotationPeriodMs,
  SigningKeys,
} from '../../src/auth/tokens/signing-keys.js';
import { createStateStore } from '../../src/store/index.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';
import type { StateStore } from '../../src/store/state-store.js';
import { REDIS_URL, rawRedis, scanKeys } from '../helpers/shared-redis.js';

const RUN_PREFIX = `mcp-oidc-proxy-test:signing-keys:${randomUUID()}:`;
const RESOURCE = 'https://proxy.example.com/mcp';
const DAY = rotationPeriodMs(1);
const LEAD = PUBLICATION_LEAD_SECONDS * 1000;
const TOKEN_TTL = 300;
const input: MintAccessTokenInput = {
  sub: 'alice',
  clientId: 'client-1',
  scope: 'mcp',
  audience: RESOURCE,
  ttlSeconds: TOKEN_TTL,
};

describe('signing-key rotation by two instances on one Redis', () => {
  const raw = rawRedis(RUN_PREFIX);
  const stores: StateStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  function instance(prefix: string, clock: { now: number }) {
    const store = createStateStore({ kind: 'redis', redisUrl: REDIS_URL, keyPrefix: prefix });
    stores.push(store);
    const now = (): number => clock.now;
    const signingKeys = new SigningKeys(store, new SealingKeys('shared-secret-shared-secret-shared'), {
      maxTokenTtlSeconds: TOKEN_TTL,
      rotationPeriodMs: DAY,
      now,
    });
    return {
      signingKeys,
      access: new AccessTokens(signingKeys, store, { publicUrl: 'https://proxy.example.com', now }),
    };
  }

  const kids = async (keys: SigningKeys): Promise<string[]> => (await keys.jwks()).keys.map((k) => k.kid);

  it('after the period there is exactly one new key, in the JWKS before any token carries it; the old one verifies until its tokens expire, then goes', async () => {
    const prefix = `${RUN_PREFIX}1:`;
    const clock = { now: Date.now() };
    const a = instance(prefix, clock);
    const b = instance(prefix, clock);
    const first = await a.access.mintAccessToken(input);

    // Both reach the lead at the same instant: one successor between them.
    clock.now += DAY - LEAD;
    const [seenA, seenB] = await Promise.all([kids(a.signingKeys), kids(b.signingKeys)]);
    const published = await kids(a.signingKeys);
    expect(published).toHaveLength(2);
    const successor = published[1]!;
    for (const seen of [seenA, seenB]) expect(seen.every((k) => published.includes(k))).toBe(true);
    expect(await scanKeys(raw, `${prefix}signing-key:public:*`)).toHaveLength(2);
    expect(await scanKeys(raw, `${prefix}signing-key:next-after:*`)).toHaveLength(1);

    // Published, not signing: tokens minted in the lead still carry the old kid.
    clock.now += LEAD - 1000;
    const lastOld = await b.access.mintAccessToken(input);
    expect(lastOld.kid).toBe(first.kid);

    // Both mint at the instant the lead ends: the successor signs, on both, and no third key exists.
    clock.now += 1000;
    const [x, y] = await Promise.all([a.access.mintAccessToken(input), b.access.mintAccessToken(input)]);
    for (const minted of [x, y]) expect([first.kid, successor]).toContain(minted.kid);
    expect((await a.access.mintAccessToken(input)).kid).toBe(successor);
    expect((await b.access.mintAccessToken(input)).kid).toBe(successor);
    expect(await scanKeys(raw, `${prefix}signing-key:public:*`)).toHaveLength(2);
    expect(await scanKeys(raw, `${prefix}signing-key:next-after:*`)).toHaveLength(0);

    for (const verifier of [a, b]) {
      await expect(
        verifier.access.verifyAccessToken(lastOld.token, { audience: RESOURCE }),
      ).resolves.toBeTruthy();
    }
    clock.now += (TOKEN_TTL + RETIREMENT_GRACE_SECONDS) * 1000 + 1000;
    expect(await kids(a.signingKeys)).toEqual([successor]);
    expect(await kids(b.signingKeys)).toEqual([successor]);
    // Redis deletes the retired record itself once the window has passed in real time.
    const ttl = await raw.pttl(`${prefix}signing-key:public:${first.kid}`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual((TOKEN_TTL + RETIREMENT_GRACE_SECONDS) * 1000);
  });
});
