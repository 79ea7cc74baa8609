import { createServer, request as httpRequest, type IncomingMessage } from 'node:http';
import * as client from 'openid-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/auth/audit.js';
import { type BrowserAuthResult, BrowserLogin } from '../../src/auth/browser/browser-login.js';
import { createProvider } from '../../src/auth/oidc/presets.js';
import type { Provider, UpstreamIdentity } from '../../src/auth/oidc/provider.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { SessionManager } from '../../src/session/sessions.js';
import { MemoryStateStore } from '../../src/store/memory.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';
import type { StateStore } from '../../src/store/state-store.js';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { captureLogs } from '../helpers/log-capture.js';
import { CLIENT_ID, CLIENT_SECRET, type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type Listening, listen, waitFor } from '../helpers/servers.js';

const SESSION_SECRET = 'refresh-tests-session-secret-0123456789abcdef';
const alice = { username: 'alice', password: 'alice-password' };
/**
 * Access tokens live 30 s: always within the proxy's 60 s refresh margin, so every
 * authenticated request refreshes (unless another request holds the refresh lock).
 */
const ACCESS_TOKEN_TTL = 30;

interface Echo {
  url: string;
  headers: Record<string, string | undefined>;
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * A plain HTTP forwarder in front of the IdP (whose issuer URL is the gate's), so a test can
 * hold the token endpoint: requests wait until released, as behind a slow network. Until
 * the IdP's address is known, requests wait for it too.
 */
interface TokenGate extends Listening {
  setTarget(url: string): void;
  /** Holds token requests until the returned release is called; `arrived` counts them. */
  hold(): { arrived: () => number; release(): void };
}

async function startTokenGate(): Promise<TokenGate> {
  const target = deferred();
  let targetUrl = '';
  let held: { count: number; release: Deferred } | undefined;
  const server = createServer((req, res) => {
    const forward = async (): Promise<void> => {
      await target.promise;
      if (req.method === 'POST' && req.url?.startsWith('/token') && held) {
        const h = held;
        h.count++;
        await h.release.promise;
      }
      const upstream = httpRequest(
        new URL(req.url ?? '/', targetUrl),
        { method: req.method, headers: req.headers },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
        },
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    forward().catch(() => res.destroy());
  });
  const listening = await listen(server);
  return {
    ...listening,
    setTarget: (url: string) => {
      targetUrl = url;
      target.resolve();
    },
    hold: () => {
      const h = { count: 0, release: deferred() };
      held = h;
      return {
        arrived: () => h.count,
        release: () => {
          if (held === h) held = undefined;
          h.release.resolve();
        },
      };
    },
  };
}

/**
 * A real memory store whose next `setIfAbsent` (the refresh lock) can be held back: it lets a
 * test put one request's lock attempt after another request's whole refresh.
 */
class HoldableStore implements StateStore {
  readonly kind = 'memory' as const;
  private held: { arrived: Deferred; release: Deferred } | undefined;

  constructor(readonly inner: MemoryStateStore) {}

  holdNextLock(): { arrived: Promise<void>; release(): void } {
    const held = { arrived: deferred(), release: deferred() };
    this.held = held;
    return { arrived: held.arrived.promise, release: () => held.release.resolve() };
  }

  set(key: string, value: string, ttlMs: number): Promise<void> {
    return this.inner.set(key, value, ttlMs);
  }
  async setIfAbsent(key: string, value: string, ttlMs: number): Promise<boolean> {
    const held = this.held;
    if (held) {
      this.held = undefined;
      held.arrived.resolve();
      await held.release.promise;
    }
    return this.inner.setIfAbsent(key, value, ttlMs);
  }
  get(key: string): Promise<string | undefined> {
    return this.inner.get(key);
  }
  getMany(keys: readonly string[]): Promise<Array<string | undefined>> {
    return this.inner.getMany(keys);
  }
  take(key: string): Promise<string | undefined> {
    return this.inner.take(key);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(key);
  }
  keys(prefix: string): Promise<string[]> {
    return this.inner.keys(prefix);
  }
  count(prefix: string): Promise<number> {
    return this.inner.count(prefix);
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('upstream token refresh', () => {
  let stack: OidcStack;
  let gate: TokenGate;
  let backendHits = 0;
  /** Refresh-token grants the IdP answered, and refused. */
  const idpRefresh = { ok: 0, refused: 0 };
  const refreshTokens = new Set<string>();
  const grantIds = new Set<string>();
  const forwardedTokens = new Set<string>();

  beforeAll(async () => {
    gate = await startTokenGate();
    stack = await startOidcStack(
      { SESSION_SECRET, FORWARD_ACCESS_TOKEN: 'true', FORWARD_ID_TOKEN: 'true' },
      { ttl: { AccessToken: ACCESS_TOKEN_TTL }, issuerUrl: gate.url },
    );
    gate.setTarget(stack.idp.url);
    stack.backend.server.on('request', () => {
      backendHits++;
    });
    const idp = stack.idp.provider;
    const grantType = (ctx: unknown): unknown =>
      (ctx as { oidc?: { params?: { grant_type?: unknown } } }).oidc?.params?.grant_type;
    idp.on('grant.success', (ctx) => {
      if (grantType(ctx) === 'refresh_token') idpRefresh.ok++;
    });
    idp.on('grant.error', (ctx) => {
      if (grantType(ctx) === 'refresh_token') idpRefresh.refused++;
    });
    idp.on('refresh_token.saved', (token) => {
      const t = token as { jti: string; grantId: string };
      refreshTokens.add(t.jti);
      grantIds.add(t.grantId);
    });
  });
  afterAll(async () => {
    await stack?.close();
    await gate?.close();
  });

  const refreshedAudits = (): number =>
    stack.proxy.logs.filter((l) => l.audit === 'session_refreshed').length;

  async function login(): Promise<string> {
    const jar = new CookieJar();
    const result = await loginThroughBrowserless(`${stack.url}/`, alice, { jar });
    expect(result.status).toBe(200);
    const session = jar.list(stack.url).find((c) => c.name === 'mcp_oidc_proxy');
    expect(session).toBeDefined();
    return `mcp_oidc_proxy=${session?.value}`;
  }

  async function get(cookie: string, accept = 'application/json'): Promise<Response> {
    return fetch(`${stack.url}/x`, { headers: { cookie, accept }, redirect: 'manual' });
  }

  async function echoOf(res: Response): Promise<Echo> {
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    const token = echo.headers['x-forwarded-access-token'];
    if (token) forwardedTokens.add(token);
    return echo;
  }

  it('refreshes tokens that near expiry; the identity stays, the backend gets the new token', async () => {
    const cookie = await login();
    const audits = refreshedAudits();
    const grants = idpRefresh.ok;
    const first = await echoOf(await get(cookie));
    const second = await echoOf(await get(cookie));
    expect(first.headers['x-forwarded-user']).toBe('alice');
    expect(second.headers['x-forwarded-user']).toBe('alice');
    expect(second.headers['x-forwarded-email']).toBe('alice@example.com');
    expect(second.headers['x-forwarded-groups']).toBe('engineering,mcp-users');
    expect(first.headers['x-forwarded-access-token']).toBeTruthy();
    expect(second.headers['x-forwarded-access-token']).not.toBe(first.headers['x-forwarded-access-token']);
    expect(idpRefresh.ok).toBe(grants + 2);
    expect(refreshedAudits()).toBe(audits + 2);
    expect(stack.proxy.logs.filter((l) => l.audit === 'session_refreshed').at(-1)).toMatchObject({
      sub: 'alice',
      ip: '127.0.0.1',
    });
  });

  it('lets one of several concurrent requests refresh; the others go on with the current tokens', async () => {
    const cookie = await login();
    const audits = refreshedAudits();
    const grants = idpRefresh.ok;
    const held = gate.hold();
    let done = 0;
    const responses = Array.from({ length: 6 }, () =>
      get(cookie).then(async (res) => {
        const echo = await echoOf(res);
        done++;
        return echo;
      }),
    );
    try {
      // Five are answered while the sixth waits for the IdP: they did not wait for the refresh.
      await waitFor(() => done === 5 && held.arrived() === 1, 5000, 'five requests answered');
    } finally {
      held.release();
    }
    const echoes = await Promise.all(responses);
    for (const echo of echoes) expect(echo.headers['x-forwarded-user']).toBe('alice');
    expect(held.arrived()).toBe(1);
    expect(idpRefresh.ok).toBe(grants + 1);
    expect(refreshedAudits()).toBe(audits + 1);
    // The session carries on with the rotated refresh token.
    expect((await echoOf(await get(cookie))).headers['x-forwarded-user']).toBe('alice');
    expect(idpRefresh.refused).toBe(0);
  });

  it('ends the session when the provider refuses the refresh (grant revoked)', async () => {
    const cookie = await login();
    await echoOf(await get(cookie));
    // Revoke at the IdP: every grant issued so far is gone, so its refresh tokens are refused.
    for (const id of grantIds) {
      const grant = (await stack.idp.provider.Grant.find(id)) as unknown as
        | { destroy(): Promise<void> }
        | undefined;
      await grant?.destroy();
    }
    const refused = idpRefresh.refused;
    const before = backendHits;
    const res = await get(cookie);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Bearer resource_metadata=/);
    expect(backendHits).toBe(before);
    expect(idpRefresh.refused).toBe(refused + 1);
    await waitFor(
      () => stack.proxy.logs.some((l) => l.audit === 'session_expired'),
      2000,
      'audit session_expired',
    );
    expect(stack.proxy.logs.filter((l) => l.audit === 'session_expired')).toEqual([
      expect.objectContaining({ reason: 'refresh_failed: invalid_grant', sub: 'alice', ip: '127.0.0.1' }),
    ]);
    // The session is gone: the next requests are unauthenticated, without another refresh attempt.
    expect((await get(cookie)).status).toBe(401);
    const page = await get(cookie, 'text/html');
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toBe('/login?rd=%2Fx');
    expect(idpRefresh.refused).toBe(refused + 1);
    expect(backendHits).toBe(before);
  });

  it('never logs a refresh token, an access token or the client secret', () => {
    expect(refreshTokens.size).toBeGreaterThan(5);
    expect(forwardedTokens.size).toBeGreaterThan(5);
    const text = stack.proxy.logText();
    expect(text).toContain('"audit":"session_refreshed"');
    expect(text.includes(CLIENT_SECRET)).toBe(false);
    expect(text.includes(SESSION_SECRET)).toBe(false);
    for (const token of [...refreshTokens, ...forwardedTokens]) {
      expect(text.includes(token), `token ${token.slice(0, 6)}… in the log`).toBe(false);
    }
  });

  it('keeps the session when the provider cannot be reached to refresh', async () => {
    const cookie = await login();
    await gate.close();
    const echo = await echoOf(await get(cookie));
    expect(echo.headers['x-forwarded-user']).toBe('alice');
    expect(
      stack.proxy.logs.some((l) => l.msg === 'token refresh failed: identity provider unreachable'),
    ).toBe(true);
  });
});

describe('BrowserLogin with sessions it is given (real IdP, real store)', () => {
  let stack: OidcStack;
  let gate: TokenGate;
  let config: Config;
  let provider: Provider;
  const stores: MemoryStateStore[] = [];

  beforeAll(async () => {
    gate = await startTokenGate();
    stack = await startOidcStack(
      { SESSION_SECRET },
      { ttl: { AccessToken: ACCESS_TOKEN_TTL }, issuerUrl: gate.url },
    );
    gate.setTarget(stack.idp.url);
    config = loadConfig({
      env: {
        AUTH_MODE: 'oidc',
        SERVER_PORT: '0',
        PUBLIC_URL: stack.url,
        PROXY_TARGET_URL: stack.backend.url,
        OIDC_DISCOVERY_URL: `${stack.idp.issuer}/.well-known/openid-configuration`,
        OIDC_CLIENT_ID: CLIENT_ID,
        OIDC_CLIENT_SECRET: CLIENT_SECRET,
        OIDC_SCOPES: 'openid email profile groups offline_access',
        SESSION_SECRET,
      },
    });
    provider = createProvider(config, captureLogs().logger);
    await provider.ready();
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });
  afterAll(async () => {
    provider?.close();
    await stack?.close();
    await gate?.close();
  });

  function build(store: StateStore, options: { idleTimeoutMs?: number; maxAgeMs?: number } = {}) {
    const clock = { now: Date.now() };
    const sessions = new SessionManager(store, new SealingKeys(SESSION_SECRET), {
      idleTimeoutMs: options.idleTimeoutMs ?? 3600_000,
      maxAgeMs: options.maxAgeMs ?? 86_400_000,
      cookie: { secure: false },
      now: () => clock.now,
    });
    const log = captureLogs();
    const login = new BrowserLogin({
      config,
      provider,
      sessions,
      audit: new AuditLog(log.logger),
      logger: log.logger,
      rateLimiter: undefined,
    });
    const audits = (event: string) => log.lines().filter((l) => l.audit === event);
    return { sessions, login, log, audits, clock };
  }

  function memory(): MemoryStateStore {
    const s = new MemoryStateStore();
    stores.push(s);
    return s;
  }

  /** A session created from a real login at the IdP (code flow through the provider). */
  async function sessionFor(sessions: SessionManager): Promise<string> {
    const state = client.randomState();
    const nonce = client.randomNonce();
    const codeVerifier = client.randomPKCECodeVerifier();
    const codeChallenge = await client.calculatePKCECodeChallenge(codeVerifier);
    const start = provider.authorizationUrl({ state, nonce, codeVerifier, codeChallenge });
    const result = await loginThroughBrowserless(start.href, alice, {
      stopAt: (u) => u.pathname === '/callback',
    });
    const { identity, tokens } = await provider.redeem(new URL(result.finalUrl), {
      state,
      nonce,
      codeVerifier,
    });
    expect(tokens.refreshToken).toBeTruthy();
    const { setCookie } = await sessions.create(provider.name, identity, tokens);
    return setCookie.split(';')[0] as string;
  }

  const request = (cookie: string, accept = 'application/json'): IncomingMessage =>
    ({ method: 'GET', headers: { cookie, accept } }) as unknown as IncomingMessage;

  function allowed(result: BrowserAuthResult) {
    if (result.kind !== 'allow') throw new Error(`expected allow, got ${JSON.stringify(result.challenge)}`);
    return result;
  }

  it('does not spend a refresh token another request already rotated (lock taken after its refresh)', async () => {
    const store = new HoldableStore(memory());
    const { sessions, login, audits } = build(store);
    const cookie = await sessionFor(sessions);
    // B loads the session, then its lock attempt is held back...
    const held = store.holdNextLock();
    const late = login.authenticate(request(cookie), '127.0.0.1', '/x');
    await held.arrived;
    // ...while A refreshes completely (lock, IdP, save, unlock).
    const first = allowed(await login.authenticate(request(cookie), '127.0.0.1', '/x'));
    expect(audits('session_refreshed')).toHaveLength(1);
    held.release();
    // B now gets the lock with the tokens it loaded before A's refresh: it must not refresh again.
    const second = allowed(await late);
    expect(second.identity.user).toBe('alice');
    expect(second.session.tokens).toEqual(first.session.tokens);
    expect(audits('session_refreshed')).toHaveLength(1);
    expect(audits('session_expired')).toEqual([]);
    // The grant is intact: the next refresh works.
    allowed(await login.authenticate(request(cookie), '127.0.0.1', '/x'));
    expect(audits('session_refreshed')).toHaveLength(2);
  });

  it('answers 503 when the store fails during a refresh, and never 500', async () => {
    const store = memory();
    const { sessions, login, audits } = build(store);
    const cookie = await sessionFor(sessions);
    const held = gate.hold();
    const pending = login.authenticate(request(cookie), '127.0.0.1', '/x');
    try {
      await waitFor(() => held.arrived() === 1, 5000, 'the refresh at the IdP');
      await store.close(); // the store goes away while the IdP is answering the refresh
    } finally {
      held.release();
    }
    const result = await pending;
    expect(result.kind).toBe('challenge');
    if (result.kind !== 'challenge') return;
    expect(result.challenge.status).toBe(503);
    expect(result.challenge.headers).toContainEqual(['retry-after', '5']);
    expect(audits('session_expired')).toEqual([]);
  });

  it('ends an idle session and an over-age one, auditing session_expired with the reason', async () => {
    const identity: UpstreamIdentity = { sub: 'alice', email: 'alice@example.com', groups: [] };
    const { sessions, login, audits, clock } = build(memory(), {
      idleTimeoutMs: 60_000,
      maxAgeMs: 300_000,
    });
    const cookieOf = async () =>
      (await sessions.create('generic', identity, { accessToken: 'opaque' })).setCookie.split(
        ';',
      )[0] as string;
    const idle = await cookieOf();
    clock.now += 59_000;
    allowed(await login.authenticate(request(idle), '127.0.0.1', '/x'));
    clock.now += 60_000;
    const idleResult = await login.authenticate(request(idle, 'text/html'), '127.0.0.1', '/x?y=1');
    expect(idleResult).toMatchObject({
      kind: 'challenge',
      challenge: { status: 302, headers: expect.arrayContaining([['location', '/login?rd=%2Fx%3Fy%3D1']]) },
    });
    expect(audits('session_expired')).toEqual([
      expect.objectContaining({ reason: 'idle', sub: 'alice', ip: '127.0.0.1' }),
    ]);

    const old = await cookieOf();
    for (let i = 0; i < 5; i++) {
      clock.now += 50_000;
      allowed(await login.authenticate(request(old), '127.0.0.1', '/x'));
    }
    clock.now += 50_000;
    const oldResult = await login.authenticate(request(old), '127.0.0.1', '/x');
    expect(oldResult).toMatchObject({ kind: 'challenge', challenge: { status: 401 } });
    expect(audits('session_expired').map((l) => l.reason)).toEqual(['idle', 'absolute']);

    // Once ended, the sessions are simply gone: no further audit lines.
    await login.authenticate(request(idle), '127.0.0.1', '/x');
    await login.authenticate(request(old), '127.0.0.1', '/x');
    expect(audits('session_expired')).toHaveLength(2);
  });
});
