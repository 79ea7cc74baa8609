import { randomBytes } from 'node:crypto';
import * as client from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProvider } from '../../src/auth/oidc/presets.js';
import { LoginRejectedError } from '../../src/auth/oidc/provider.js';
import { loadConfig } from '../../src/config/load.js';
import { DEFAULT_DEV_USERS } from '../../src/demo/dev-idp.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { captureLogs } from '../helpers/log-capture.js';
import { CLIENT_ID, CLIENT_SECRET, type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { freePort, waitFor } from '../helpers/servers.js';

const SESSION_SECRET = 'attack-tests-session-secret-0123456789abcdef';
const alice = { username: 'alice', password: 'alice-password' };
const bob = { username: 'bob', password: 'bob-password' };
const carol = { username: 'carol', password: 'carol-password' };
const SESSION_COOKIE = 'mcp_oidc_proxy';
const LOGIN_COOKIE = 'mcp_oidc_proxy_login';

interface Echo {
  url: string;
  headers: Record<string, string | undefined>;
}

function random43(): string {
  return randomBytes(32).toString('base64url');
}

/** Session cookies a response sets (not the ones it clears). */
function sessionCookiesSet(res: Response): string[] {
  return res.headers
    .getSetCookie()
    .filter((c) => c.startsWith(`${SESSION_COOKIE}=`) && !/Max-Age=0\b/.test(c));
}

describe('browser login under attack', () => {
  let stack: OidcStack;
  let backendHits = 0;
  /** Every secret value seen during the tests: none may ever appear in the proxy's log. */
  const seen = {
    states: new Set<string>(),
    codes: new Set<string>(),
    cookies: new Set<string>(),
    idpTokens: new Set<string>(),
    forwardedTokens: new Set<string>(),
  };

  beforeAll(async () => {
    stack = await startOidcStack(
      {
        SESSION_SECRET,
        AUTH_RATE_LIMIT_PER_MINUTE: '1000',
        ALLOWED_EMAILS: 'alice@example.com,carol@example.com',
        FORWARD_ACCESS_TOKEN: 'true',
        FORWARD_ID_TOKEN: 'true',
      },
      {
        users: [
          ...DEFAULT_DEV_USERS,
          {
            username: 'carol',
            password: 'carol-password',
            email: 'carol@example.com',
            name: 'Carol Example',
            groups: ['mcp-users'],
          },
        ],
      },
    );
    stack.backend.server.on('request', () => {
      backendHits++;
    });
    // The IdP's opaque tokens and codes: their value is the jti.
    for (const model of ['access_token', 'refresh_token', 'authorization_code']) {
      stack.idp.provider.on(`${model}.saved`, (token) => {
        seen.idpTokens.add((token as { jti: string }).jti);
      });
    }
  });
  afterAll(async () => {
    await stack?.close();
  });

  const url = (path: string): string => `${stack.url}${path}`;

  function remember(jar: CookieJar): void {
    for (const c of jar.list(stack.url)) seen.cookies.add(c.value);
  }

  function sessionCookie(jar: CookieJar): string | undefined {
    remember(jar);
    return jar.list(stack.url).find((c) => c.name === SESSION_COOKIE)?.value;
  }

  async function request(
    path: string,
    options: { cookie?: string; html?: boolean; method?: string; origin?: string } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = {
      accept: options.html ? 'text/html' : 'application/json',
    };
    if (options.cookie !== undefined) headers.cookie = options.cookie;
    if (options.origin !== undefined) headers.origin = options.origin;
    return fetch(url(path), { method: options.method ?? 'GET', headers, redirect: 'manual' });
  }

  /** A full login; returns the jar holding the session. */
  async function login(
    user = alice,
    jar = new CookieJar(),
    start = '/',
  ): Promise<{ jar: CookieJar; echo: Echo }> {
    const result = await loginThroughBrowserless(url(start), user, { jar });
    expect(result.status, result.body).toBe(200);
    const echo = JSON.parse(result.body) as Echo;
    for (const name of ['x-forwarded-access-token', 'x-forwarded-id-token']) {
      const token = echo.headers[name];
      if (token) seen.forwardedTokens.add(token);
    }
    remember(jar);
    return { jar, echo };
  }

  /** Runs a login up to the redirect to the proxy's /callback and returns that URL, unrequested. */
  async function loginUpToCallback(jar: CookieJar, start = '/login', user = alice): Promise<URL> {
    const result = await loginThroughBrowserless(url(start), user, {
      jar,
      stopAt: (u) => u.origin === stack.url && u.pathname === '/callback',
    });
    const callback = new URL(result.finalUrl);
    expect(callback.pathname).toBe('/callback');
    const code = callback.searchParams.get('code');
    const state = callback.searchParams.get('state');
    expect(code).toBeTruthy();
    expect(state).toBeTruthy();
    seen.codes.add(code as string);
    seen.states.add(state as string);
    remember(jar);
    return callback;
  }

  async function callback(target: URL | string, jar?: CookieJar): Promise<Response> {
    const u = new URL(target, stack.url);
    const res = await fetch(u, {
      headers: { accept: 'text/html', ...(jar ? { cookie: jar.get(u) } : {}) },
      redirect: 'manual',
    });
    if (jar) {
      jar.setFrom(u, res.headers.getSetCookie());
      remember(jar);
    }
    return res;
  }

  async function expectNoSessionAndNothingForwarded(
    attempt: () => Promise<Response>,
    status: number,
  ): Promise<Response> {
    const before = backendHits;
    const res = await attempt();
    expect(res.status).toBe(status);
    expect(sessionCookiesSet(res)).toEqual([]);
    expect(backendHits).toBe(before);
    return res;
  }

  function failureReasons(): unknown[] {
    return stack.proxy.logs.filter((l) => l.audit === 'login_failure').map((l) => l.reason);
  }

  describe('hostile session cookies', () => {
    it('treats forged, tampered, foreign, oversized and malformed cookies as no session', async () => {
      const { jar } = await login();
      const genuine = sessionCookie(jar) as string;
      const dot = genuine.indexOf('.');
      const id = genuine.slice(0, dot);
      const flip = (s: string, i: number): string =>
        s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
      const loginBinding = jar.list(stack.url).find((c) => c.name === LOGIN_COOKIE)?.value;
      expect(loginBinding).toBeDefined();
      const hostile: Record<string, string> = {
        'forged (random id, valid format)': `${SESSION_COOKIE}=${random43()}.${random43()}`,
        'signature flipped': `${SESSION_COOKIE}=${flip(genuine, dot + 1)}`,
        'signature last char flipped': `${SESSION_COOKIE}=${flip(genuine, genuine.length - 1)}`,
        'id flipped': `${SESSION_COOKIE}=${flip(genuine, 0)}`,
        unsigned: `${SESSION_COOKIE}=${id}`,
        'signed with another SESSION_SECRET': `${SESSION_COOKIE}=${new SealingKeys('another-secret-entirely').sign(id, 'session')}`,
        'signed with the right secret, unknown id': `${SESSION_COOKIE}=${new SealingKeys(SESSION_SECRET).sign(random43(), 'session')}`,
        'the login-binding cookie as a session cookie': `${SESSION_COOKIE}=${loginBinding}`,
        'oversized (5 KB)': `${SESSION_COOKIE}=${id}.${'A'.repeat(5 * 1024)}`,
        'no value': SESSION_COOKIE,
        'empty value': `${SESSION_COOKIE}=`,
        'dots only': `${SESSION_COOKIE}=...`,
        'percent garbage': `${SESSION_COOKIE}=%ZZ%00.%FF`,
        'quoted value': `${SESSION_COOKIE}="${genuine}"`,
      };
      for (const [what, cookie] of Object.entries(hostile)) {
        const api = await expectNoSessionAndNothingForwarded(() => request('/private', { cookie }), 401);
        expect(api.headers.get('www-authenticate'), what).toMatch(/^Bearer resource_metadata="/);
        const page = await expectNoSessionAndNothingForwarded(
          () => request('/private', { cookie, html: true }),
          302,
        );
        expect(page.headers.get('location'), what).toBe('/login?rd=%2Fprivate');
        // A dead cookie is deleted, so the browser stops presenting it (a bare name is no cookie).
        const deleted = cookie.includes('=')
          ? [
              expect.stringMatching(
                new RegExp(`^${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0`),
              ),
            ]
          : [];
        for (const res of [api, page]) expect(res.headers.getSetCookie(), what).toEqual(deleted);
      }
      // Without a session cookie there is nothing to delete.
      const bare = await request('/private', {});
      expect(bare.status).toBe(401);
      expect(bare.headers.getSetCookie()).toEqual([]);
      // A header too large for the server is refused by Node's parser, not by a crash.
      const huge = await request('/private', { cookie: `${SESSION_COOKIE}=${'A'.repeat(40 * 1024)}` });
      expect(huge.status).toBe(431);
      // The genuine cookie still opens the session: the refusals were about the cookies.
      const before = backendHits;
      const ok = await request('/private', { cookie: `${SESSION_COOKIE}=${genuine}` });
      expect(ok.status).toBe(200);
      expect(backendHits).toBe(before + 1);
    });
  });

  describe('the callback', () => {
    it('refuses a state that was never issued', async () => {
      const jar = new CookieJar();
      await loginUpToCallback(jar); // the browser holds a genuine login binding
      const res = await expectNoSessionAndNothingForwarded(
        () => callback(`/callback?code=${random43()}&state=${random43()}`, jar),
        400,
      );
      expect(await res.text()).toContain('expired or was already used');
      expect(failureReasons()).toContain('unknown_state');
    });

    it('accepts a callback once; the replay gets 400 and no session', async () => {
      const jar = new CookieJar();
      const cb = await loginUpToCallback(jar, '/login?rd=%2Fafter');
      const first = await callback(cb, jar);
      expect(first.status).toBe(302);
      expect(first.headers.get('location')).toBe('/after');
      expect(sessionCookiesSet(first)).toHaveLength(1);
      const session = sessionCookie(jar) as string;
      expect((await request('/x', { cookie: `${SESSION_COOKIE}=${session}` })).status).toBe(200);

      const replay = await expectNoSessionAndNothingForwarded(() => callback(cb, jar), 400);
      expect(await replay.text()).toContain('expired or was already used');
      // A replay without the browser's cookies fares no better.
      await expectNoSessionAndNothingForwarded(() => callback(cb), 400);
    });

    it('refuses a callback delivered to another browser (browser_mismatch), and burns it', async () => {
      const victim = new CookieJar();
      const cb = await loginUpToCallback(victim);
      const attacker = new CookieJar();
      await loginUpToCallback(attacker); // the attacker's browser has a binding of its own
      const res = await expectNoSessionAndNothingForwarded(() => callback(cb, attacker), 400);
      expect(await res.text()).toContain('started in another browser');
      expect(failureReasons()).toContain('browser_mismatch');
      // A browser with no binding at all is another browser too.
      const other = await loginUpToCallback(victim);
      await expectNoSessionAndNothingForwarded(() => callback(other), 400);
      // The attempt used the login up: the victim must start again, the code cannot be spent.
      await expectNoSessionAndNothingForwarded(() => callback(cb, victim), 400);
    });

    it('refuses a callback without a code', async () => {
      const jar = new CookieJar();
      const cb = await loginUpToCallback(jar);
      cb.searchParams.delete('code');
      const res = await expectNoSessionAndNothingForwarded(() => callback(cb, jar), 400);
      expect(await res.text()).toContain('incomplete');
      expect(failureReasons()).toContain('missing_state_or_code');
      await expectNoSessionAndNothingForwarded(() => callback('/callback', jar), 400);
    });

    it('shows a clear page when the provider answers error=access_denied, and escapes what it says', async () => {
      const jar = new CookieJar();
      const cb = await loginUpToCallback(jar);
      const state = cb.searchParams.get('state') as string;
      const description = '<script>alert(1)</script> the user said no';
      const res = await expectNoSessionAndNothingForwarded(
        () =>
          callback(
            `/callback?error=access_denied&error_description=${encodeURIComponent(description)}&state=${state}`,
            jar,
          ),
        401,
      );
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      const body = await res.text();
      expect(body).toContain('Sign-in failed');
      expect(body).toContain('access_denied');
      expect(body).toContain('the user said no');
      expect(body).not.toContain('<script>');
      expect(body).toContain('href="/login"');
      expect(failureReasons()).toContain('provider_error: access_denied');
    });

    it("refuses one login's code presented with another login's state (PKCE and nonce belong to the state)", async () => {
      const jar = new CookieJar();
      const first = await loginUpToCallback(jar);
      const second = await loginUpToCallback(jar);
      const swapped = new URL(second);
      swapped.searchParams.set('code', first.searchParams.get('code') as string);
      const res = await expectNoSessionAndNothingForwarded(() => callback(swapped, jar), 401);
      expect(await res.text()).toContain('could not be verified');
      expect(failureReasons()).toContain('invalid_grant');
    });

    it("rejects an ID token whose nonce is not the login's (the provider, against the real IdP)", async () => {
      const config = loadConfig({
        env: {
          AUTH_MODE: 'oidc',
          SERVER_PORT: '0',
          PUBLIC_URL: stack.url,
          PROXY_TARGET_URL: stack.backend.url,
          OIDC_DISCOVERY_URL: `${stack.idp.issuer}/.well-known/openid-configuration`,
          OIDC_CLIENT_ID: CLIENT_ID,
          OIDC_CLIENT_SECRET: CLIENT_SECRET,
          OIDC_SCOPES: 'openid email profile',
        },
      });
      const provider = createProvider(config, captureLogs('debug').logger);
      try {
        await provider.ready();
        const jar = new CookieJar();
        const authorize = async (nonce: string) => {
          const state = client.randomState();
          const codeVerifier = client.randomPKCECodeVerifier();
          const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
          const start = provider.authorizationUrl({ state, nonce, codeVerifier, codeChallenge });
          const result = await loginThroughBrowserless(start.href, alice, {
            jar,
            stopAt: (u) => u.pathname === '/callback',
          });
          return { callbackUrl: new URL(result.finalUrl), state, codeVerifier };
        };
        const wrong = await authorize(client.randomNonce());
        const error = await provider
          .redeem(wrong.callbackUrl, {
            state: wrong.state,
            codeVerifier: wrong.codeVerifier,
            nonce: client.randomNonce(),
          })
          .then(
            () => undefined,
            (err: unknown) => err,
          );
        expect(error).toBeInstanceOf(LoginRejectedError);
        expect((error as LoginRejectedError).reason).toBe('OAUTH_JWT_CLAIM_COMPARISON_FAILED');
        const causes: string[] = [];
        for (let e: unknown = error; e instanceof Error; e = e.cause) causes.push(e.message);
        expect(causes.join(' <- ')).toMatch(/"nonce" claim/);
        // The same steps with the login's own nonce succeed: the nonce was the only fault.
        const nonce = client.randomNonce();
        const right = await authorize(nonce);
        const redeemed = await provider.redeem(right.callbackUrl, {
          state: right.state,
          codeVerifier: right.codeVerifier,
          nonce,
        });
        expect(redeemed.identity.sub).toBe('alice');
      } finally {
        provider.close();
      }
    });
  });

  describe('where the login lands (rd)', () => {
    const cases = (): Array<[string, string]> => [
      ['https://evil.example', '/'],
      ['//evil.example', '/'],
      ['/\\evil.example', '/'],
      ['/%5Cevil.example', '/%5Cevil.example'],
      ['javascript:alert(1)', '/'],
      [`http://127.0.0.1:${new URL(stack.url).port}@evil.example`, '/'],
      [`${stack.url}@evil.example/x`, '/'],
      ['/.//evil.example', '/'],
      ['/%2e//evil.example', '/'],
      [`${stack.url}//evil.example`, '/'],
      [`${stack.url}/own/path?q=1`, '/own/path?q=1'],
      ['/ok?x=1#frag', '/ok?x=1#frag'],
    ];

    it('never leaves the proxy origin', async () => {
      const jar = new CookieJar();
      for (const [rd, expected] of cases()) {
        const cb = await loginUpToCallback(jar, `/login?rd=${encodeURIComponent(rd)}`);
        const res = await callback(cb, jar);
        expect(res.status, rd).toBe(302);
        const location = res.headers.get('location') as string;
        expect(location, rd).toBe(expected);
        expect(new URL(location, stack.url).origin, rd).toBe(stack.url);
      }
    });

    it('lands on the same-origin target after a full login', async () => {
      const { echo } = await login(alice, new CookieJar(), `/login?rd=${encodeURIComponent('/ok?x=1#frag')}`);
      expect(echo.url).toBe('/ok?x=1');
      const own = await login(
        alice,
        new CookieJar(),
        `/login?rd=${encodeURIComponent(`${stack.url}/own/path?q=1`)}`,
      );
      expect(own.echo.url).toBe('/own/path?q=1');
    });
  });

  describe('session fixation', () => {
    it('replaces a planted cookie by a new id; the planted id never becomes a session', async () => {
      const planted = new SealingKeys(SESSION_SECRET).sign(random43(), 'session');
      const jar = new CookieJar();
      jar.setFrom(stack.url, `${SESSION_COOKIE}=${planted}; Path=/`);
      const { echo } = await login(alice, jar);
      expect(echo.headers['x-forwarded-user']).toBe('alice');
      const issued = sessionCookie(jar) as string;
      expect(issued).not.toBe(planted);
      expect(issued.split('.')[0]).not.toBe(planted.split('.')[0]);
      await expectNoSessionAndNothingForwarded(
        () => request('/x', { cookie: `${SESSION_COOKIE}=${planted}` }),
        401,
      );
      expect((await request('/x', { cookie: `${SESSION_COOKIE}=${issued}` })).status).toBe(200);
    });

    it("does not let a victim's login upgrade the attacker's session; the replaced session ends", async () => {
      const attacker = await login(carol);
      const attackerCookie = sessionCookie(attacker.jar) as string;
      const victim = new CookieJar();
      victim.setFrom(stack.url, `${SESSION_COOKIE}=${attackerCookie}; Path=/`);
      // The victim signs in (the planted cookie would otherwise simply be used, as any session is).
      const { echo } = await login(alice, victim, '/login');
      expect(echo.headers['x-forwarded-user']).toBe('alice');
      const victimCookie = sessionCookie(victim) as string;
      expect(victimCookie).not.toBe(attackerCookie);
      const res = await request('/x', { cookie: `${SESSION_COOKIE}=${victimCookie}` });
      expect(((await res.json()) as Echo).headers['x-forwarded-user']).toBe('alice');
      // The session the browser held before the login is over: it is not carried on beside the new one.
      await expectNoSessionAndNothingForwarded(
        () => request('/x', { cookie: `${SESSION_COOKIE}=${attackerCookie}` }),
        401,
      );
    });
  });

  describe('logout', () => {
    it('refuses a cross-site POST /logout (Origin guard) and the session survives', async () => {
      const { jar } = await login();
      const cookie = `${SESSION_COOKIE}=${sessionCookie(jar)}`;
      for (const origin of ['https://evil.example', 'null', `${stack.url}.evil.example`]) {
        const res = await request('/logout', { method: 'POST', cookie, origin });
        expect(res.status, origin).toBe(403);
        expect(res.headers.getSetCookie()).toEqual([]);
      }
      expect((await request('/x', { cookie })).status).toBe(200);
      const sameSite = await request('/logout', { method: 'POST', cookie, origin: stack.url });
      expect(sameSite.status).toBe(302);
      expect(sameSite.headers.getSetCookie().join('\n')).toMatch(/mcp_oidc_proxy=; .*Max-Age=0/);
      await expectNoSessionAndNothingForwarded(() => request('/x', { cookie }), 401);
    });

    it('logs out with GET, and answers other methods with 405', async () => {
      const { jar } = await login();
      const cookie = `${SESSION_COOKIE}=${sessionCookie(jar)}`;
      const put = await request('/logout', { method: 'PUT', cookie });
      expect(put.status).toBe(405);
      expect(put.headers.get('allow')).toBe('GET, POST');
      expect((await request('/x', { cookie })).status).toBe(200);
      const out = await request('/logout', { cookie });
      expect(out.status).toBe(302);
      await expectNoSessionAndNothingForwarded(() => request('/x', { cookie }), 401);
      // Logging out without a session is harmless: a page, cookies cleared.
      const again = await request('/logout', { cookie });
      expect(again.status).toBe(200);
      expect(again.headers.getSetCookie().join('\n')).toMatch(/mcp_oidc_proxy=; .*Max-Age=0/);
    });
  });

  describe('policy', () => {
    it('gives a user outside the allow-list no session and forwards nothing', async () => {
      const before = backendHits;
      const jar = new CookieJar();
      const result = await loginThroughBrowserless(url('/private'), bob, { jar });
      remember(jar);
      expect(result.status).toBe(403);
      expect(result.body).toContain('Access denied');
      expect(sessionCookie(jar)).toBeUndefined();
      expect(backendHits).toBe(before);
    });
  });

  describe('audit and logs', () => {
    it('records who did what, and never writes a secret, code, state, cookie or token', async () => {
      await waitFor(
        () =>
          ['login_success', 'login_failure', 'logout', 'access_denied'].every((e) =>
            stack.proxy.logs.some((l) => l.audit === e),
          ),
        2000,
        'audit events',
      );
      const audits = stack.proxy.logs.filter((l) => typeof l.audit === 'string');
      expect(audits.find((l) => l.audit === 'login_success')).toMatchObject({
        sub: 'alice',
        email: 'alice@example.com',
        provider: 'generic',
        ip: '127.0.0.1',
      });
      expect(audits.find((l) => l.audit === 'logout')).toMatchObject({ sub: expect.any(String) });
      expect(audits.find((l) => l.audit === 'access_denied')).toMatchObject({
        sub: 'bob',
        email: 'bob@other.org',
      });
      expect(new Set(failureReasons())).toEqual(
        new Set([
          'unknown_state',
          'browser_mismatch',
          'missing_state_or_code',
          'provider_error: access_denied',
          'invalid_grant',
        ]),
      );
      for (const l of audits.filter((a) => a.audit === 'login_failure')) {
        expect(l).toMatchObject({ ip: '127.0.0.1', provider: 'generic' });
      }

      // Everything the tests saw must have been seen, or the check below would prove nothing.
      expect(seen.states.size).toBeGreaterThan(10);
      expect(seen.codes.size).toBeGreaterThan(10);
      expect(seen.cookies.size).toBeGreaterThan(5);
      expect(seen.idpTokens.size).toBeGreaterThan(10);
      expect(seen.forwardedTokens.size).toBeGreaterThan(2);
      const text = stack.proxy.logText();
      expect(text).toContain('"audit":"login_success"');
      const secrets: Array<[string, string]> = [
        ['client secret', CLIENT_SECRET],
        ['session secret', SESSION_SECRET],
        ...[...seen.states].map((v): [string, string] => ['state', v]),
        ...[...seen.codes].map((v): [string, string] => ['code', v]),
        ...[...seen.cookies].map((v): [string, string] => ['cookie', v]),
        ...[...seen.idpTokens].map((v): [string, string] => ['IdP token or code', v]),
        ...[...seen.forwardedTokens].map((v): [string, string] => ['forwarded token', v]),
      ];
      for (const [what, value] of secrets) {
        expect(text.includes(value), `${what} in the log: ${value.slice(0, 8)}…`).toBe(false);
        // A cookie value's id half alone is a session id: not logged either.
        if (what === 'cookie' && value.includes('.')) {
          expect(text.includes(value.split('.')[0] as string), `${what} id in the log`).toBe(false);
        }
      }
    });
  });
});

describe('rate limiting of the login endpoints', () => {
  let stack: OidcStack;

  beforeAll(async () => {
    stack = await startOidcStack({ AUTH_RATE_LIMIT_PER_MINUTE: '3', TRUSTED_PROXIES: '127.0.0.1' });
  });
  afterAll(async () => {
    await stack?.close();
  });

  const from = (ip: string, path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${stack.url}${path}`, {
      ...init,
      redirect: 'manual',
      headers: { 'x-forwarded-for': ip, accept: 'text/html', ...(init.headers as Record<string, string>) },
    });

  async function expectLimited(res: Response): Promise<void> {
    expect(res.status).toBe(429);
    const retryAfter = Number(res.headers.get('retry-after'));
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await res.json()) as { error: string }).error).toBe('rate_limited');
    expect(res.headers.getSetCookie()).toEqual([]);
  }

  it('answers the 4th /login from one client with 429, Retry-After and a JSON body', async () => {
    for (let i = 0; i < 3; i++) expect((await from('198.51.100.1', '/login')).status).toBe(302);
    await expectLimited(await from('198.51.100.1', '/login'));
    await expectLimited(await from('198.51.100.1', '/login?rd=%2Fx'));
    // Another client is not affected.
    expect((await from('198.51.100.2', '/login')).status).toBe(302);
  });

  it('counts /callback in the same budget', async () => {
    expect((await from('198.51.100.3', '/login')).status).toBe(302);
    expect((await from('198.51.100.3', `/callback?code=x&state=${random43()}`)).status).toBe(400);
    expect((await from('198.51.100.3', '/callback?error=access_denied')).status).toBe(401);
    await expectLimited(await from('198.51.100.3', `/callback?code=x&state=${random43()}`));
    await expectLimited(await from('198.51.100.3', '/login'));
  });

  it('does not limit the other paths', async () => {
    for (let i = 0; i < 3; i++) await from('198.51.100.4', '/login');
    await expectLimited(await from('198.51.100.4', '/login'));
    for (let i = 0; i < 8; i++) {
      expect((await from('198.51.100.4', '/private')).status).toBe(302);
      expect((await from('198.51.100.4', '/mcp', { headers: { accept: 'application/json' } })).status).toBe(
        401,
      );
      expect((await from('198.51.100.4', '/logout')).status).toBe(200);
      expect((await from('198.51.100.4', '/health')).status).toBe(200);
    }
  });
});

describe('a callback path of its own (OIDC_REDIRECT_URL)', () => {
  let stack: OidcStack;
  let publicUrl: string;

  beforeAll(async () => {
    const port = await freePort();
    publicUrl = `http://127.0.0.1:${port}`;
    stack = await startOidcStack(
      {
        SERVER_PORT: String(port),
        PUBLIC_URL: publicUrl,
        OIDC_REDIRECT_URL: `${publicUrl}/oauth2/callback`,
      },
      {
        clients: [
          {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            redirect_uris: [`${publicUrl}/oauth2/callback`],
          },
        ],
      },
    );
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('is where the proxy finishes the login, not a path forwarded to the backend', async () => {
    const jar = new CookieJar();
    const result = await loginThroughBrowserless(`${publicUrl}/some/page`, alice, { jar });
    expect(result.visited.some((u) => u.startsWith(`${publicUrl}/oauth2/callback?`))).toBe(true);
    expect(result.status).toBe(200);
    expect((JSON.parse(result.body) as Echo).url).toBe('/some/page');
    expect(jar.list(publicUrl).some((c) => c.name === SESSION_COOKIE)).toBe(true);
    // Replayed, it is refused like any used callback.
    const callbackUrl = result.visited.find((u) => u.startsWith(`${publicUrl}/oauth2/callback?`)) as string;
    const replay = await fetch(callbackUrl, { headers: { cookie: jar.get(publicUrl) }, redirect: 'manual' });
    expect(replay.status).toBe(400);
  });
});
