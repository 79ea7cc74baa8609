import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GitHubSim, type GitHubSimUser, startGitHubSim } from '../helpers/github-sim.js';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { freePorts } from '../helpers/ports.js';
import {
  type Listening,
  startEchoBackend,
  startTestProxy,
  type TestProxy,
  waitFor,
} from '../helpers/servers.js';

// The GitHub simulator has no login form: the driver only follows redirects.
const NO_FORM = { username: '', password: '' };

const octocat: GitHubSimUser = {
  id: 583231,
  login: 'octocat',
  name: 'The Octocat',
  emails: [
    { email: 'octocat@github.example', primary: true, verified: true },
    { email: 'octo@old.example', primary: false, verified: true },
  ],
  orgs: ['my-org'],
  teams: [{ org: 'my-org', slug: 'my-team', name: 'My Team' }],
};
const mallory: GitHubSimUser = {
  id: 1001,
  login: 'mallory',
  name: null,
  emails: [{ email: 'mallory@github.example', primary: true, verified: true }],
  orgs: ['my-org'],
  teams: [{ org: 'my-org', slug: 'other-team' }],
};
const outsider: GitHubSimUser = {
  id: 1002,
  login: 'outsider',
  name: 'Out Sider',
  emails: [{ email: 'outsider@elsewhere.example', primary: true, verified: true }],
};
// Primary address unverified; a verified secondary one must not stand in for it.
const newbie: GitHubSimUser = {
  id: 1003,
  login: 'newbie',
  name: 'New Bie',
  emails: [
    { email: 'newbie@github.example', primary: true, verified: false },
    { email: 'newbie@alt.example', primary: false, verified: true },
  ],
  orgs: ['my-org'],
  teams: [{ org: 'my-org', slug: 'my-team' }],
};
// More teams than one page holds (100): the allowed one is on the second page.
const busy: GitHubSimUser = {
  id: 1004,
  login: 'busy',
  name: 'Busy Bee',
  emails: [{ email: 'busy@github.example', primary: true, verified: true }],
  orgs: ['big-org', 'my-org'],
  teams: [
    ...Array.from({ length: 140 }, (_, i) => ({ org: 'big-org', slug: `squad-${i}` })),
    { org: 'my-org', slug: 'my-team' },
  ],
};

interface Echo {
  url: string;
  headers: Record<string, string | undefined>;
}

interface ProxyUnderTest {
  clientId: string;
  url: string;
  proxy: TestProxy;
}

const SECRET = 'github-client-secret-for-tests';
/**
 * Lifetime of the GitHub App's user tokens: within the proxy's 60 s refresh margin, so every
 * authenticated request refreshes them (GitHub's own lifetime is 8 hours).
 */
const USER_TOKEN_SECONDS = 30;

describe('browser login with OIDC_PROVIDER=github (GitHub simulator)', () => {
  let sim: GitHubSim;
  let backend: Listening;
  // One proxy per configuration, each registered as its own OAuth app at the simulator.
  let team: ProxyUnderTest;
  let org: ProxyUnderTest;
  let email: ProxyUnderTest;
  let wrongSecret: ProxyUnderTest;
  // A GitHub App whose user tokens expire: refreshed at every request (see USER_TOKEN_SECONDS).
  let ghApp: ProxyUnderTest;
  // Registered only for the simulator's own checks below; nothing listens on its callback.
  const contractApp = {
    clientId: 'contract-app',
    clientSecret: 'contract-secret',
    callbackUrl: 'http://127.0.0.1:9/oauth/callback',
  };

  beforeAll(async () => {
    const names = ['team', 'org', 'email', 'wrong-secret', 'github-app'] as const;
    // The proxies' ports first, so each can be registered with its exact callback URL.
    const ports = await freePorts(names.length);
    const urls = ports.map((p) => `http://127.0.0.1:${p}`);
    sim = await startGitHubSim({
      apps: [
        ...names.map((name, i) => ({
          clientId: `app-${name}`,
          clientSecret: SECRET,
          callbackUrl: `${urls[i]}/callback`,
          expiringUserTokens: name === 'github-app',
        })),
        contractApp,
        { ...contractApp, clientId: 'contract-github-app', expiringUserTokens: true },
      ],
      users: [octocat, mallory, outsider, newbie, busy],
      userTokenLifetimeSeconds: USER_TOKEN_SECONDS,
    });
    backend = await startEchoBackend();
    const start = async (i: number, env: Record<string, string>): Promise<ProxyUnderTest> => {
      const clientId = `app-${names[i]}`;
      const proxy = await startTestProxy({
        AUTH_MODE: 'oidc',
        SERVER_PORT: String(ports[i]),
        PUBLIC_URL: urls[i]!,
        PROXY_TARGET_URL: backend.url,
        OIDC_PROVIDER: 'github',
        GITHUB_URL: sim.url,
        GITHUB_API_URL: sim.apiUrl,
        OIDC_CLIENT_ID: clientId,
        OIDC_CLIENT_SECRET: SECRET,
        AUTH_RATE_LIMIT_PER_MINUTE: '0',
        ...env,
      });
      return { clientId, url: urls[i]!, proxy };
    };
    team = await start(0, { ALLOWED_GROUPS: 'my-org/my-team' });
    org = await start(1, { ALLOWED_GROUPS: 'my-org' });
    email = await start(2, { ALLOWED_EMAILS: 'octocat@github.example,newbie@github.example' });
    wrongSecret = await start(3, { OIDC_CLIENT_SECRET: 'not-the-secret' });
    ghApp = await start(4, { ALLOWED_GROUPS: 'my-org/my-team' });
  });

  afterAll(async () => {
    for (const p of [team, org, email, wrongSecret, ghApp]) await p?.proxy.close();
    await backend?.close();
    await sim?.close();
  });

  async function login(
    target: ProxyUnderTest,
    user: GitHubSimUser,
    path = '/tools',
  ): Promise<{ status: number; body: string; jar: CookieJar; finalUrl: string }> {
    sim.signIn(user.login);
    const jar = new CookieJar();
    const result = await loginThroughBrowserless(`${target.url}${path}`, NO_FORM, { jar });
    return { status: result.status, body: result.body, jar, finalUrl: result.finalUrl };
  }

  async function auditOf(
    target: ProxyUnderTest,
    event: string,
    predicate: (l: Record<string, unknown>) => boolean,
  ) {
    await waitFor(
      () => target.proxy.logs.some((l) => l.audit === event && predicate(l)),
      2000,
      `audit ${event}`,
    );
    return target.proxy.logs.find((l) => l.audit === event && predicate(l))!;
  }

  /** True when the jar's cookies give access: the session exists. */
  async function hasSession(target: ProxyUnderTest, jar: CookieJar): Promise<boolean> {
    const res = await fetch(`${target.url}/probe`, { headers: { cookie: jar.get(target.url) } });
    await res.body?.cancel();
    return res.status === 200;
  }

  it('logs a team member in: numeric id as user, verified primary email, org and team as groups', async () => {
    const before = sim.requests.length;
    const result = await login(team, octocat, '/tools?x=1');
    expect(result.status).toBe(200);
    expect(new URL(result.finalUrl).pathname).toBe('/tools');
    const echo = JSON.parse(result.body) as Echo;
    expect(echo.url).toBe('/tools?x=1');
    expect(echo.headers['x-forwarded-user']).toBe('583231');
    expect(echo.headers['x-forwarded-email']).toBe('octocat@github.example');
    expect(echo.headers['x-forwarded-groups']).toBe('my-org,my-org/my-team');
    expect(echo.headers.authorization).toBeUndefined();

    // What the proxy sent GitHub: the documented authorize parameters, PKCE S256, and a token
    // request with the client secret, the verifier and Accept: application/json.
    const seen = sim.requests.slice(before);
    const authorize = seen.find((r) => r.path === '/login/oauth/authorize')!;
    expect(authorize.query.get('client_id')).toBe(team.clientId);
    expect(authorize.query.get('redirect_uri')).toBe(`${team.url}/callback`);
    expect(authorize.query.get('scope')).toBe('read:user user:email read:org');
    expect(authorize.query.get('code_challenge_method')).toBe('S256');
    expect(authorize.query.get('state')).toMatch(/.{16,}/);
    const token = seen.find((r) => r.path === '/login/oauth/access_token')!;
    expect(token.headers.accept).toContain('application/json');
    expect(token.form?.get('client_id')).toBe(team.clientId);
    expect(token.form?.get('client_secret')).toBe(SECRET);
    expect(token.form?.get('redirect_uri')).toBe(`${team.url}/callback`);
    expect(
      createHash('sha256')
        .update(token.form?.get('code_verifier') ?? '')
        .digest('base64url'),
    ).toBe(authorize.query.get('code_challenge'));
    expect(seen.filter((r) => r.path.startsWith('/api/v3/')).map((r) => r.path)).toEqual(
      expect.arrayContaining([
        '/api/v3/user',
        '/api/v3/user/emails',
        '/api/v3/user/orgs',
        '/api/v3/user/teams',
      ]),
    );
    expect(await hasSession(team, result.jar)).toBe(true);
    const audit = await auditOf(team, 'login_success', (l) => l.sub === '583231');
    expect(audit).toMatchObject({ provider: 'github', email: 'octocat@github.example' });
  });

  it('refuses an organisation member outside the allowed team with 403', async () => {
    const result = await login(team, mallory);
    expect(result.status).toBe(403);
    expect(result.body).toContain('Access denied');
    expect(result.body).toContain('ALLOWED_GROUPS');
    expect(await hasSession(team, result.jar)).toBe(false);
  });

  it('reads every page of teams: a membership on page two counts', async () => {
    const before = sim.requests.length;
    const result = await login(team, busy);
    expect(result.status).toBe(200);
    const echo = JSON.parse(result.body) as Echo;
    expect(echo.headers['x-forwarded-user']).toBe('1004');
    expect(echo.headers['x-forwarded-groups']?.split(',')).toContain('my-org/my-team');
    const teamPages = sim.requests.slice(before).filter((r) => r.path === '/api/v3/user/teams');
    expect(teamPages.map((r) => r.query.get('page') ?? '1')).toEqual(['1', '2']);
  });

  it('ALLOWED_GROUPS=my-org admits any member of the organisation and refuses others', async () => {
    const member = await login(org, mallory);
    expect(member.status).toBe(200);
    const echo = JSON.parse(member.body) as Echo;
    expect(echo.headers['x-forwarded-user']).toBe('1001');
    expect(echo.headers['x-forwarded-groups']).toBe('my-org,my-org/other-team');

    const stranger = await login(org, outsider);
    expect(stranger.status).toBe(403);
    expect(stranger.body).toContain('Access denied');
    expect(await hasSession(org, stranger.jar)).toBe(false);
  });

  it('gives a user whose primary email is unverified no email at all', async () => {
    // Allowed by team: the backend gets the user, but no email (not even the verified secondary).
    const result = await login(team, newbie);
    expect(result.status).toBe(200);
    const echo = JSON.parse(result.body) as Echo;
    expect(echo.headers['x-forwarded-user']).toBe('1003');
    expect(echo.headers['x-forwarded-email']).toBeUndefined();
    expect(result.body).not.toContain('newbie@');
  });

  it('ALLOWED_EMAILS matches the verified primary email only, and asks for no org scope', async () => {
    const before = sim.requests.length;
    const allowed = await login(email, octocat);
    expect(allowed.status).toBe(200);
    expect((JSON.parse(allowed.body) as Echo).headers['x-forwarded-email']).toBe('octocat@github.example');
    const authorize = sim.requests.slice(before).find((r) => r.path === '/login/oauth/authorize')!;
    expect(authorize.query.get('scope')).toBe('read:user user:email');
    expect(sim.requests.slice(before).some((r) => r.path === '/api/v3/user/orgs')).toBe(false);

    // newbie@github.example is on the list, but GitHub has not verified it.
    const refused = await login(email, newbie);
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('has no email address');
    expect(await hasSession(email, refused.jar)).toBe(false);
  });

  it('an expired code (bad_verification_code, answered with HTTP 200) ends on the sign-in failed page without a session', async () => {
    sim.signIn(octocat.login);
    const jar = new CookieJar();
    const toCallback = await loginThroughBrowserless(`${team.url}/expired`, NO_FORM, {
      jar,
      stopAt: (u) => u.pathname === '/callback' && u.origin === team.url,
    });
    const callback = new URL(toCallback.finalUrl);
    expect(callback.searchParams.get('code')).toMatch(/^[0-9a-f]{20}$/);
    // GitHub's codes live 10 minutes.
    sim.advanceTime(10 * 60 * 1000 + 1000);
    const res = await fetch(callback, { headers: { cookie: jar.get(callback), accept: 'text/html' } });
    const body = await res.text();
    expect(res.status).toBe(401);
    expect(body).toContain('Sign-in failed');
    expect(res.headers.getSetCookie().join('\n')).not.toMatch(/mcp_oidc_proxy=[^;]/);
    jar.setFrom(callback, res.headers.getSetCookie());
    expect(await hasSession(team, jar)).toBe(false);
    const audit = await auditOf(team, 'login_failure', (l) => l.reason === 'bad_verification_code');
    expect(audit).toMatchObject({ provider: 'github' });
  });

  it('a denial at GitHub ends on a page saying so', async () => {
    sim.decide('deny');
    try {
      const result = await login(team, octocat, '/denied');
      expect(result.status).toBe(401);
      expect(result.body).toContain('Sign-in failed');
      expect(result.body).toContain(
        'The identity provider refused the sign-in (access_denied: The user has denied your application access.)',
      );
      expect(await hasSession(team, result.jar)).toBe(false);
    } finally {
      sim.decide('approve');
    }
  });

  it('a token that may not read orgs and teams fails the sign-in; it does not report GitHub as down', async () => {
    // E.g. a GitHub App user token without the organisation members permission.
    sim.grantOnly(['read:user', 'user:email']);
    try {
      const result = await login(team, octocat, '/scopes');
      expect(result.status).toBe(401);
      expect(result.body).toContain('Sign-in failed');
      expect(await hasSession(team, result.jar)).toBe(false);
      await auditOf(team, 'login_failure', (l) => l.reason === 'insufficient_scope');
    } finally {
      sim.grantOnly(undefined);
    }
  });

  it('a wrong client secret (incorrect_client_credentials) fails the sign-in', async () => {
    const result = await login(wrongSecret, octocat);
    expect(result.status).toBe(401);
    expect(result.body).toContain('Sign-in failed');
    await auditOf(wrongSecret, 'login_failure', (l) => l.reason === 'incorrect_client_credentials');
  });

  it('GitHub failing behind the browser (5xx from the token endpoint or the API) shows the provider as unavailable', async () => {
    for (const [status, part] of [
      [503, 'token'],
      [502, 'api'],
    ] as const) {
      sim.signIn(octocat.login);
      const jar = new CookieJar();
      const toCallback = await loginThroughBrowserless(`${team.url}/outage`, NO_FORM, {
        jar,
        stopAt: (u) => u.pathname === '/callback' && u.origin === team.url,
      });
      const callback = new URL(toCallback.finalUrl);
      sim.failBackChannel(status, part);
      try {
        const res = await fetch(callback, { headers: { cookie: jar.get(callback), accept: 'text/html' } });
        expect(res.status, part).toBe(503);
        expect(await res.text(), part).toContain('Identity provider unavailable');
      } finally {
        sim.failBackChannel(undefined);
      }
      expect(await hasSession(team, jar), part).toBe(false);
    }
  });

  describe('a GitHub App whose user tokens expire (rotating refresh tokens)', () => {
    const refreshes = () => sim.requests.filter((r) => r.form?.get('grant_type') === 'refresh_token');
    const get = async (jar: CookieJar): Promise<{ status: number; body: string }> => {
      const res = await fetch(`${ghApp.url}/tools`, {
        headers: { cookie: jar.get(ghApp.url), accept: 'application/json' },
      });
      return { status: res.status, body: await res.text() };
    };
    const endedSessions = () =>
      ghApp.proxy.logs.filter((l) => l.audit === 'session_expired' || l.audit === 'login_failure');

    it('refreshes the expiring user token with the refresh token GitHub rotated last', async () => {
      const { status, jar } = await login(ghApp, octocat);
      expect(status).toBe(200);
      const before = refreshes().length;
      expect((await get(jar)).status).toBe(200);
      expect((await get(jar)).status).toBe(200);
      const used = refreshes()
        .slice(before)
        .map((r) => r.form?.get('refresh_token'));
      expect(used).toHaveLength(2);
      expect(used[0]).toMatch(/^ghr_/);
      expect(used[1]).not.toBe(used[0]);
      expect(endedSessions()).toEqual([]);
    });

    it('keeps the rotated refresh token when a later call (the teams) fails, so the next refresh works', async () => {
      const { status, jar } = await login(ghApp, octocat);
      expect(status).toBe(200);
      const before = refreshes().length;
      // The refresh goes through (GitHub rotates the pair, the old refresh token is spent), then
      // reading the teams fails: GitHub is unavailable for the identity, not the user refused.
      sim.failNext('/user/teams', 502);
      const during = await get(jar);
      expect(during.status).toBe(200);
      expect((JSON.parse(during.body) as Echo).headers['x-forwarded-groups']).toBe('my-org,my-org/my-team');
      await waitFor(
        () => ghApp.proxy.logs.some((l) => String(l.msg).includes('identity provider unreachable')),
        2000,
        'the refresh failure logged',
      );

      // The next request refreshes with the new refresh token, not the spent one (which GitHub
      // would answer with bad_refresh_token, ending the session).
      const after = await get(jar);
      expect(after.status).toBe(200);
      const used = refreshes()
        .slice(before)
        .map((r) => r.form?.get('refresh_token'));
      expect(used).toHaveLength(2);
      expect(used[1]).not.toBe(used[0]);
      expect(endedSessions()).toEqual([]);
      expect(await hasSession(ghApp, jar)).toBe(true);
    });

    it('ends the session when GitHub refuses the refresh token (bad_refresh_token)', async () => {
      const { status, jar } = await login(ghApp, octocat);
      expect(status).toBe(200);
      sim.revokeTokens();
      const res = await get(jar);
      expect(res.status).toBe(401);
      await auditOf(ghApp, 'session_expired', (l) => l.reason === 'refresh_failed: bad_refresh_token');
      expect(await hasSession(ghApp, jar)).toBe(false);
    });
  });

  describe('the simulator answers as GitHub documents', () => {
    async function code(
      params: Record<string, string>,
    ): Promise<{ location: URL; verifier: string; challenge: string }> {
      sim.signIn(octocat.login);
      const verifier = randomBytes(32).toString('base64url');
      const challenge = createHash('sha256').update(verifier).digest('base64url');
      const url = new URL(`${sim.url}/login/oauth/authorize`);
      url.search = new URLSearchParams({
        client_id: contractApp.clientId,
        redirect_uri: contractApp.callbackUrl,
        scope: 'read:user user:email',
        state: 'st-1',
        code_challenge: challenge,
        code_challenge_method: 'S256',
        ...params,
      }).toString();
      const res = await fetch(url, { redirect: 'manual' });
      expect(res.status).toBe(302);
      return { location: new URL(res.headers.get('location')!), verifier, challenge };
    }

    function exchange(form: Record<string, string>, accept = 'application/json'): Promise<Response> {
      return fetch(`${sim.url}/login/oauth/access_token`, {
        method: 'POST',
        headers: { accept, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          client_id: contractApp.clientId,
          client_secret: contractApp.clientSecret,
          ...form,
        }),
      });
    }

    it('redirects a mismatched redirect_uri to the registered callback with redirect_uri_mismatch', async () => {
      const { location } = await code({ redirect_uri: 'http://127.0.0.1:9/elsewhere' });
      expect(`${location.origin}${location.pathname}`).toBe(contractApp.callbackUrl);
      expect(location.searchParams.get('error')).toBe('redirect_uri_mismatch');
      expect(location.searchParams.get('state')).toBe('st-1');
    });

    it('answers in form encoding without Accept: application/json; codes are single use; errors are HTTP 200', async () => {
      const { location, verifier } = await code({});
      const c = location.searchParams.get('code')!;
      const form = { code: c, code_verifier: verifier, redirect_uri: contractApp.callbackUrl };
      const first = await exchange(form, '*/*');
      expect(first.status).toBe(200);
      expect(first.headers.get('content-type')).toContain('application/x-www-form-urlencoded');
      const fields = new URLSearchParams(await first.text());
      expect(fields.get('access_token')).toMatch(/^gho_/);
      expect(fields.get('token_type')).toBe('bearer');
      expect(fields.get('scope')).toBe('read:user,user:email');

      const again = await exchange(form);
      expect(again.status).toBe(200);
      expect(await again.json()).toEqual({
        error: 'bad_verification_code',
        error_description: 'The code passed is incorrect or expired.',
        error_uri:
          '/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code',
      });
    });

    it('checks the PKCE verifier', async () => {
      const { location } = await code({});
      const res = await exchange({
        code: location.searchParams.get('code')!,
        code_verifier: randomBytes(32).toString('base64url'),
      });
      expect(((await res.json()) as { error: string }).error).toBe('bad_verification_code');
    });

    it("a GitHub App's expiring user token: ghu_/ghr_ pair; a used refresh token and its access token stop working", async () => {
      const { location, verifier } = await code({ client_id: 'contract-github-app' });
      const exchangeFor = (form: Record<string, string>) =>
        exchange({ client_id: 'contract-github-app', ...form }).then(
          (r) => r.json() as Promise<Record<string, unknown>>,
        );
      const first = await exchangeFor({ code: location.searchParams.get('code')!, code_verifier: verifier });
      expect(first).toMatchObject({
        access_token: expect.stringMatching(/^ghu_/),
        refresh_token: expect.stringMatching(/^ghr_/),
        expires_in: String(USER_TOKEN_SECONDS),
        refresh_token_expires_in: '15897600',
      });
      const second = await exchangeFor({
        grant_type: 'refresh_token',
        refresh_token: String(first.refresh_token),
      });
      expect(second.access_token).toMatch(/^ghu_/);
      expect(second.refresh_token).not.toBe(first.refresh_token);
      const user = (token: unknown) =>
        fetch(`${sim.apiUrl}/user`, { headers: { authorization: `Bearer ${String(token)}` } }).then(
          (r) => r.status,
        );
      expect(await user(first.access_token)).toBe(401);
      expect(await user(second.access_token)).toBe(200);
      const again = await exchangeFor({
        grant_type: 'refresh_token',
        refresh_token: String(first.refresh_token),
      });
      expect(again.error).toBe('bad_refresh_token');
      // Expired after its lifetime, like GitHub's after 8 hours.
      sim.advanceTime((USER_TOKEN_SECONDS + 1) * 1000);
      expect(await user(second.access_token)).toBe(401);
    });

    it('answers 401 Bad credentials for an unknown token, 403 for orgs and teams without read:org, and pages with Link', async () => {
      const bad = await fetch(`${sim.apiUrl}/user`, { headers: { authorization: 'Bearer gho_nope' } });
      expect(bad.status).toBe(401);
      expect(await bad.json()).toMatchObject({ message: 'Bad credentials' });

      const { location, verifier } = await code({});
      const tokenRes = await exchange({ code: location.searchParams.get('code')!, code_verifier: verifier });
      const { access_token } = (await tokenRes.json()) as { access_token: string };
      const auth = { authorization: `Bearer ${access_token}` };
      for (const path of ['/user/orgs', '/user/teams']) {
        const res = await fetch(`${sim.apiUrl}${path}`, { headers: auth });
        expect(res.status).toBe(403);
        const body = (await res.json()) as { message: string; documentation_url: string };
        expect(body.message).toContain('read:org');
        expect(body.documentation_url).toMatch(/^https:\/\/docs\.github\.com\/rest\//);
      }
      const me = (await (await fetch(`${sim.apiUrl}/user`, { headers: auth })).json()) as Record<
        string,
        unknown
      >;
      expect(me).toMatchObject({ id: 583231, login: 'octocat', name: 'The Octocat' });
      const emails = await fetch(`${sim.apiUrl}/user/emails?per_page=1`, { headers: auth });
      expect(emails.headers.get('link')).toContain('rel="next"');
      expect(await emails.json()).toEqual([
        { email: 'octocat@github.example', primary: true, verified: true, visibility: 'private' },
      ]);
    });
  });
});
