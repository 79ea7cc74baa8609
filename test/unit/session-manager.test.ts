import { afterEach, describe, expect, it } from 'vitest';
import type { UpstreamIdentity, UpstreamTokens } from '../../src/auth/oidc/provider.js';
import { readCookie, SessionManager } from '../../src/session/sessions.js';
import { MemoryStateStore } from '../../src/store/memory.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';

const identity: UpstreamIdentity = { sub: 'alice', email: 'alice@example.com', groups: ['engineering'] };
const tokens: UpstreamTokens = { accessToken: 'access-1', refreshToken: 'refresh-1', idToken: 'id-1' };
const loginData = { nonce: 'n', codeVerifier: 'v', returnTo: '/' };

/** `name=value` of a Set-Cookie header: what the browser sends back. */
function sent(setCookie: string): string {
  return setCookie.split(';')[0] as string;
}

function cookieValue(setCookie: string): string {
  return sent(setCookie).slice(sent(setCookie).indexOf('=') + 1);
}

describe('SessionManager', () => {
  const stores: MemoryStateStore[] = [];
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  /** A manager on a fresh memory store, with a clock the test moves. */
  function harness(
    options: {
      idleTimeoutMs?: number;
      maxAgeMs?: number;
      touchIntervalMs?: number;
      secure?: boolean;
      secret?: string;
      store?: MemoryStateStore;
    } = {},
  ) {
    const store = options.store ?? new MemoryStateStore();
    if (!options.store) stores.push(store);
    const clock = { now: Date.now() };
    const sessions = new SessionManager(store, new SealingKeys(options.secret ?? 'unit-test-secret'), {
      idleTimeoutMs: options.idleTimeoutMs ?? 1_000,
      maxAgeMs: options.maxAgeMs ?? 10_000,
      cookie: { secure: options.secure ?? false },
      touchIntervalMs: options.touchIntervalMs,
      now: () => clock.now,
    });
    return {
      store,
      sessions,
      clock,
      advance: (ms: number) => {
        clock.now += ms;
      },
    };
  }

  it('gives every login a new random id, carried in a signed HttpOnly SameSite=Lax cookie', async () => {
    const { sessions } = harness();
    const a = await sessions.create('generic', identity, tokens);
    const b = await sessions.create('generic', identity, tokens);
    expect(a.id).not.toBe(b.id);
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.setCookie).toMatch(
      /^mcp_oidc_proxy=[A-Za-z0-9_-]{43}\.[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=10$/,
    );
    expect(cookieValue(a.setCookie).startsWith(`${a.id}.`)).toBe(true);
    const la = await sessions.load(sent(a.setCookie));
    const lb = await sessions.load(`other=1; ${sent(b.setCookie)}`);
    expect(la).toMatchObject({ kind: 'valid', id: a.id, record: { identity, tokens } });
    expect(lb).toMatchObject({ kind: 'valid', id: b.id });
  });

  it('uses the __Host- prefix and Secure when cookies are secure', async () => {
    const { sessions } = harness({ secure: true });
    const { setCookie } = await sessions.create('generic', identity, tokens);
    expect(setCookie).toMatch(/^__Host-mcp_oidc_proxy=/);
    expect(setCookie).toMatch(/; Secure$/);
    expect(setCookie).not.toMatch(/Domain=/i);
    // The unprefixed name is not read when the prefixed one is expected.
    expect(await sessions.load(`mcp_oidc_proxy=${cookieValue(setCookie)}`)).toEqual({ kind: 'none' });
    expect((await sessions.load(sent(setCookie))).kind).toBe('valid');
  });

  it('ends a session left idle for the idle timeout, and forgets it', async () => {
    const { sessions, advance } = harness({ idleTimeoutMs: 1_000 });
    const fresh = await sessions.create('generic', identity, tokens);
    const idle = await sessions.create('generic', identity, tokens);
    advance(999);
    expect((await sessions.load(sent(fresh.setCookie))).kind).toBe('valid');
    advance(1);
    const expired = await sessions.load(sent(idle.setCookie));
    expect(expired).toMatchObject({ kind: 'expired', reason: 'idle', record: { identity } });
    expect(await sessions.load(sent(idle.setCookie))).toEqual({ kind: 'expired', reason: 'gone' });
  });

  it('keeps a session that is used more often than the idle timeout alive', async () => {
    const { sessions, advance } = harness({ idleTimeoutMs: 1_000, maxAgeMs: 60_000 });
    const { setCookie } = await sessions.create('generic', identity, tokens);
    for (let i = 0; i < 8; i++) {
      advance(600);
      expect((await sessions.load(sent(setCookie))).kind, `request ${i + 1}`).toBe('valid');
    }
  });

  it('ends a session at the absolute timeout however active it is', async () => {
    const { sessions, advance } = harness({ idleTimeoutMs: 1_000, maxAgeMs: 3_000 });
    const { setCookie } = await sessions.create('generic', identity, tokens);
    for (let elapsed = 500; elapsed < 3_000; elapsed += 500) {
      advance(500);
      expect((await sessions.load(sent(setCookie))).kind, `at ${elapsed} ms`).toBe('valid');
    }
    advance(500);
    expect(await sessions.load(sent(setCookie))).toMatchObject({ kind: 'expired', reason: 'absolute' });
    expect((await sessions.load(sent(setCookie))).kind).toBe('expired');
  });

  it('writes the idle clock back at most once per touch interval', async () => {
    const { sessions, store, advance, clock } = harness({
      idleTimeoutMs: 10_000,
      touchIntervalMs: 500,
    });
    const { id, setCookie } = await sessions.create('generic', identity, tokens);
    const createdAt = clock.now;
    const stored = async () => store.get(`seen:${id}`);
    const written = await stored();
    advance(499);
    const early = await sessions.load(sent(setCookie));
    expect(early).toMatchObject({ kind: 'valid', lastSeenAt: createdAt });
    expect(await stored()).toBe(written);
    advance(1);
    const touched = await sessions.load(sent(setCookie));
    expect(touched).toMatchObject({ kind: 'valid', lastSeenAt: createdAt + 500 });
    expect(await stored()).not.toBe(written);
  });

  it('by default touches once a minute when the idle timeout is long', async () => {
    const { sessions, store, advance } = harness({ idleTimeoutMs: 8 * 3600_000, maxAgeMs: 24 * 3600_000 });
    const { id, setCookie } = await sessions.create('generic', identity, tokens);
    const written = await store.get(`seen:${id}`);
    const record = await store.get(`session:${id}`);
    advance(59_999);
    await sessions.load(sent(setCookie));
    expect(await store.get(`seen:${id}`)).toBe(written);
    advance(1);
    await sessions.load(sent(setCookie));
    expect(await store.get(`seen:${id}`)).not.toBe(written);
    // The idle clock never rewrites the record (which holds the tokens).
    expect(await store.get(`session:${id}`)).toBe(record);
  });

  it('refuses forged, tampered, foreign and oversized cookies', async () => {
    const { sessions, store } = harness();
    const other = harness({ secret: 'another-session-secret', store });
    const genuine = await sessions.create('generic', identity, tokens);
    const foreign = await other.sessions.create('generic', identity, tokens);
    const login = await sessions.startLogin(undefined, loginData);
    const value = cookieValue(genuine.setCookie);
    const dot = value.indexOf('.');
    const flip = (s: string, i: number): string =>
      s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    const hostile: Record<string, string> = {
      forged: `${'x'.repeat(43)}.${'y'.repeat(43)}`,
      'signature flipped (first char)': flip(value, dot + 1),
      'signature flipped (last char)': flip(value, value.length - 1),
      'id flipped': flip(value, 0),
      'signature truncated': value.slice(0, -1),
      'signature doubled': `${value}${value.slice(dot)}`,
      unsigned: genuine.id,
      'signature only': value.slice(dot),
      'dot only': '.',
      empty: '',
      'signed with another SESSION_SECRET': cookieValue(foreign.setCookie),
      'the login-binding cookie': cookieValue(login.setCookie as string),
      oversized: `${genuine.id}.${'A'.repeat(5_000)}`,
    };
    for (const [what, cookie] of Object.entries(hostile)) {
      expect(await sessions.load(`mcp_oidc_proxy=${cookie}`), what).toEqual({ kind: 'invalid' });
    }
    // The genuine cookie still works: the refusals above are not the manager refusing everything.
    expect((await sessions.load(sent(genuine.setCookie))).kind).toBe('valid');
    expect((await other.sessions.load(sent(foreign.setCookie))).kind).toBe('valid');
  });

  it('reads a header without its cookie, or malformed, as no session', async () => {
    const { sessions } = harness();
    for (const header of [undefined, '', 'a=1', 'mcp_oidc_proxy', '; ;', 'xmcp_oidc_proxy=1']) {
      expect(await sessions.load(header), String(header)).toEqual({ kind: 'none' });
    }
  });

  it('treats a correctly signed id without a record as gone, never valid', async () => {
    const { sessions } = harness();
    const { id, setCookie } = await sessions.create('generic', identity, tokens);
    await sessions.destroy(id);
    expect(await sessions.load(sent(setCookie))).toEqual({ kind: 'expired', reason: 'gone' });
  });

  it("binds each stored record to its key: a record moved under another session's key is unreadable", async () => {
    const { sessions, store } = harness();
    const a = await sessions.create('generic', { ...identity, sub: 'attacker' }, tokens);
    const b = await sessions.create('generic', identity, tokens);
    const sealedA = (await store.get(`session:${a.id}`)) as string;
    await store.set(`session:${b.id}`, sealedA, 60_000);
    expect(await sessions.load(sent(b.setCookie))).toEqual({ kind: 'invalid' });
    expect(await sessions.load(sent(a.setCookie))).toMatchObject({
      kind: 'valid',
      record: { identity: { sub: 'attacker' } },
    });
  });

  it('cannot read a record written under another SESSION_SECRET', async () => {
    const { sessions, store } = harness();
    const other = harness({ secret: 'another-session-secret', store });
    const mine = await sessions.create('generic', identity, tokens);
    const theirs = await other.sessions.create('generic', identity, tokens);
    await store.set(`session:${mine.id}`, (await store.get(`session:${theirs.id}`)) as string, 60_000);
    expect(await sessions.load(sent(mine.setCookie))).toEqual({ kind: 'invalid' });
  });

  it('lets exactly one of 20 concurrent callbacks finish a login', async () => {
    const { sessions } = harness();
    const { state, setCookie } = await sessions.startLogin(undefined, loginData);
    const cookie = sent(setCookie as string);
    const results = await Promise.all(Array.from({ length: 20 }, () => sessions.finishLogin(cookie, state)));
    expect(results.filter((r) => r.ok)).toHaveLength(1);
    expect(results.filter((r) => !r.ok && r.reason === 'unknown_state')).toHaveLength(19);
    expect(await sessions.finishLogin(cookie, state)).toEqual({ ok: false, reason: 'unknown_state' });
  });

  it('finishes a login only in the browser that started it', async () => {
    const { sessions } = harness();
    const mine = await sessions.startLogin(undefined, loginData);
    const theirs = await sessions.startLogin(undefined, loginData);
    const myCookie = sent(mine.setCookie as string);
    const theirCookie = sent(theirs.setCookie as string);
    expect(cookieValue(myCookie)).not.toBe(cookieValue(theirCookie));

    const second = await sessions.startLogin(myCookie, loginData);
    const third = await sessions.startLogin(myCookie, loginData);
    const fourth = await sessions.startLogin(myCookie, { ...loginData, returnTo: '/back' });
    expect(await sessions.finishLogin(theirCookie, mine.state)).toEqual({
      ok: false,
      reason: 'browser_mismatch',
    });
    expect(await sessions.finishLogin(undefined, second.state)).toEqual({
      ok: false,
      reason: 'browser_mismatch',
    });
    const binding = cookieValue(myCookie);
    const tampered = `mcp_oidc_proxy_login=${binding.slice(0, -1)}${binding.endsWith('A') ? 'B' : 'A'}`;
    expect(await sessions.finishLogin(tampered, third.state)).toEqual({
      ok: false,
      reason: 'browser_mismatch',
    });
    expect(await sessions.finishLogin(myCookie, fourth.state)).toMatchObject({
      ok: true,
      login: { nonce: 'n', codeVerifier: 'v', returnTo: '/back' },
    });
    // A refused attempt used the login up: the rightful browser cannot finish it afterwards either.
    expect(await sessions.finishLogin(myCookie, mine.state)).toEqual({ ok: false, reason: 'unknown_state' });
  });

  it("keeps one binding per browser and renews its cookie's lifetime on every login", async () => {
    const { sessions } = harness();
    const first = await sessions.startLogin(undefined, loginData);
    const cookie = sent(first.setCookie as string);
    const again = await sessions.startLogin(cookie, loginData);
    expect(again.setCookie).toBeDefined();
    expect(sent(again.setCookie as string)).toBe(cookie);
    expect(again.setCookie).toMatch(/Max-Age=600/);
    expect((await sessions.finishLogin(cookie, first.state)).ok).toBe(true);
    expect((await sessions.finishLogin(cookie, again.state)).ok).toBe(true);
  });

  it('refuses unknown and oversized states', async () => {
    const { sessions } = harness();
    const { setCookie } = await sessions.startLogin(undefined, loginData);
    const cookie = sent(setCookie as string);
    for (const state of ['', 'unknown', 'x'.repeat(129), 'login:x', '../x']) {
      expect(await sessions.finishLogin(cookie, state), state).toEqual({
        ok: false,
        reason: 'unknown_state',
      });
    }
  });

  it('cannot finish a login whose record was moved under another state', async () => {
    const { sessions, store } = harness();
    const a = await sessions.startLogin(undefined, loginData);
    const cookie = sent(a.setCookie as string);
    const b = await sessions.startLogin(cookie, loginData);
    await store.set(`login:${b.state}`, (await store.get(`login:${a.state}`)) as string, 60_000);
    expect(await sessions.finishLogin(cookie, b.state)).toEqual({ ok: false, reason: 'unknown_state' });
    expect((await sessions.finishLogin(cookie, a.state)).ok).toBe(true);
  });

  it('gives the refresh lock to exactly one of 20 concurrent callers until it is released', async () => {
    const { sessions } = harness();
    const { id } = await sessions.create('generic', identity, tokens);
    const got = await Promise.all(Array.from({ length: 20 }, () => sessions.lockRefresh(id)));
    expect(got.filter(Boolean)).toHaveLength(1);
    expect(await sessions.lockRefresh(id)).toBe(false);
    // Locks are per session.
    const other = await sessions.create('generic', identity, tokens);
    expect(await sessions.lockRefresh(other.id)).toBe(true);
    await sessions.unlockRefresh(id);
    expect(await sessions.lockRefresh(id)).toBe(true);
  });

  it('lists live sessions read-only (past timeouts left out, nothing touched) and ends all of one user', async () => {
    const { sessions, clock, store } = harness({
      idleTimeoutMs: 1_000,
      maxAgeMs: 10_000,
      touchIntervalMs: 100,
    });
    const a = await sessions.create('generic', identity, tokens);
    const b = await sessions.create('generic', { ...identity, sub: 'bob' }, tokens);
    clock.now += 500;
    const idle = await sessions.create('generic', identity, tokens);
    const listed = await sessions.list();
    expect(listed.map((s) => s.id).sort()).toEqual([a.id, b.id, idle.id].sort());
    expect(listed.find((s) => s.id === a.id)).toMatchObject({
      record: { identity },
      lastSeenAt: clock.now - 500,
      expiresAt: clock.now - 500 + 1_000,
    });
    clock.now += 600; // a and b idled out; idle was created 600 ms ago
    const seenBefore = await store.get(`seen:${idle.id}`);
    expect((await sessions.list()).map((s) => s.id)).toEqual([idle.id]);
    expect(await store.get(`seen:${idle.id}`)).toBe(seenBefore);
    // Listing destroyed nothing: the idle sessions are still stored until a request finds them.
    expect(await sessions.count()).toBe(3);

    await sessions.load(sent(idle.setCookie));
    const more = await sessions.create('generic', identity, tokens);
    expect(await sessions.destroySubject('alice')).toBe(2);
    expect((await sessions.load(sent(more.setCookie))).kind).toBe('expired');
    expect(await sessions.destroySubject('alice')).toBe(0);
  });

  it('clears both cookies on logout', () => {
    const { sessions } = harness();
    expect(sessions.clearCookies()).toEqual([
      'mcp_oidc_proxy=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0',
      'mcp_oidc_proxy_login=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0',
    ]);
  });
});

describe('SealingKeys', () => {
  it('encrypts with the context bound: another context, key or a flipped bit cannot decrypt', () => {
    const keys = new SealingKeys('unit-test-secret');
    const sealed = keys.encrypt('{"secret":"value"}', 'session:a');
    expect(sealed).not.toContain('value');
    expect(keys.decrypt(sealed, 'session:a')).toBe('{"secret":"value"}');
    expect(keys.decrypt(sealed, 'session:b')).toBeUndefined();
    expect(new SealingKeys('another-secret').decrypt(sealed, 'session:a')).toBeUndefined();
    const raw = Buffer.from(sealed, 'base64url');
    for (const i of [0, 12, 28, raw.length - 1]) {
      const flipped = Buffer.from(raw);
      flipped[i] = (flipped[i] as number) ^ 1;
      expect(keys.decrypt(flipped.toString('base64url'), 'session:a'), `byte ${i}`).toBeUndefined();
    }
    for (const garbage of ['', 'x', 'not base64!', 'A'.repeat(20)]) {
      expect(keys.decrypt(garbage, 'session:a')).toBeUndefined();
    }
  });

  it('encrypts the same text differently every time', () => {
    const keys = new SealingKeys('unit-test-secret');
    expect(keys.encrypt('x', 'c')).not.toBe(keys.encrypt('x', 'c'));
  });

  it('signs per purpose: a value signed for one purpose is refused for another', () => {
    const keys = new SealingKeys('unit-test-secret');
    const signed = keys.sign('abc', 'session');
    expect(keys.unsign(signed, 'session')).toBe('abc');
    expect(keys.unsign(signed, 'login')).toBeUndefined();
    expect(new SealingKeys('another-secret').unsign(signed, 'session')).toBeUndefined();
    expect(keys.unsign('abc', 'session')).toBeUndefined();
    expect(keys.unsign(`.${signed.split('.')[1]}`, 'session')).toBeUndefined();
  });

  it('derives the same keys from the same secret (instances sharing Redis)', () => {
    const a = new SealingKeys('shared-secret');
    const b = new SealingKeys('shared-secret');
    expect(b.unsign(a.sign('id', 'session'), 'session')).toBe('id');
    expect(b.decrypt(a.encrypt('x', 'c'), 'c')).toBe('x');
    const random1 = new SealingKeys(undefined);
    const random2 = new SealingKeys(undefined);
    expect(random2.unsign(random1.sign('id', 'session'), 'session')).toBeUndefined();
  });

  it('reads cookies by exact name', () => {
    expect(readCookie('a=1; mcp_oidc_proxy=v; b=2', 'mcp_oidc_proxy')).toBe('v');
    expect(readCookie('xmcp_oidc_proxy=v', 'mcp_oidc_proxy')).toBeUndefined();
    expect(readCookie('mcp_oidc_proxy_login=v', 'mcp_oidc_proxy')).toBeUndefined();
    expect(readCookie('mcp_oidc_proxy=a=b', 'mcp_oidc_proxy')).toBe('a=b');
  });
});
