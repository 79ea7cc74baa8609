/**
 * The signing-key schedule (SIGNING_KEY_ROTATION_DAYS), "rotate now", and a key sealed with
 * another SESSION_SECRET, on one store shared by several instances with a clock the test moves.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AccessTokens, type MintAccessTokenInput } from '../../src/auth/tokens/access-tokens.js';
import {
  JWKS_MAX_AGE_SECONDS,
  PUBLICATION_LEAD_SECONDS,
  RETIREMENT_GRACE_SECONDS,
  rotationPeriodMs,
  SigningKeyError,
  SigningKeys,
} from '../../src/auth/tokens/signing-keys.js';
import { MemoryStateStore } from '../../src/store/memory.js';
import { SealingCheck } from '../../src/store/sealing-check.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';

const PUBLIC_URL = 'https://proxy.example.com';
const RESOURCE = `${PUBLIC_URL}/mcp`;
const DAY = rotationPeriodMs(1);
const LEAD = PUBLICATION_LEAD_SECONDS * 1000;
const TOKEN_TTL = 600;
const WINDOW = (TOKEN_TTL + RETIREMENT_GRACE_SECONDS) * 1000;

const input: MintAccessTokenInput = {
  sub: 'alice',
  clientId: 'client-1',
  scope: 'mcp',
  audience: RESOURCE,
  ttlSeconds: TOKEN_TTL,
};

const stores: MemoryStateStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

/** A store whose expiry follows the test's clock. */
function newStore(clock: { now: number }): MemoryStateStore {
  const store = new MemoryStateStore({ now: () => clock.now });
  stores.push(store);
  return store;
}

interface Options {
  secret?: string;
  periodDays?: number;
  /** The instance follows SealingCheck (as the proxy does): it may replace a key it cannot open when the store is its secret's. */
  sealingCheck?: boolean;
}

/** One proxy instance on `store` with the test's clock. */
function instance(store: MemoryStateStore, clock: { now: number }, options: Options = {}) {
  const now = (): number => clock.now;
  const keys = new SealingKeys(options.secret ?? 'secret-a-secret-a-secret-a-secret-a');
  const check = new SealingCheck(store, keys);
  const rotations: string[] = [];
  const signingKeys = new SigningKeys(store, keys, {
    maxTokenTtlSeconds: TOKEN_TTL,
    rotationPeriodMs: rotationPeriodMs(options.periodDays ?? 1),
    now,
    mayReplaceUnreadable: options.sealingCheck ? () => check.isMine() : undefined,
    onRotated: ({ reason }) => rotations.push(reason),
  });
  const access = new AccessTokens(signingKeys, store, { publicUrl: PUBLIC_URL, now });
  return { signingKeys, access, check, rotations };
}

const kids = async (keys: SigningKeys): Promise<string[]> => (await keys.jwks()).keys.map((k) => k.kid);

describe('signing keys on a schedule', () => {
  it('publishes the lead before the period ends, signs with the successor only after, and retires the old key after its tokens', async () => {
    const clock = { now: Date.UTC(2030, 0, 1) };
    const store = newStore(clock);
    const a = instance(store, clock);
    const b = instance(store, clock);
    const first = await a.access.mintAccessToken(input);

    // Until the lead before the period's end: one key, nothing published ahead.
    clock.now += DAY - LEAD - 1000;
    expect(await kids(b.signingKeys)).toEqual([first.kid]);
    expect((await b.access.mintAccessToken(input)).kid).toBe(first.kid);

    // The lead before the end: the successor is in the JWKS, but no token carries its kid.
    clock.now += 2000;
    const published = await kids(a.signingKeys);
    expect(published).toHaveLength(2);
    const successor = published[1]!;
    expect(successor).not.toBe(first.kid);
    expect((await b.access.mintAccessToken(input)).kid).toBe(first.kid);
    expect(await kids(b.signingKeys)).toEqual([first.kid, successor]);

    // A second before the period's end the old key still signs; then the successor, on every instance.
    clock.now += LEAD - 2000;
    const lastOld = await b.access.mintAccessToken(input);
    expect(lastOld.kid).toBe(first.kid);
    // The period is over, but the successor was published a second late: it waits its whole lead.
    clock.now += 1000;
    expect((await b.access.mintAccessToken(input)).kid).toBe(first.kid);
    clock.now += 1000;
    const fresh = await b.access.mintAccessToken(input);
    expect(fresh.kid).toBe(successor);
    expect((await a.access.mintAccessToken(input)).kid).toBe(successor);
    expect(await a.signingKeys.activeKid()).toBe(successor);
    expect(a.rotations.length + b.rotations.length).toBe(1);

    // The old key's last token verifies everywhere until it expires; the old key then leaves the JWKS.
    for (const verifier of [a, b]) {
      await expect(
        verifier.access.verifyAccessToken(lastOld.token, { audience: RESOURCE }),
      ).resolves.toBeTruthy();
    }
    expect(await kids(a.signingKeys)).toEqual([successor, first.kid]);
    clock.now += WINDOW - 1000;
    expect(await kids(a.signingKeys)).toEqual([successor, first.kid]);
    clock.now += 2000;
    expect(await kids(a.signingKeys)).toEqual([successor]);
    expect(await a.signingKeys.verificationKey(first.kid)).toBeUndefined();
  });

  it('ten instances reaching the schedule at once make exactly one successor, and switch to it once', async () => {
    const clock = { now: Date.UTC(2030, 0, 1) };
    const store = newStore(clock);
    const fleet = Array.from({ length: 10 }, () => instance(store, clock));
    const first = await fleet[0]!.signingKeys.activeKid();

    clock.now += DAY - LEAD;
    const seen = await Promise.all(fleet.map((i) => kids(i.signingKeys)));
    expect(await store.count('signing-key:public:')).toBe(2);
    const successor = (await kids(fleet[0]!.signingKeys))[1]!;
    for (const list of seen) expect(list.every((kid) => kid === first || kid === successor)).toBe(true);

    clock.now += LEAD;
    const minted = await Promise.all(fleet.map((i) => i.access.mintAccessToken(input)));
    // Some may sign with the old key while the winner writes the slot (it stays published); none with a third.
    expect(new Set(minted.map((m) => m.kid)).size).toBeLessThanOrEqual(2);
    expect(minted.every((m) => m.kid === first || m.kid === successor)).toBe(true);
    expect(fleet.reduce((n, i) => n + i.rotations.length, 0)).toBe(1);
    expect(await fleet[5]!.signingKeys.activeKid()).toBe(successor);
    expect(await store.count('signing-key:public:')).toBe(2);
    expect(await store.count('signing-key:next-after:')).toBe(0);
  });

  it('an idle deployment publishes on its first use after the period, and keeps signing with the old key for the lead', async () => {
    const clock = { now: Date.UTC(2030, 0, 1) };
    const store = newStore(clock);
    const a = instance(store, clock);
    const first = await a.signingKeys.activeKid();
    clock.now += 3 * DAY;
    expect((await a.access.mintAccessToken(input)).kid).toBe(first);
    const successor = (await kids(a.signingKeys))[1]!;
    clock.now += LEAD - 1000;
    expect((await a.access.mintAccessToken(input)).kid).toBe(first);
    clock.now += 1000;
    expect((await a.access.mintAccessToken(input)).kid).toBe(successor);
  });

  it('counts the next period from the switch, and does nothing with SIGNING_KEY_ROTATION_DAYS=0', async () => {
    const clock = { now: Date.UTC(2030, 0, 1) };
    const store = newStore(clock);
    const a = instance(store, clock, { periodDays: 7 });
    await a.signingKeys.activeKid();
    clock.now += 7 * DAY;
    await a.signingKeys.jwks(); // publishes the successor
    clock.now += LEAD;
    const second = await a.signingKeys.activeKid();
    clock.now += 7 * DAY - LEAD - 1000;
    expect(await kids(a.signingKeys)).toEqual([second]);

    const off = instance(newStore(clock), clock, { periodDays: 0 });
    const only = await off.signingKeys.activeKid();
    clock.now += 1000 * DAY;
    expect(await kids(off.signingKeys)).toEqual([only]);
    expect((await off.access.mintAccessToken(input)).kid).toBe(only);
  });

  it('keeps the publication lead above the JWKS max-age', () => {
    expect(PUBLICATION_LEAD_SECONDS).toBeGreaterThanOrEqual(JWKS_MAX_AGE_SECONDS);
    const store = newStore({ now: 0 });
    expect(() => new SigningKeys(store, new SealingKeys('x'), { publicationLeadMs: 1000 })).toThrow(
      /max-age/,
    );
  });
});

describe('rotate now (admin API)', () => {
  it('switches at once, to the successor the schedule already published when there is one', async () => {
    const clock = { now: Date.UTC(2030, 0, 1) };
    const store = newStore(clock);
    const a = instance(store, clock);
    const first = await a.access.mintAccessToken(input);
    const manual = await a.signingKeys.rotate();
    expect(manual).not.toBe(first.kid);
    expect((await a.access.mintAccessToken(input)).kid).toBe(manual);
    await expect(a.access.verifyAccessToken(first.token, { audience: RESOURCE })).resolves.toBeTruthy();

    clock.now += DAY - LEAD;
    const successor = (await kids(a.signingKeys)).find((k) => k !== manual && k !== first.kid)!;
    expect(await a.signingKeys.rotate()).toBe(successor);
    expect(a.rotations).toEqual(['manual', 'manual']);
    expect(await store.count('signing-key:next-after:')).toBe(0);
  });
});

describe('a signing key sealed with another SESSION_SECRET', () => {
  it('is replaced by the instance the store is claimed for, and refused (not replaced in turn) by the other', async () => {
    const clock = { now: Date.UTC(2030, 0, 1) };
    const store = newStore(clock);
    const a = instance(store, clock, { sealingCheck: true });
    expect(await a.check.claim()).toBe('new');
    const old = await a.access.mintAccessToken(input);

    const b = instance(store, clock, { secret: 'secret-b-secret-b-secret-b-secret-b', sealingCheck: true });
    expect(await b.check.claim()).toBe('other');
    const fresh = await b.access.mintAccessToken(input);
    expect(fresh.kid).not.toBe(old.kid);
    expect(b.rotations).toEqual(['unreadable']);
    // Tokens of the old key still verify until they expire; the old key is retired like any other.
    await expect(b.access.verifyAccessToken(old.token, { audience: RESOURCE })).resolves.toBeTruthy();
    expect(await kids(b.signingKeys)).toEqual([fresh.kid, old.kid]);

    // An instance still on the old secret cannot sign and does not take the key back.
    const refused = await a.access.mintAccessToken(input).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SigningKeyError);
    expect((refused as Error).message).toMatch(/SESSION_SECRET.*REDIS_KEY_PREFIX/s);
    expect(await a.signingKeys.activeKid()).toBe(fresh.kid);
    expect(await a.check.claim()).toBe('other'); // a restart of it claims the store back
  });

  it('sealing check: new, then same for the same secret, other for another', async () => {
    const store = newStore({ now: 0 });
    const a = new SealingCheck(store, new SealingKeys('one'));
    expect(await a.isMine()).toBe(true);
    expect(await a.claim()).toBe('new');
    expect(await new SealingCheck(store, new SealingKeys('one')).claim()).toBe('same');
    const b = new SealingCheck(store, new SealingKeys('two'));
    expect(await b.isMine()).toBe(false);
    expect(await b.claim()).toBe('other');
    expect(await b.isMine()).toBe(true);
    expect(await a.isMine()).toBe(false);
  });
});
