import * as client from 'openid-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type DevIdp, type DevIdpOptions, startDevIdp } from '../../src/demo/dev-idp.js';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { type Listening, startBackend } from '../helpers/servers.js';

const ALICE = { username: 'alice', password: 'alice-password' };
const BOB = { username: 'bob', password: 'bob-password' };

// The relying party's redirect target: a real local server that records what reaches it.
let rp: Listening;
let hits: URL[] = [];
let redirectUri: string;
let postLogoutUri: string;
let idp: DevIdp;
let config: client.Configuration;

function clientsFor(): DevIdpOptions['clients'] {
  return [
    {
      client_id: 'proxy',
      client_secret: 'proxy-secret',
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [postLogoutUri],
    },
  ];
}

function discover(issuer: string): Promise<client.Configuration> {
  return client.discovery(new URL(issuer), 'proxy', undefined, client.ClientSecretBasic('proxy-secret'), {
    execute: [client.allowInsecureRequests],
  });
}

interface PendingAuthorization {
  url: URL;
  verifier: string;
  state: string;
  nonce: string;
}

async function authorizationRequest(
  cfg: client.Configuration,
  scope: string,
  extra: Record<string, string> = {},
): Promise<PendingAuthorization> {
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(cfg, {
    redirect_uri: redirectUri,
    scope,
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    nonce,
    ...extra,
  });
  return { url, verifier, state, nonce };
}

const atRedirectUri = (u: URL) => u.href.startsWith(redirectUri);

async function loginAndExchange(
  cfg: client.Configuration,
  scope: string,
  user: { username: string; password: string },
  jar?: CookieJar,
) {
  const auth = await authorizationRequest(cfg, scope);
  const login = await loginThroughBrowserless(auth.url.href, user, {
    stopAt: atRedirectUri,
    ...(jar ? { jar } : {}),
  });
  expect(login.finalUrl.startsWith(redirectUri)).toBe(true);
  const tokens = await client.authorizationCodeGrant(cfg, new URL(login.finalUrl), {
    pkceCodeVerifier: auth.verifier,
    expectedState: auth.state,
    expectedNonce: auth.nonce,
  });
  return { login, tokens };
}

beforeAll(async () => {
  rp = await startBackend((req, res) => {
    hits.push(new URL(req.url ?? '/', 'http://rp.invalid'));
    res.writeHead(200, { 'content-type': 'text/plain' }).end('relying party reached');
  });
  redirectUri = `${rp.url}/callback`;
  postLogoutUri = `${rp.url}/signed-out`;
  idp = await startDevIdp({ clients: clientsFor() });
  config = await discover(idp.issuer);
});

afterAll(async () => {
  await idp?.close();
  await rp?.close();
});

beforeEach(() => {
  hits = [];
});

describe('dev IdP (oidc-provider) driven by the headless login', () => {
  it('publishes discovery metadata: code + PKCE S256, refresh, logout, userinfo and the groups scope', () => {
    const meta = config.serverMetadata();
    expect(meta.issuer).toBe(idp.issuer);
    expect(idp.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(meta.code_challenge_methods_supported).toEqual(['S256']);
    expect(meta.response_types_supported).toEqual(['code']);
    expect(meta.grant_types_supported).toEqual(
      expect.arrayContaining(['authorization_code', 'refresh_token']),
    );
    expect(meta.scopes_supported).toEqual(
      expect.arrayContaining(['openid', 'email', 'profile', 'groups', 'offline_access']),
    );
    expect(meta.claims_supported).toEqual(
      expect.arrayContaining(['email', 'email_verified', 'groups', 'name']),
    );
    expect(meta.end_session_endpoint).toBe(`${idp.issuer}/session/end`);
    expect(meta.userinfo_endpoint).toBe(`${idp.issuer}/me`);
    expect(idp.users.map((u) => u.username)).toEqual(['alice', 'bob']);
  });

  it('logs alice in with her password: code + PKCE exchange, ID token claims incl. groups, userinfo', async () => {
    const { login, tokens } = await loginAndExchange(config, 'openid email profile groups', ALICE);

    // The driver went through the IdP's login form and stopped before requesting the redirect URI.
    expect(login.status).toBe(303);
    expect(
      login.visited.some((v) => /^POST http:\/\/127\.0\.0\.1:\d+\/interaction\/[^/]+\/login$/.test(v)),
    ).toBe(true);
    expect(hits).toEqual([]);
    expect(new URL(login.finalUrl).searchParams.get('iss')).toBe(idp.issuer);

    expect(tokens.token_type.toLowerCase()).toBe('bearer');
    expect(tokens.refresh_token).toBeUndefined();
    expect(tokens.claims()).toMatchObject({
      iss: idp.issuer,
      aud: 'proxy',
      sub: 'alice',
      email: 'alice@example.com',
      email_verified: true,
      name: 'Alice Example',
      preferred_username: 'alice',
      groups: ['engineering', 'mcp-users'],
    });

    const userinfo = await client.fetchUserInfo(config, tokens.access_token, 'alice');
    expect(userinfo).toMatchObject({
      sub: 'alice',
      email: 'alice@example.com',
      email_verified: true,
      groups: ['engineering', 'mcp-users'],
    });
  });

  it('maps claims to scopes: bob without the groups scope gets no groups, with it gets his own', async () => {
    const jar = new CookieJar();
    const first = await loginAndExchange(config, 'openid email', BOB, jar);
    const claims = first.tokens.claims()!;
    expect(claims.sub).toBe('bob');
    expect(claims.email).toBe('bob@other.org');
    expect(claims).not.toHaveProperty('groups');
    expect(claims).not.toHaveProperty('name');

    // Same browser (jar): single sign-on, no password asked; the wider scope is auto-consented.
    const second = await loginAndExchange(
      config,
      'openid email groups',
      { username: 'bob', password: 'x' },
      jar,
    );
    expect(second.login.visited.some((v) => v.startsWith('POST '))).toBe(false);
    expect(second.tokens.claims()).toMatchObject({ sub: 'bob', groups: ['sales'] });
  });

  it('issues a refresh token for offline_access, rotates it on refresh, and refuses the old one', async () => {
    const { tokens } = await loginAndExchange(config, 'openid email groups offline_access', ALICE);
    const first = tokens.refresh_token;
    expect(first).toEqual(expect.any(String));

    const refreshed = await client.refreshTokenGrant(config, first!);
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(refreshed.refresh_token).toEqual(expect.any(String));
    expect(refreshed.refresh_token).not.toBe(first);
    expect(refreshed.claims()).toMatchObject({ sub: 'alice', groups: ['engineering', 'mcp-users'] });
    const userinfo = await client.fetchUserInfo(config, refreshed.access_token, 'alice');
    expect(userinfo.email).toBe('alice@example.com');

    const reuse = await client.refreshTokenGrant(config, first!).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(reuse).toBeInstanceOf(client.ResponseBodyError);
    expect((reuse as client.ResponseBodyError).error).toBe('invalid_grant');
  });

  it('without stopAt follows through to the relying party, which receives the code and state', async () => {
    const auth = await authorizationRequest(config, 'openid', {});
    const login = await loginThroughBrowserless(auth.url.href, ALICE);
    expect(login.status).toBe(200);
    expect(login.body).toBe('relying party reached');
    expect(new URL(login.finalUrl).pathname).toBe('/callback');
    expect(hits).toHaveLength(1);
    expect(hits[0]!.searchParams.get('state')).toBe(auth.state);
    expect(hits[0]!.searchParams.get('code')).toEqual(expect.any(String));
  });

  it('refuses a wrong password: the form comes back with an error and nothing reaches the client', async () => {
    const auth = await authorizationRequest(config, 'openid email');
    const jar = new CookieJar();
    const refused = await loginThroughBrowserless(
      auth.url.href,
      { username: 'alice', password: 'bob-password' },
      { jar },
    );
    expect(refused.status).toBe(401);
    expect(new URL(refused.finalUrl).pathname).toMatch(/^\/interaction\/[^/]+\/login$/);
    expect(refused.body).toContain('Invalid username or password.');
    expect(refused.body).toContain('id="login"');
    expect(refused.body).toContain('value="alice"');
    expect(refused.visited.some((v) => v.includes(redirectUri))).toBe(false);
    expect(hits).toEqual([]);

    // An unknown user is refused the same way.
    const unknown = await loginThroughBrowserless(auth.url.href, { username: 'mallory', password: 'x' });
    expect(unknown.status).toBe(401);
    expect(unknown.body).toContain('Invalid username or password.');

    // The same pending sign-in then accepts the right password.
    const interactionPage = new URL(refused.finalUrl);
    interactionPage.pathname = interactionPage.pathname.replace(/\/login$/, '');
    const retry = await loginThroughBrowserless(interactionPage.href, ALICE, { jar, stopAt: atRedirectUri });
    const tokens = await client.authorizationCodeGrant(config, new URL(retry.finalUrl), {
      pkceCodeVerifier: auth.verifier,
      expectedState: auth.state,
      expectedNonce: auth.nonce,
    });
    expect(tokens.claims()?.sub).toBe('alice');
    expect(hits).toEqual([]);
  });

  it('answers a sign-in page opened without its interaction cookie with a 400, not a form', async () => {
    const auth = await authorizationRequest(config, 'openid');
    const first = await fetch(auth.url, { redirect: 'manual' });
    const interaction = new URL(first.headers.get('location')!, idp.issuer);
    expect(interaction.pathname).toMatch(/^\/interaction\//);
    const res = await fetch(interaction);
    expect(res.status).toBe(400);
    const body = await res.text();
    expect(body).toContain('Login session expired');
    expect(body).not.toContain('name="password"');
  });

  it('escapes what it echoes into the login page', async () => {
    const auth = await authorizationRequest(config, 'openid');
    const page = await loginThroughBrowserless(auth.url.href, {
      username: '"><script>x</script>',
      password: 'x',
    });
    expect(page.status).toBe(401);
    expect(page.body).not.toContain('<script>');
    expect(page.body).toContain('value="&#34;&#62;&#60;script&#62;x&#60;/script&#62;"');
  });

  it('requires PKCE: an authorization request without code_challenge is refused', async () => {
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: 'openid',
      state: 's1',
    });
    const result = await loginThroughBrowserless(url.href, ALICE, { stopAt: atRedirectUri });
    const params = new URL(result.finalUrl).searchParams;
    expect(params.get('error')).toBe('invalid_request');
    expect(params.get('error_description')).toMatch(/PKCE/);
    expect(params.get('code')).toBeNull();
    expect(result.visited.some((v) => v.includes('/interaction/'))).toBe(false);
  });

  it('RP-initiated logout ends the IdP session: the next authorization asks for the password again', async () => {
    const jar = new CookieJar();
    const { tokens } = await loginAndExchange(config, 'openid email', ALICE, jar);
    const atInteraction = (u: URL) => u.pathname.startsWith('/interaction/');

    // While the session lives, the same jar goes straight back to the client.
    const sso = await loginThroughBrowserless(
      (await authorizationRequest(config, 'openid email')).url.href,
      ALICE,
      {
        jar,
        stopAt: (u) => atRedirectUri(u) || atInteraction(u),
      },
    );
    expect(atRedirectUri(new URL(sso.finalUrl))).toBe(true);

    const endSession = client.buildEndSessionUrl(config, {
      id_token_hint: tokens.id_token!,
      post_logout_redirect_uri: postLogoutUri,
      state: 'bye',
    });
    const logout = await loginThroughBrowserless(endSession.href, ALICE, {
      jar,
      stopAt: (u) => u.href.startsWith(postLogoutUri),
    });
    expect(logout.visited.some((v) => v.startsWith('POST ') && v.includes('/session/end/confirm'))).toBe(
      true,
    );
    expect(new URL(logout.finalUrl).searchParams.get('state')).toBe('bye');

    const after = await loginThroughBrowserless(
      (await authorizationRequest(config, 'openid email')).url.href,
      ALICE,
      {
        jar,
        stopAt: (u) => atRedirectUri(u) || atInteraction(u),
      },
    );
    expect(atInteraction(new URL(after.finalUrl))).toBe(true);
  });

  it('takes token lifetimes from options.ttl', async () => {
    const short = await startDevIdp({ clients: clientsFor(), ttl: { AccessToken: 7, IdToken: 9 } });
    try {
      const cfg = await discover(short.issuer);
      const { tokens } = await loginAndExchange(cfg, 'openid', ALICE);
      expect(tokens.expires_in).toBe(7);
      const claims = tokens.claims()!;
      expect(claims.exp - claims.iat).toBe(9);
    } finally {
      await short.close();
    }
  });

  it('checks the users table: a custom user logs in, default users are gone', async () => {
    const custom = await startDevIdp({
      clients: clientsFor(),
      users: [
        {
          username: 'carol',
          password: 'carol-pw',
          email: 'carol@example.net',
          name: 'Carol',
          groups: ['ops'],
          sub: 'user-42',
        },
      ],
    });
    try {
      const cfg = await discover(custom.issuer);
      const { tokens } = await loginAndExchange(cfg, 'openid email groups', {
        username: 'carol',
        password: 'carol-pw',
      });
      expect(tokens.claims()).toMatchObject({ sub: 'user-42', email: 'carol@example.net', groups: ['ops'] });

      const auth = await authorizationRequest(cfg, 'openid');
      const refused = await loginThroughBrowserless(auth.url.href, ALICE);
      expect(refused.status).toBe(401);
    } finally {
      await custom.close();
    }
  });
});

describe('CookieJar', () => {
  it('scopes cookies by host:port and path, and honours deletion', () => {
    const jar = new CookieJar();
    jar.setFrom('http://127.0.0.1:1000/auth/x', [
      'a=1; Path=/; HttpOnly',
      'b=2; path=/interaction/abc; SameSite=Lax',
      'c=3',
    ]);
    expect(jar.get('http://127.0.0.1:1000/interaction/abc/login')).toBe('b=2; a=1');
    expect(jar.get('http://127.0.0.1:1000/interaction/abcd')).toBe('a=1');
    expect(jar.get('http://127.0.0.1:1000/auth/y')).toBe('c=3; a=1');
    expect(jar.get('http://127.0.0.1:2000/')).toBe('');

    jar.setFrom('http://127.0.0.1:1000/', [
      'a=; Path=/; Max-Age=0',
      'c=; path=/auth; expires=Thu, 01 Jan 1970 00:00:00 GMT',
    ]);
    expect(jar.get('http://127.0.0.1:1000/auth/y')).toBe('');
    jar.setFrom('http://127.0.0.1:1000/', 'd=4; Max-Age=60; Expires=Thu, 01 Jan 1970 00:00:00 GMT');
    expect(jar.get('http://127.0.0.1:1000/')).toBe('d=4');
  });
});
