import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthContext, RouteHandler } from '../../src/auth/authenticator.js';
import type { AuthorizationServer } from '../../src/auth/facade/authorization-server.js';
import { createAuthorizeHandler } from '../../src/auth/facade/authorize.js';
import { InvalidTokenError } from '../../src/auth/facade/errors.js';
import { createRevokeHandler } from '../../src/auth/facade/revoke.js';
import { createTokenHandler } from '../../src/auth/facade/token.js';
import type { UpstreamIdentity } from '../../src/auth/oidc/provider.js';
import { createRateLimiter } from '../../src/limits/rate-limit.js';
import { MemoryStateStore } from '../../src/store/memory.js';
import { testAuthorizationServer } from '../helpers/authorization-server.js';
import { captureLogs } from '../helpers/log-capture.js';
import { type Listening, listen } from '../helpers/servers.js';

const PUBLIC_REDIRECT = 'http://127.0.0.1:7777/callback';
const CONFIDENTIAL_REDIRECT = 'https://confidential.example/oauth/callback';
const CONFIDENTIAL_SECRET = 'conf-secret-0123456789';
/** Characters RFC 6749 §2.3.1 makes the client form-encode inside Basic credentials. */
const ODD_ID = 'odd:client+id';
const ODD_SECRET = 'p@ss:w%rd+with spaces/é';

const alice: UpstreamIdentity = { sub: 'alice', email: 'alice@example.com', groups: ['mcp-users'] };
const mallory: UpstreamIdentity = { sub: 'mallory', email: 'mallory@evil.example', groups: [] };

interface Facade {
  url: string;
  resource: string;
  authorizationServer: AuthorizationServer;
  logText(): string;
  auditEvents(): Array<Record<string, unknown>>;
  /** A logged-in browser: the Cookie header of a new session. */
  login(identity: UpstreamIdentity): Promise<string>;
  close(): Promise<void>;
}

async function startFacade(options: { authRateLimitPerMinute?: number } = {}): Promise<Facade> {
  let routes = new Map<string, RouteHandler>();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const handler = routes.get(url.pathname);
    if (!handler) {
      res.writeHead(404).end();
      return;
    }
    const ctx: AuthContext = {
      clientIp: '127.0.0.1',
      requestId: 'test',
      path: url.pathname,
      search: url.search,
    };
    handler(req, res, ctx).catch((error: unknown) => {
      res.writeHead(500).end(String(error));
    });
  });
  const listening: Listening = await listen(server);
  const log = captureLogs('info');
  const logger = log.logger;
  const store = new MemoryStateStore();
  const authorizationServer = testAuthorizationServer({
    store,
    publicUrl: listening.url,
    logger,
    secret: 'facade-endpoints-test-secret',
    preRegistered: [
      {
        clientId: 'public-app',
        redirectUris: [PUBLIC_REDIRECT, 'cursor://anysphere.cursor-mcp/oauth/callback'],
        name: 'Test <App>',
      },
      {
        clientId: 'confidential-app',
        clientSecret: CONFIDENTIAL_SECRET,
        redirectUris: [CONFIDENTIAL_REDIRECT],
        name: 'Confidential App',
      },
      { clientId: ODD_ID, clientSecret: ODD_SECRET, redirectUris: [CONFIDENTIAL_REDIRECT] },
    ],
    rateLimiter: options.authRateLimitPerMinute
      ? createRateLimiter({ perMinute: options.authRateLimitPerMinute, keyPrefix: 'test:facade' })
      : undefined,
  });
  routes = new Map([
    ['/authorize', createAuthorizeHandler(authorizationServer)],
    ['/token', createTokenHandler(authorizationServer)],
    ['/revoke', createRevokeHandler(authorizationServer)],
  ]);
  return {
    url: listening.url,
    resource: `${listening.url}/mcp`,
    authorizationServer,
    logText: log.text,
    auditEvents: () => log.lines().filter((l) => l.audit !== undefined),
    async login(identity) {
      const { setCookie } = await authorizationServer.sessions.create('test', identity, {
        accessToken: 'upstream-token',
      });
      return setCookie.split(';')[0]!;
    },
    async close() {
      await listening.close();
      await store.close();
    },
  };
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

interface TokenBody {
  access_token?: string;
  token_type?: string;
  expires_in?: number;
  refresh_token?: string;
  scope?: string;
  error?: string;
  error_description?: string;
}

describe('authorization server facade: /authorize, /token, /revoke', () => {
  let f: Facade;

  beforeAll(async () => {
    f = await startFacade();
  });
  afterAll(async () => {
    await f.close();
  });

  function authorizeUrl(params: Record<string, string | undefined>): string {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined) query.set(k, v);
    return `${f.url}/authorize?${query}`;
  }

  function standardParams(challenge: string, overrides: Record<string, string | undefined> = {}) {
    return {
      response_type: 'code',
      client_id: 'public-app',
      redirect_uri: PUBLIC_REDIRECT,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 'state-123',
      ...overrides,
    };
  }

  function getAuthorize(url: string, cookie?: string): Promise<Response> {
    return fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
  }

  function requestIdOf(html: string): string {
    const match = /name="request_id" value="([^"]+)"/.exec(html);
    if (!match) throw new Error(`no request_id in the consent page:\n${html}`);
    return match[1]!;
  }

  function decide(cookie: string, requestId: string, decision: 'approve' | 'deny'): Promise<Response> {
    return fetch(`${f.url}/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie },
      body: new URLSearchParams({ request_id: requestId, decision }),
    });
  }

  /** Through the consent page to the code; returns the redirect's parameters. */
  async function approve(cookie: string, url: string): Promise<URL> {
    const page = await getAuthorize(url, cookie);
    expect(page.status).toBe(200);
    const res = await decide(cookie, requestIdOf(await page.text()), 'approve');
    expect(res.status).toBe(303);
    return new URL(res.headers.get('location')!);
  }

  function token(params: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${f.url}/token`, { method: 'POST', headers, body: new URLSearchParams(params) });
  }

  async function tokenBody(res: Response): Promise<TokenBody> {
    return (await res.json()) as TokenBody;
  }

  function redeem(code: string, verifier: string, extra: Record<string, string> = {}): Promise<Response> {
    return token({
      grant_type: 'authorization_code',
      code,
      code_verifier: verifier,
      client_id: 'public-app',
      redirect_uri: PUBLIC_REDIRECT,
      ...extra,
    });
  }

  async function refreshRejection(refreshToken: string): Promise<string | undefined> {
    const res = await token({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: 'public-app',
    });
    return res.status === 200 ? undefined : (await tokenBody(res)).error;
  }

  /** A fresh user with no remembered consent, logged in. */
  let userNumber = 0;
  async function newUser(): Promise<{ identity: UpstreamIdentity; cookie: string }> {
    userNumber++;
    const identity: UpstreamIdentity = {
      sub: `user-${userNumber}`,
      email: `user${userNumber}@example.com`,
      groups: ['mcp-users'],
    };
    return { identity, cookie: await f.login(identity) };
  }

  it('runs the whole code flow: consent, code with state and iss, PKCE exchange, refresh rotation, revocation', async () => {
    const cookie = await f.login(alice);
    const { verifier, challenge } = pkce();
    const page = await getAuthorize(authorizeUrl(standardParams(challenge)), cookie);
    expect(page.status).toBe(200);
    const html = await page.text();
    // The registered name is escaped, the redirect host and the scope are shown.
    expect(html).toContain('Test &#60;App&#62;');
    expect(html).not.toContain('Test <App>');
    expect(html).toContain('127.0.0.1:7777');
    expect(html).toContain(`${f.url}/mcp`);
    expect(html).toContain('alice@example.com');

    const res = await decide(cookie, requestIdOf(html), 'approve');
    expect(res.status).toBe(303);
    const location = new URL(res.headers.get('location')!);
    expect(`${location.origin}${location.pathname}`).toBe(PUBLIC_REDIRECT);
    expect(location.searchParams.get('state')).toBe('state-123');
    expect(location.searchParams.get('iss')).toBe(f.url);
    const code = location.searchParams.get('code')!;
    expect(code).toMatch(/^[A-Za-z0-9_-]{43}$/);

    const exchanged = await redeem(code, verifier);
    expect(exchanged.status).toBe(200);
    expect(exchanged.headers.get('cache-control')).toBe('no-store');
    expect(exchanged.headers.get('pragma')).toBe('no-cache');
    const first = await tokenBody(exchanged);
    expect(first).toMatchObject({ token_type: 'Bearer', expires_in: 900, scope: 'mcp' });
    expect(first.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // No resource was asked for: the token is for PUBLIC_URL + MCP_PATH.
    const claims = await f.authorizationServer.accessTokens.verifyAccessToken(first.access_token!, {
      audience: f.resource,
    });
    expect(claims).toMatchObject({
      sub: 'alice',
      clientId: 'public-app',
      scope: 'mcp',
      email: 'alice@example.com',
      groups: ['mcp-users'],
    });

    const refreshed = await token({
      grant_type: 'refresh_token',
      refresh_token: first.refresh_token!,
      client_id: 'public-app',
    });
    expect(refreshed.status).toBe(200);
    expect(refreshed.headers.get('cache-control')).toBe('no-store');
    const second = await tokenBody(refreshed);
    expect(second.refresh_token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(second.access_token).not.toBe(first.access_token);
    await expect(
      f.authorizationServer.accessTokens.verifyAccessToken(second.access_token!, { audience: f.resource }),
    ).resolves.toMatchObject({ sub: 'alice' });

    const revokeAccess = await fetch(`${f.url}/revoke`, {
      method: 'POST',
      body: new URLSearchParams({ token: second.access_token!, client_id: 'public-app' }),
    });
    expect(revokeAccess.status).toBe(200);
    expect(revokeAccess.headers.get('cache-control')).toBe('no-store');
    expect(await revokeAccess.text()).toBe('');
    await expect(
      f.authorizationServer.accessTokens.verifyAccessToken(second.access_token!, { audience: f.resource }),
    ).rejects.toMatchObject({ reason: 'revoked' });

    const revokeRefresh = await fetch(`${f.url}/revoke`, {
      method: 'POST',
      body: new URLSearchParams({
        token: second.refresh_token!,
        token_type_hint: 'refresh_token',
        client_id: 'public-app',
      }),
    });
    expect(revokeRefresh.status).toBe(200);
    expect(await refreshRejection(second.refresh_token!)).toBe('invalid_grant');

    // Nothing secret reaches the log; the flow is audited.
    const log = f.logText();
    for (const secret of [code, first.access_token!, first.refresh_token!, second.refresh_token!]) {
      expect(log).not.toContain(secret);
    }
    const events = f.auditEvents().filter((e) => e.sub === 'alice');
    expect(events.map((e) => e.audit)).toEqual(
      expect.arrayContaining([
        'consent_granted',
        'authorization_code_issued',
        'token_issued',
        'token_refreshed',
      ]),
    );
  });

  it('serves the consent page with framing protection, no caching, and form-action for the redirect target', async () => {
    const { cookie } = await newUser();
    const res = await getAuthorize(authorizeUrl(standardParams(pkce().challenge)), cookie);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toMatch(/form-action 'self' http:\/\/127\.0\.0\.1:7777(;|$)/);
    expect(res.headers.get('x-frame-options')).toBe('DENY');
    expect(res.headers.get('cache-control')).toBe('no-store');

    const app = await getAuthorize(
      authorizeUrl(
        standardParams(pkce().challenge, { redirect_uri: 'cursor://anysphere.cursor-mcp/oauth/callback' }),
      ),
      cookie,
    );
    expect(app.status).toBe(200);
    expect(app.headers.get('content-security-policy')).toMatch(/form-action 'self' cursor:(;|$)/);
  });

  it('skips the consent page once the user approved the client, per user', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const firstCode = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get(
      'code',
    );
    expect(firstCode).toBeTruthy();

    const again = pkce();
    const res = await getAuthorize(
      authorizeUrl(standardParams(again.challenge, { state: 'second' })),
      cookie,
    );
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location')!);
    expect(location.searchParams.get('state')).toBe('second');
    expect(location.searchParams.get('iss')).toBe(f.url);
    const code = location.searchParams.get('code')!;
    expect((await redeem(code, again.verifier)).status).toBe(200);
    expect((await redeem(firstCode!, verifier)).status).toBe(200);

    // Another user has approved nothing.
    const other = await newUser();
    const page = await getAuthorize(authorizeUrl(standardParams(pkce().challenge)), other.cookie);
    expect(page.status).toBe(200);
  });

  it('redirects with access_denied when the user denies, and does not remember a denial', async () => {
    const { cookie } = await newUser();
    const url = authorizeUrl(standardParams(pkce().challenge));
    const page = await getAuthorize(url, cookie);
    const res = await decide(cookie, requestIdOf(await page.text()), 'deny');
    expect(res.status).toBe(303);
    const location = new URL(res.headers.get('location')!);
    expect(location.searchParams.get('error')).toBe('access_denied');
    expect(location.searchParams.get('state')).toBe('state-123');
    expect(location.searchParams.get('iss')).toBe(f.url);
    expect(location.searchParams.get('code')).toBeNull();
    expect((await getAuthorize(url, cookie)).status).toBe(200);
    expect(f.auditEvents().some((e) => e.audit === 'consent_denied')).toBe(true);
  });

  it('sends a browser without a session to /login with the whole /authorize request to come back to', async () => {
    const url = authorizeUrl(standardParams(pkce().challenge, { scope: 'mcp' }));
    for (const cookie of [undefined, 'mcp_oidc_proxy=forged.signature']) {
      const res = await getAuthorize(url, cookie);
      expect(res.status).toBe(302);
      const location = res.headers.get('location')!;
      expect(location.startsWith('/login?rd=')).toBe(true);
      const rd = new URLSearchParams(location.slice('/login?'.length)).get('rd');
      const original = new URL(url);
      expect(rd).toBe(`${original.pathname}${original.search}`);
    }
  });

  it('redirects with access_denied when the allow-lists refuse the user, and issues nothing', async () => {
    const cookie = await f.login(mallory);
    const res = await getAuthorize(authorizeUrl(standardParams(pkce().challenge)), cookie);
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location')!);
    expect(location.searchParams.get('error')).toBe('access_denied');
    expect(location.searchParams.get('code')).toBeNull();
  });

  it('refuses a wrong PKCE verifier with invalid_grant, and the code is spent', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
    const wrong = await redeem(code, pkce().verifier);
    expect(wrong.status).toBe(400);
    expect((await tokenBody(wrong)).error).toBe('invalid_grant');
    expect(wrong.headers.get('cache-control')).toBe('no-store');
    const right = await redeem(code, verifier);
    expect((await tokenBody(right)).error).toBe('invalid_grant');
  });

  it('refuses a replayed code and revokes the tokens its first redemption issued', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
    const first = await tokenBody(await redeem(code, verifier));
    expect(first.refresh_token).toBeDefined();

    const replay = await redeem(code, verifier);
    expect(replay.status).toBe(400);
    expect((await tokenBody(replay)).error).toBe('invalid_grant');
    expect(await refreshRejection(first.refresh_token!)).toBe('invalid_grant');
    await expect(
      f.authorizationServer.accessTokens.verifyAccessToken(first.access_token!, { audience: f.resource }),
    ).rejects.toBeInstanceOf(InvalidTokenError);
    expect(f.auditEvents().some((e) => e.audit === 'authorization_code_replayed')).toBe(true);
  });

  it("refuses client A's code redeemed by client B", async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
    const basic = `Basic ${Buffer.from(`confidential-app:${CONFIDENTIAL_SECRET}`).toString('base64')}`;
    const res = await token(
      { grant_type: 'authorization_code', code, code_verifier: verifier, redirect_uri: PUBLIC_REDIRECT },
      { authorization: basic },
    );
    expect(res.status).toBe(400);
    expect((await tokenBody(res)).error).toBe('invalid_grant');
  });

  it('exchanges a confidential client code with client_secret_basic (form-encoded id and secret) and client_secret_post', async () => {
    const { cookie } = await newUser();
    const encode = (s: string) => encodeURIComponent(s).replaceAll('%20', '+');
    for (const [clientId, secret, style] of [
      [ODD_ID, ODD_SECRET, 'basic'],
      ['confidential-app', CONFIDENTIAL_SECRET, 'post'],
    ] as const) {
      const { verifier, challenge } = pkce();
      const url = authorizeUrl(
        standardParams(challenge, { client_id: clientId, redirect_uri: CONFIDENTIAL_REDIRECT }),
      );
      const code = (await approve(cookie, url)).searchParams.get('code')!;
      const params = {
        grant_type: 'authorization_code',
        code,
        code_verifier: verifier,
        redirect_uri: CONFIDENTIAL_REDIRECT,
      };
      const res =
        style === 'basic'
          ? await token(params, {
              authorization: `Basic ${Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')}`,
            })
          : await token({ ...params, client_id: clientId, client_secret: secret });
      expect(res.status).toBe(200);
      const body = await tokenBody(res);
      const claims = await f.authorizationServer.accessTokens.verifyAccessToken(body.access_token!, {
        audience: f.resource,
      });
      expect(claims.clientId).toBe(clientId);
    }
  });

  it('answers an unknown or unauthenticated client at /token with 401 invalid_client', async () => {
    const unknown = await token({
      grant_type: 'refresh_token',
      refresh_token: 'x'.repeat(43),
      client_id: 'gone',
    });
    expect(unknown.status).toBe(401);
    expect((await tokenBody(unknown)).error).toBe('invalid_client');
    expect(unknown.headers.get('cache-control')).toBe('no-store');

    const basic = await token(
      { grant_type: 'refresh_token', refresh_token: 'x'.repeat(43) },
      { authorization: `Basic ${Buffer.from('gone:secret').toString('base64')}` },
    );
    expect(basic.status).toBe(401);
    expect(basic.headers.get('www-authenticate')).toMatch(/^Basic /);

    // The Basic scheme with no credentials is a failed Basic authentication, not an absent one:
    // the client_id in the body does not take over, and the 401 carries the Basic challenge.
    const bare = await token(
      { grant_type: 'refresh_token', refresh_token: 'x'.repeat(43), client_id: 'gone' },
      { authorization: 'Basic' },
    );
    expect(bare.status).toBe(401);
    expect((await tokenBody(bare)).error).toBe('invalid_client');
    expect(bare.headers.get('www-authenticate')).toMatch(/^Basic /);

    const noSecret = await token({
      grant_type: 'refresh_token',
      refresh_token: 'x'.repeat(43),
      client_id: 'confidential-app',
    });
    expect(noSecret.status).toBe(401);
    expect((await tokenBody(noSecret)).error).toBe('invalid_client');

    const wrongSecret = await token({
      grant_type: 'refresh_token',
      refresh_token: 'x'.repeat(43),
      client_id: 'confidential-app',
      client_secret: 'not-the-secret-at-all',
    });
    expect(wrongSecret.status).toBe(401);
  });

  it('shows an error page and never redirects for an unknown client or a foreign redirect_uri', async () => {
    const cookie = await f.login(alice);
    const { challenge } = pkce();
    for (const overrides of [
      { redirect_uri: 'https://evil.example/callback' },
      { redirect_uri: 'http://127.0.0.1:7777/other' },
      { redirect_uri: undefined },
      { client_id: 'no-such-client' },
      { client_id: undefined },
    ]) {
      const res = await getAuthorize(authorizeUrl(standardParams(challenge, overrides)), cookie);
      expect(res.status).toBe(400);
      expect(res.headers.get('location')).toBeNull();
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await res.text()).not.toContain('evil.example');
    }
  });

  it('accepts a loopback redirect_uri on another port and redirects to that port', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const otherPort = 'http://127.0.0.1:50123/callback';
    const page = await getAuthorize(
      authorizeUrl(standardParams(challenge, { redirect_uri: otherPort })),
      cookie,
    );
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain(
      "form-action 'self' http://127.0.0.1:50123",
    );
    const res = await decide(cookie, requestIdOf(await page.text()), 'approve');
    const location = new URL(res.headers.get('location')!);
    expect(`${location.origin}${location.pathname}`).toBe(otherPort);
    const code = location.searchParams.get('code')!;
    expect((await redeem(code, verifier, { redirect_uri: otherPort })).status).toBe(200);
  });

  it('refuses a token request whose redirect_uri differs from the authorization request', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
    const res = await redeem(code, verifier, { redirect_uri: 'http://127.0.0.1:7778/callback' });
    expect((await tokenBody(res)).error).toBe('invalid_grant');
  });

  it('redirects back with invalid_request without PKCE S256, invalid_target for another resource, invalid_scope for unknown scopes', async () => {
    const cookie = await f.login(alice);
    const { challenge } = pkce();
    const cases: Array<[Record<string, string | undefined>, string]> = [
      [{ code_challenge: undefined }, 'invalid_request'],
      [{ code_challenge_method: 'plain' }, 'invalid_request'],
      [{ code_challenge_method: undefined }, 'invalid_request'],
      [{ resource: 'https://other-server.example/mcp' }, 'invalid_target'],
      [{ resource: `${f.url}/not-mcp` }, 'invalid_target'],
      [{ scope: 'mcp admin' }, 'invalid_scope'],
      [{ response_type: 'token' }, 'unsupported_response_type'],
    ];
    for (const [overrides, error] of cases) {
      const res = await getAuthorize(authorizeUrl(standardParams(challenge, overrides)), cookie);
      expect(res.status, JSON.stringify(overrides)).toBe(302);
      const location = new URL(res.headers.get('location')!);
      expect(`${location.origin}${location.pathname}`).toBe(PUBLIC_REDIRECT);
      expect(location.searchParams.get('error'), JSON.stringify(overrides)).toBe(error);
      expect(location.searchParams.get('state')).toBe('state-123');
      expect(location.searchParams.get('iss')).toBe(f.url);
      expect(location.searchParams.get('code')).toBeNull();
    }
  });

  it('binds the token audience to the resource, and refuses another resource at /token', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const url = authorizeUrl(standardParams(challenge, { resource: f.resource }));
    const code = (await approve(cookie, url)).searchParams.get('code')!;
    const res = await redeem(code, verifier, { resource: 'https://other-server.example/mcp' });
    expect((await tokenBody(res)).error).toBe('invalid_target');

    const again = pkce();
    const second = (
      await getAuthorize(authorizeUrl(standardParams(again.challenge, { resource: f.resource })), cookie)
    ).headers.get('location')!;
    const ok = await redeem(new URL(second).searchParams.get('code')!, again.verifier, {
      resource: f.resource,
    });
    expect(ok.status).toBe(200);
    const body = await tokenBody(ok);
    await expect(
      f.authorizationServer.accessTokens.verifyAccessToken(body.access_token!, { audience: f.resource }),
    ).resolves.toMatchObject({ audience: f.resource });
  });

  it('answers a rotated refresh token presented again by its client within the grace with the same successor', async () => {
    const { identity, cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
    const first = await tokenBody(await redeem(code, verifier));
    const refresh = {
      grant_type: 'refresh_token',
      refresh_token: first.refresh_token!,
      client_id: 'public-app',
    };
    const second = await tokenBody(await token(refresh));
    const again = await tokenBody(await token(refresh));
    expect(again.refresh_token).toBe(second.refresh_token);
    expect(again.access_token).toBeDefined();
    expect(again.access_token).not.toBe(second.access_token);
    // The family lives on: the successor rotates.
    expect(await refreshRejection(second.refresh_token!)).toBeUndefined();
    const refreshed = f.auditEvents().filter((e) => e.audit === 'token_refreshed' && e.sub === identity.sub);
    expect(refreshed.map((e) => e.repeated_within_grace === true)).toEqual([false, true, false]);
    expect(f.auditEvents().some((e) => e.audit === 'refresh_reuse_detected' && e.sub === identity.sub)).toBe(
      false,
    );
  });

  it('revokes the whole refresh family, its access tokens too, when another client presents a rotated refresh token', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
    const first = await tokenBody(await redeem(code, verifier));
    const second = await tokenBody(
      await token({
        grant_type: 'refresh_token',
        refresh_token: first.refresh_token!,
        client_id: 'public-app',
      }),
    );
    expect(second.refresh_token).toBeDefined();
    const verify = (accessToken: string) =>
      f.authorizationServer.accessTokens.verifyAccessToken(accessToken, { audience: f.resource });
    await expect(verify(second.access_token!)).resolves.toBeTruthy();

    const stolen = await token({
      grant_type: 'refresh_token',
      refresh_token: first.refresh_token!,
      client_id: 'confidential-app',
      client_secret: CONFIDENTIAL_SECRET,
    });
    expect(stolen.status).toBe(400);
    expect((await tokenBody(stolen)).error).toBe('invalid_grant');
    expect(f.auditEvents().some((e) => e.audit === 'refresh_reuse_detected')).toBe(true);
    // The successor was revoked with the family, and so were the access tokens it minted.
    expect(await refreshRejection(second.refresh_token!)).toBe('invalid_grant');
    for (const accessToken of [first.access_token!, second.access_token!]) {
      await expect(verify(accessToken)).rejects.toMatchObject({ reason: 'revoked' });
    }
  });

  it('re-checks the allow-lists on refresh: a removed user loses the grant', async () => {
    const identity: UpstreamIdentity = { sub: 'carol', email: 'carol@removed.example', groups: [] };
    const policy = f.authorizationServer.config.auth.policy;
    policy.emails.push('carol@removed.example');
    let refreshToken: string;
    try {
      const cookie = await f.login(identity);
      const { verifier, challenge } = pkce();
      const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
      refreshToken = (await tokenBody(await redeem(code, verifier))).refresh_token!;
    } finally {
      policy.emails.splice(policy.emails.indexOf('carol@removed.example'), 1);
    }
    const res = await token({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: 'public-app',
    });
    expect(res.status).toBe(400);
    expect((await tokenBody(res)).error).toBe('invalid_grant');
    // The grant (refresh family) is revoked, not merely refused this once.
    expect(await f.authorizationServer.grants.revoke(refreshToken)).toBe('unknown');
    expect(f.auditEvents().some((e) => e.audit === 'access_denied' && e.sub === 'carol')).toBe(true);
  });

  it("refuses a consent POST with another session's request id (400), and one from a foreign origin", async () => {
    const victim = await newUser();
    const attacker = await newUser();
    const page = await getAuthorize(authorizeUrl(standardParams(pkce().challenge)), victim.cookie);
    const requestId = requestIdOf(await page.text());

    const stolen = await decide(attacker.cookie, requestId, 'approve');
    expect(stolen.status).toBe(400);
    expect(stolen.headers.get('location')).toBeNull();

    const second = await getAuthorize(authorizeUrl(standardParams(pkce().challenge)), victim.cookie);
    const crossSite = await fetch(`${f.url}/authorize`, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: victim.cookie, origin: 'https://evil.example' },
      body: new URLSearchParams({ request_id: requestIdOf(await second.text()), decision: 'approve' }),
    });
    expect(crossSite.status).toBe(403);
    expect(crossSite.headers.get('location')).toBeNull();

    const noSession = await fetch(`${f.url}/authorize`, {
      method: 'POST',
      redirect: 'manual',
      body: new URLSearchParams({ request_id: requestId, decision: 'approve' }),
    });
    expect(noSession.status).toBe(400);
  });

  it('answers a consent request only once', async () => {
    const { cookie } = await newUser();
    const page = await getAuthorize(authorizeUrl(standardParams(pkce().challenge)), cookie);
    const requestId = requestIdOf(await page.text());
    expect((await decide(cookie, requestId, 'approve')).status).toBe(303);
    const again = await decide(cookie, requestId, 'approve');
    expect(again.status).toBe(400);
    expect(again.headers.get('location')).toBeNull();
  });

  it('refuses malformed token requests without spending the code', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
    const shortVerifier = await redeem(code, 'too-short');
    expect((await tokenBody(shortVerifier)).error).toBe('invalid_request');
    const repeated = await fetch(`${f.url}/token`, {
      method: 'POST',
      body: `grant_type=authorization_code&code=${code}&code=${code}&code_verifier=${verifier}&client_id=public-app&redirect_uri=${encodeURIComponent(PUBLIC_REDIRECT)}`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect((await tokenBody(repeated)).error).toBe('invalid_request');
    const json = await fetch(`${f.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ grant_type: 'authorization_code', code }),
    });
    expect(json.status).toBe(400);
    const unsupported = await token({ grant_type: 'password', client_id: 'public-app' });
    expect((await tokenBody(unsupported)).error).toBe('unsupported_grant_type');
    const tooLarge = await token({
      grant_type: 'authorization_code',
      client_id: 'public-app',
      pad: 'x'.repeat(20_000),
    });
    expect((await tokenBody(tooLarge)).error).toBe('invalid_request');
    // Chunked, so no Content-Length announces the size: the limit applies while reading.
    const chunked = await fetch(`${f.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 5; i++)
            controller.enqueue(new TextEncoder().encode(`pad${i}=${'x'.repeat(5000)}&`));
          controller.close();
        },
      }),
      duplex: 'half',
    } as RequestInit);
    expect((await tokenBody(chunked)).error).toBe('invalid_request');

    expect((await redeem(code, verifier)).status).toBe(200);
  });

  it('answers /revoke with 200 for unknown tokens and leaves tokens of other clients alone', async () => {
    const { cookie } = await newUser();
    const { verifier, challenge } = pkce();
    const code = (await approve(cookie, authorizeUrl(standardParams(challenge)))).searchParams.get('code')!;
    const issued = await tokenBody(await redeem(code, verifier));

    const revoke = (body: Record<string, string>) =>
      fetch(`${f.url}/revoke`, { method: 'POST', body: new URLSearchParams(body) });
    expect((await revoke({ token: 'not-a-token', client_id: 'public-app' })).status).toBe(200);
    const foreign = await revoke({
      token: issued.refresh_token!,
      client_id: 'confidential-app',
      client_secret: CONFIDENTIAL_SECRET,
    });
    expect(foreign.status).toBe(200);
    const foreignAccess = await revoke({
      token: issued.access_token!,
      client_id: 'confidential-app',
      client_secret: CONFIDENTIAL_SECRET,
    });
    expect(foreignAccess.status).toBe(200);
    await expect(
      f.authorizationServer.accessTokens.verifyAccessToken(issued.access_token!, { audience: f.resource }),
    ).resolves.toMatchObject({ clientId: 'public-app' });
    const stillValid = await token({
      grant_type: 'refresh_token',
      refresh_token: issued.refresh_token!,
      client_id: 'public-app',
    });
    expect(stillValid.status).toBe(200);

    const unknownClient = await revoke({ token: issued.access_token!, client_id: 'gone' });
    expect(unknownClient.status).toBe(401);
  });
});

describe('authorization server facade rate limit', () => {
  let f: Facade;
  beforeAll(async () => {
    f = await startFacade({ authRateLimitPerMinute: 2 });
  });
  afterAll(async () => {
    await f.close();
  });

  it('answers 429 with Retry-After once the per-IP budget is spent', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${f.url}/token`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'refresh_token', client_id: 'gone' }),
      });
      statuses.push(res.status);
      if (res.status === 429) expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    }
    expect(statuses).toEqual([401, 401, 429]);
  });
});
