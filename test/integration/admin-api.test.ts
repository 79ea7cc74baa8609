/**
 * The admin API (ADMIN_ENABLED) against the real stack: the dev OIDC provider, the proxy in oidc
 * mode and the sample MCP server, with the official MCP SDK client and the headless browser login
 * as the users whose sessions, clients and grants are listed and revoked.
 */
import { createHash, randomBytes } from 'node:crypto';
import { request } from 'node:http';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatusReport } from '../../src/admin/status.js';
import { DEFAULT_DEV_USERS, type DevUser } from '../../src/demo/dev-idp.js';
import {
  approveConsent,
  CookieJar,
  loginThroughBrowserless,
  signInThroughProxy,
} from '../helpers/headless-login.js';
import {
  type ConnectedMcpClient,
  connectMcpClient,
  initializeWithBearer,
  REDIRECT_URL,
} from '../helpers/mcp-oauth-client.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { freePort, startTestProxy, type TestProxy } from '../helpers/servers.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
const INSPECTOR_ORIGIN = 'http://inspector.example:6274';
const PRE_REGISTERED = 'configured-client';

type User = { username: string; password: string };
const person = (username: string, name: string, groups: string[]): DevUser => ({
  username,
  password: `${username}-password`,
  email: `${username}@example.com`,
  name,
  groups,
});
const USERS: DevUser[] = [
  ...DEFAULT_DEV_USERS,
  person('carol', 'Carol MCP', ['mcp-users']),
  person('dave', 'Dave MCP', ['mcp-users']),
  person('erin', 'Erin Browser', ['mcp-users']),
];
const as = (username: string): User => ({ username, password: `${username}-password` });
const alice = as('alice'); // in ADMIN_GROUPS (engineering)
const bob = as('bob'); // signed in, not an admin

interface Listing {
  total: number;
  truncated: boolean;
}
type Sessions = Listing & { sessions: SessionView[] };
type Clients = Listing & { clients: ClientView[] };
type Grants = Listing & { tokens: GrantView[] };
type Status = StatusReport & { caller: Record<string, unknown> };

function first<T>(items: T[]): T {
  const item = items[0];
  if (item === undefined) throw new Error('the listing is empty');
  return item;
}
interface SessionView {
  id: string;
  subject: string;
  email: string;
  name: string;
  groups: string[];
}
interface ClientView {
  client_id: string;
  client_name: string;
  source: string;
  active_grants: number;
  users: number;
  deletable: boolean;
}
interface GrantView {
  id: string;
  subject: string;
  client_id: string;
  client_name?: string;
}

/** The raw session id the cookie carries (`id.signature`). */
function sessionIdOf(jar: CookieJar, url: string): string {
  const cookie = jar.list(url).find((c) => c.name === 'mcp_oidc_proxy');
  if (!cookie) throw new Error('no session cookie');
  return cookie.value.slice(0, cookie.value.lastIndexOf('.'));
}

async function whoami(client: Client): Promise<{ user: string }> {
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  return JSON.parse((result.content as Array<{ text: string }>)[0]?.text ?? '{}') as { user: string };
}

/** One MCP request with a bearer token, without the SDK (which would start a new login on 401). */
function mcpRequest(url: string, accessToken: string): Promise<Response> {
  return initializeWithBearer(url, accessToken);
}

function refresh(url: string, user: ConnectedMcpClient): Promise<Response> {
  return fetch(`${url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: user.refreshToken,
      client_id: user.clientId,
    }),
  });
}

/** Runs an authorization for the client in `jar`'s browser; says whether the consent page was shown. */
async function authorizeAgain(
  url: string,
  user: ConnectedMcpClient,
  as: User,
): Promise<{ consentShown: boolean }> {
  const verifier = randomBytes(32).toString('base64url');
  const authorize = new URL(`${url}/authorize`);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: user.clientId,
    redirect_uri: REDIRECT_URL,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: 'again',
    resource: `${url}/mcp`,
    scope: 'mcp',
  }).toString();
  let consentShown = false;
  const result = await loginThroughBrowserless(authorize.href, as, {
    jar: user.jar,
    stopAt: (target) => target.href.startsWith(REDIRECT_URL),
    onPage: (page) => {
      const submission = approveConsent(page);
      consentShown ||= submission !== undefined;
      return submission;
    },
  });
  expect(new URL(result.finalUrl).searchParams.get('code')).toEqual(expect.any(String));
  return { consentShown };
}

describe('the admin API (oidc mode, memory store)', () => {
  let stack: OidcStack;
  /** Every admin API response body, checked for secrets at the end. */
  const bodies: string[] = [];
  let adminJar: CookieJar;
  let bobJar: CookieJar;
  let carol: ConnectedMcpClient;

  /** An admin API call; `as` is the admin token (default), a cookie jar, or nothing. */
  async function admin(
    path: string,
    options: { method?: string; as?: 'token' | CookieJar | 'none'; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    const who = options.as ?? 'token';
    if (who === 'token') headers.authorization = `Bearer ${ADMIN_TOKEN}`;
    else if (who instanceof CookieJar) headers.cookie = who.get(stack.url);
    const res = await fetch(`${stack.url}${path}`, { method: options.method ?? 'GET', headers });
    const text = await res.text();
    bodies.push(text);
    return new Response(text, { status: res.status, headers: res.headers });
  }
  async function json<T>(path: string, options?: Parameters<typeof admin>[1]): Promise<T> {
    const res = await admin(path, options);
    expect(res.status, `${path}: ${await res.clone().text()}`).toBe(200);
    return (await res.json()) as T;
  }

  beforeAll(async () => {
    stack = await startOidcStack(
      {
        ADMIN_ENABLED: 'true',
        ADMIN_TOKEN,
        ADMIN_GROUPS: 'engineering',
        ALLOWED_ORIGINS: INSPECTOR_ORIGIN,
        // Tests that fail on purpose present a documentation address, so the failures they
        // count do not block the tests' own address (127.0.0.1).
        TRUSTED_PROXIES: '127.0.0.1',
        MCP_CLIENTS: JSON.stringify([
          { client_id: PRE_REGISTERED, redirect_uris: [REDIRECT_URL], name: 'Configured Client' },
        ]),
      },
      { users: USERS },
      startMcpServer,
    );
    adminJar = await signInThroughProxy(stack.url, alice);
    bobJar = await signInThroughProxy(stack.url, bob);
    carol = await connectMcpClient(stack.url, as('carol'));
  });
  afterAll(async () => {
    await carol?.client.close();
    await stack?.close();
  });

  describe('who may call it', () => {
    const from = (ip: string) => ({ 'x-forwarded-for': ip });

    it('refuses a caller without credentials: 401, Bearer realm="admin", OAuth-style body', async () => {
      const res = await admin('/admin/api/status', { as: 'none' });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="admin"');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(await res.json()).toMatchObject({
        error: 'unauthorized',
        error_description: expect.any(String),
      });
    });

    it('refuses a wrong token of the right length, a short token, another scheme and an MCP access token', async () => {
      const wrong = randomBytes(36).toString('base64url');
      const attempts: Array<[string, string]> = [
        ['wrong token', `Bearer ${wrong}`],
        ['short token', 'Bearer abc'],
        ['token prefix', `Bearer ${ADMIN_TOKEN.slice(0, 20)}`],
        ['token plus suffix', `Bearer ${ADMIN_TOKEN}x`],
        ['basic', `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}`],
        ['MCP access token', `Bearer ${carol.accessToken}`],
      ];
      for (const [what, authorization] of attempts) {
        const res = await admin('/admin/api/sessions', {
          as: 'none',
          headers: { authorization, ...from('198.51.100.1') },
        });
        expect(res.status, what).toBe(401);
        expect(res.headers.get('www-authenticate'), what).toBe('Bearer realm="admin", error="invalid_token"');
        const body = (await res.json()) as { error: string };
        expect(body.error, what).toBe('invalid_token');
      }
      // Every failure is audited with the reason and the address, never the token.
      const failures = stack.proxy.logs.filter(
        (l) => l.audit === 'admin_auth_failure' && l.ip === '198.51.100.1',
      );
      expect(failures).toHaveLength(attempts.length);
      expect(failures.map((f) => f.reason)).toContain('not_a_bearer_token');
      expect(stack.proxy.logText()).not.toContain(wrong);
    });

    it('refuses a signed-in user outside ADMIN_GROUPS with 403', async () => {
      const res = await admin('/admin/api/sessions', { as: bobJar });
      expect(res.status).toBe(403);
      const body = (await res.json()) as { error: string; error_description: string };
      expect(body.error).toBe('access_denied');
      expect(body.error_description).toContain('bob@other.org');
    });

    it('lets a member of ADMIN_GROUPS in with the session cookie, and the token holder with the token', async () => {
      const bySession = await json<{ caller: Record<string, unknown> }>('/admin/api/status', {
        as: adminJar,
      });
      expect(bySession.caller).toEqual({
        kind: 'session',
        subject: 'alice',
        email: 'alice@example.com',
        name: 'Alice Example',
      });
      const byToken = await json<{ caller: Record<string, unknown> }>('/admin/api/status');
      expect(byToken.caller).toEqual({ kind: 'token' });
    });

    it('decides by the bearer token when one is sent, even beside an admin session cookie', async () => {
      const res = await admin('/admin/api/status', {
        as: adminJar,
        headers: { authorization: 'Bearer not-the-token', ...from('198.51.100.2') },
      });
      expect(res.status).toBe(401);
    });

    it('limits failed token attempts per client IP: 429 with Retry-After, then even the right token waits', async () => {
      const ip = from('203.0.113.9');
      let status = 0;
      let attempts = 0;
      while (status !== 429 && attempts < 20) {
        attempts++;
        const res = await admin('/admin/api/status', {
          as: 'none',
          headers: { authorization: `Bearer guess-${attempts}`, ...ip },
        });
        status = res.status;
        if (status === 429) {
          expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
          expect(((await res.json()) as { error: string }).error).toBe('rate_limited');
        }
      }
      expect(attempts).toBe(11); // 10 failures allowed per minute
      const right = await admin('/admin/api/status', { headers: ip });
      expect(right.status).toBe(429);
      // Another address is not affected.
      expect((await admin('/admin/api/status', { headers: from('203.0.113.10') })).status).toBe(200);
    });

    it('answers only its own origin: a page of ALLOWED_ORIGINS is refused, and no CORS headers are sent', async () => {
      const res = await admin('/admin/api/status', { headers: { origin: INSPECTOR_ORIGIN } });
      expect(res.status).toBe(403);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
      const foreign = await admin('/admin/api/status', { headers: { origin: 'https://evil.example' } });
      expect(foreign.status).toBe(403);
      const crossSite = await admin('/admin/api/sessions', {
        as: adminJar,
        headers: { 'sec-fetch-site': 'cross-site' },
      });
      expect(crossSite.status).toBe(403);
      const same = await admin('/admin/api/status', { headers: { origin: stack.url } });
      expect(same.status).toBe(200);
    });
  });

  describe('listing and search', () => {
    it('lists sessions with a handle instead of the session id, and searches them', async () => {
      const all = await json<Sessions>('/admin/api/sessions');
      const subjects = all.sessions.map((s) => s.subject) ?? [];
      expect(subjects).toEqual(expect.arrayContaining(['alice', 'bob', 'carol']));
      expect(all.total).toBe(all.sessions.length);
      const bobs = all.sessions.find((s) => s.subject === 'bob') as SessionView;
      expect(bobs).toMatchObject({ email: 'bob@other.org', name: 'Bob Other', groups: ['sales'] });
      expect(bobs.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      // Neither the raw id (the cookie's payload) nor the cookie appears anywhere.
      const raw = JSON.stringify(all);
      for (const jar of [adminJar, bobJar, carol.jar]) {
        expect(raw).not.toContain(sessionIdOf(jar, stack.url));
      }
      expect(raw).not.toMatch(/accessToken|refreshToken|idToken/);

      const byText = await json<Sessions>('/admin/api/sessions?q=OTHER.ORG');
      expect(byText.sessions.map((s) => s.subject)).toEqual(['bob']);
      const byName = await json<Sessions>('/admin/api/sessions?q=carol%20mcp');
      expect(byName.sessions.map((s) => s.subject)).toEqual(['carol']);
      const byUser = await json<Sessions>('/admin/api/sessions?user=alice');
      expect(byUser.sessions.every((s) => s.subject === 'alice')).toBe(true);
      expect(byUser.total).toBeGreaterThanOrEqual(1);
      const limited = await json<Sessions>('/admin/api/sessions?limit=1');
      expect(limited.sessions).toHaveLength(1);
      expect(limited.truncated).toBe(true);
      expect(limited.total).toBe(all.total);
    });

    it('lists clients (never a secret) with their grants, and searches them', async () => {
      const registered = await fetch(`${stack.url}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ client_name: 'Confidential Tool', redirect_uris: [REDIRECT_URL] }),
      });
      const { client_secret: secret } = (await registered.json()) as { client_secret: string };
      expect(secret).toEqual(expect.any(String));

      const all = await json<Clients>('/admin/api/clients');
      const raw = JSON.stringify(all);
      expect(raw).not.toContain(secret);
      expect(raw).not.toMatch(/secret/i);
      const sdk = all.clients.find((c) => c.client_id === carol.clientId);
      expect(sdk).toMatchObject({
        client_name: 'SDK test client',
        source: 'dynamic',
        active_grants: 1,
        users: 1,
        deletable: true,
      });
      expect(all.clients.find((c) => c.client_id === PRE_REGISTERED)).toMatchObject({
        client_name: 'Configured Client',
        source: 'pre-registered',
        deletable: false,
      });
      const found = await json<Clients>('/admin/api/clients?q=confidential');
      expect(found.clients.map((c) => c.client_name)).toEqual(['Confidential Tool']);
      const carols = await json<Clients>('/admin/api/clients?user=carol');
      expect(carols.clients.map((c) => c.client_id)).toEqual([carol.clientId]);
    });

    it('lists grants (refresh-token families) without token values, by user, client or text', async () => {
      const all = await json<Grants>('/admin/api/tokens');
      const raw = JSON.stringify(all);
      expect(raw).not.toContain(carol.refreshToken);
      expect(raw).not.toContain(carol.accessToken);
      const mine = await json<Grants>('/admin/api/tokens?user=carol');
      expect(mine.tokens).toHaveLength(1);
      expect(mine.tokens[0]).toMatchObject({
        subject: 'carol',
        client_id: carol.clientId,
        client_name: 'SDK test client',
        email: 'carol@example.com',
        scope: 'mcp',
      });
      expect(mine.tokens[0]?.id).toMatch(/^[A-Za-z0-9_-]{22}$/);
      const byEmail = await json<Grants>('/admin/api/tokens?q=CAROL@');
      expect(byEmail.tokens.map((t) => t.subject)).toEqual(['carol']);
      const byClient = await json<Grants>(
        `/admin/api/tokens?client_id=${encodeURIComponent(carol.clientId)}`,
      );
      expect(byClient.total).toBe(1);
      expect((await json<Grants>('/admin/api/tokens?user=nobody')).tokens).toEqual([]);
    });

    it('refuses bad parameters, unknown endpoints and wrong methods with clear errors', async () => {
      for (const [path, status, error] of [
        ['/admin/api/sessions?limit=0', 400, 'invalid_request'],
        ['/admin/api/sessions?limit=abc', 400, 'invalid_request'],
        ['/admin/api/sessions?q=a&q=b', 400, 'invalid_request'],
        ['/admin/api/nothing', 404, 'not_found'],
        ['/admin/api/sessions/a/b', 404, 'not_found'],
        ['/admin/api/sessions/%E0%A4%A', 400, 'invalid_request'],
        ['/admin/elsewhere', 404, 'not_found'],
      ] as const) {
        const res = await admin(path);
        expect(res.status, path).toBe(status);
        expect(((await res.json()) as { error: string }).error, path).toBe(error);
      }
      const post = await admin('/admin/api/sessions', { method: 'POST' });
      expect(post.status).toBe(405);
      expect(post.headers.get('allow')).toBe('GET');
      const users = await admin('/admin/api/users/alice', { method: 'GET' });
      expect(users.status).toBe(405);
      expect(users.headers.get('allow')).toBe('DELETE');
    });
  });

  describe('revocation', () => {
    it('revokes a browser session: that browser is sent to login (HTML) or gets 401 (API) next', async () => {
      const erin = await signInThroughProxy(stack.url, as('erin'));
      const before = await fetch(`${stack.url}/`, {
        headers: { cookie: erin.get(stack.url), accept: 'text/html' },
      });
      expect(before.status).not.toBe(302);
      const { sessions } = await json<Sessions>('/admin/api/sessions?user=erin');
      expect(sessions).toHaveLength(1);
      const handle = first(sessions).id;

      const res = await admin(`/admin/api/sessions/${handle}`, { method: 'DELETE' });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ revoked: 'session', id: handle, subject: 'erin' });

      const html = await fetch(`${stack.url}/`, {
        headers: { cookie: erin.get(stack.url), accept: 'text/html' },
        redirect: 'manual',
      });
      expect(html.status).toBe(302);
      expect(html.headers.get('location')).toMatch(/^\/login\?rd=/);
      const api = await fetch(`${stack.url}/mcp`, { headers: { cookie: erin.get(stack.url) } });
      expect(api.status).toBe(401);
      expect((await admin(`/admin/api/sessions/${handle}`, { method: 'DELETE' })).status).toBe(404);
      expect(stack.proxy.logs.find((l) => l.audit === 'admin_session_revoked')).toMatchObject({
        sub: 'erin',
        admin: 'token',
        session: handle,
      });
    });

    it('revokes a client: registration, grants and access tokens are gone at once', async () => {
      const dave = await connectMcpClient(stack.url, as('dave'));
      expect((await whoami(dave.client)).user).toBe('dave');

      const res = await admin(`/admin/api/clients/${encodeURIComponent(dave.clientId)}`, {
        method: 'DELETE',
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({
        revoked: 'client',
        client_id: dave.clientId,
        registration_deleted: true,
        grants_revoked: 1,
        consents_revoked: 1,
      });

      const next = await mcpRequest(stack.url, dave.accessToken);
      expect(next.status).toBe(401);
      expect(next.headers.get('www-authenticate')).toContain('error="invalid_token"');
      const refreshed = await refresh(stack.url, dave);
      expect(refreshed.status).toBe(401);
      expect(((await refreshed.json()) as { error: string }).error).toBe('invalid_client');
      await expect(whoami(dave.client)).rejects.toThrow();
      const clients = await json<Clients>('/admin/api/clients');
      expect(clients.clients.some((c) => c.client_id === dave.clientId)).toBe(false);
      // Carol's client is untouched.
      expect((await whoami(carol.client)).user).toBe('carol');
      expect(stack.proxy.logs.find((l) => l.audit === 'admin_client_revoked')).toMatchObject({
        client_id: dave.clientId,
        client_name: 'SDK test client',
        admin: 'token',
      });
      await dave.client.close();
    });

    it('refuses to delete a pre-registered client (409) and says why; unknown ids are 404', async () => {
      const res = await admin(`/admin/api/clients/${PRE_REGISTERED}`, { method: 'DELETE' });
      expect(res.status).toBe(409);
      const body = (await res.json()) as { error: string; error_description: string };
      expect(body.error).toBe('conflict');
      expect(body.error_description).toContain('MCP_CLIENTS');
      expect((await json<Clients>('/admin/api/clients')).clients.map((c) => c.client_id)).toContain(
        PRE_REGISTERED,
      );
      for (const path of [
        '/admin/api/clients/no-such-client',
        '/admin/api/sessions/AAAAAAAAAAAAAAAAAAAAAA',
        '/admin/api/tokens/AAAAAAAAAAAAAAAAAAAAAA',
      ]) {
        const missing = await admin(path, { method: 'DELETE' });
        expect(missing.status, path).toBe(404);
        expect(((await missing.json()) as { error: string }).error).toBe('not_found');
      }
      expect((await admin('/admin/api/clients', { method: 'DELETE' })).status).toBe(400);
    });

    it('revokes one grant: its refresh token stops working', async () => {
      const frank = await connectMcpClient(stack.url, alice);
      const { tokens } = await json<Grants>(
        `/admin/api/tokens?client_id=${encodeURIComponent(frank.clientId)}`,
      );
      const handle = first(tokens).id;
      const res = await admin(`/admin/api/tokens/${handle}`, { method: 'DELETE' });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ revoked: 'grant', id: handle, subject: 'alice' });
      expect((await refresh(stack.url, frank)).status).toBe(400);
      expect((await admin(`/admin/api/tokens/${handle}`, { method: 'DELETE' })).status).toBe(404);
      await frank.client.close();
    });

    it('revokes a user everywhere: MCP calls get 401, refresh fails, the browser session ends, consent is asked again', async () => {
      expect((await whoami(carol.client)).user).toBe('carol');
      // Before: the approval is remembered, so a new authorization skips the consent page.
      expect((await authorizeAgain(stack.url, carol, as('carol'))).consentShown).toBe(false);
      const dave = await connectMcpClient(stack.url, as('dave'));

      const res = await admin('/admin/api/users/carol', {
        method: 'DELETE',
        as: adminJar,
        headers: { origin: stack.url },
      });
      expect(res.status).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({
        revoked: 'user',
        subject: 'carol',
        grants_revoked: 1,
        consents_revoked: 1,
      });
      expect(body.sessions_revoked).toBeGreaterThanOrEqual(1);

      const next = await mcpRequest(stack.url, carol.accessToken);
      expect(next.status).toBe(401);
      expect(next.headers.get('www-authenticate')).toContain('error="invalid_token"');
      const refreshed = await refresh(stack.url, carol);
      expect(refreshed.status).toBe(400);
      expect(((await refreshed.json()) as { error: string }).error).toBe('invalid_grant');
      await expect(whoami(carol.client)).rejects.toThrow();
      const browser = await fetch(`${stack.url}/`, {
        headers: { cookie: carol.jar.get(stack.url), accept: 'text/html' },
        redirect: 'manual',
      });
      expect(browser.status).toBe(302);
      expect((await json<Sessions>('/admin/api/sessions?user=carol')).total).toBe(0);
      expect((await json<Grants>('/admin/api/tokens?user=carol')).total).toBe(0);
      expect((await authorizeAgain(stack.url, carol, as('carol'))).consentShown).toBe(true);
      // Other users keep working.
      expect((await whoami(dave.client)).user).toBe('dave');
      expect(stack.proxy.logs.find((l) => l.audit === 'admin_user_revoked')).toMatchObject({
        sub: 'carol',
        admin: 'alice',
        grants_revoked: 1,
      });
      await dave.client.close();
    });

    it('a user with nothing stored is still answered 200 with zero counts (their access tokens are cut off anyway)', async () => {
      const res = await admin('/admin/api/users/nobody%40example.com', { method: 'DELETE' });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({
        subject: 'nobody@example.com',
        sessions_revoked: 0,
        grants_revoked: 0,
        consents_revoked: 0,
      });
    });
  });

  describe('cross-site request forgery', () => {
    it('refuses a cookie-authenticated change without a same-origin Origin or Sec-Fetch-Site', async () => {
      const victim = await signInThroughProxy(stack.url, as('erin'));
      const { sessions } = await json<Sessions>('/admin/api/sessions?user=erin');
      const target = `/admin/api/sessions/${first(sessions).id}`;

      const bare = await admin(target, { method: 'DELETE', as: adminJar });
      expect(bare.status).toBe(403);
      expect(((await bare.json()) as { error: string }).error).toBe('forbidden');
      const fromAllowedOrigin = await admin(target, {
        method: 'DELETE',
        as: adminJar,
        headers: { origin: INSPECTOR_ORIGIN },
      });
      expect(fromAllowedOrigin.status).toBe(403);
      const nullOrigin = await admin(target, { method: 'DELETE', as: adminJar, headers: { origin: 'null' } });
      expect(nullOrigin.status).toBe(403);
      const sameSite = await admin(target, {
        method: 'DELETE',
        as: adminJar,
        headers: { 'sec-fetch-site': 'same-site' },
      });
      expect(sameSite.status).toBe(403);
      // Nothing was revoked by those.
      expect((await json<Sessions>('/admin/api/sessions?user=erin')).total).toBe(1);
      expect(
        (await fetch(`${stack.url}/`, { headers: { cookie: victim.get(stack.url), accept: 'text/html' } }))
          .status,
      ).not.toBe(302);

      const sameOrigin = await admin(target, {
        method: 'DELETE',
        as: adminJar,
        headers: { 'sec-fetch-site': 'same-origin' },
      });
      expect(sameOrigin.status).toBe(200);
    });

    it('does not ask the token holder for an Origin (a bearer token is never sent by a browser on its own)', async () => {
      const victim = await signInThroughProxy(stack.url, as('erin'));
      expect(victim.get(stack.url)).toContain('mcp_oidc_proxy=');
      const { sessions } = await json<Sessions>('/admin/api/sessions?user=erin');
      const res = await admin(`/admin/api/sessions/${first(sessions).id}`, {
        method: 'DELETE',
      });
      expect(res.status).toBe(200);
    });
  });

  describe('status', () => {
    it('reports upstream, breaker, store, counters, the login funnel and recent audit events', async () => {
      const status = await json<Status>('/admin/api/status');
      expect(status.auth_mode).toBe('oidc');
      expect(status.upstream).toEqual({
        target: `${stack.backend.url}/`,
        status: 'healthy',
        breaker: 'closed',
      });
      expect(status.store).toMatchObject({ kind: 'memory', status: 'healthy' });
      expect(status.store?.active_sessions).toBeGreaterThan(0);
      expect(status.identity_provider).toEqual({ status: 'healthy' });
      expect(status.process).toMatchObject({ version: expect.any(String), node: process.version });
      expect(status.process.memory.rss_bytes).toBeGreaterThan(0);
      expect(status.requests.total).toBeGreaterThan(0);
      expect(status.requests.by_status_class['2xx']).toBeGreaterThan(0);
      expect(status.requests.by_route.mcp).toBeGreaterThan(0);
      expect(status.requests.latency.p50_ms).toBeGreaterThan(0);
      expect(status.proxy.total).toBeGreaterThan(0);
      expect(status.streams).toEqual({ sse: expect.any(Number), websocket: 0 });
      const funnel = Object.fromEntries(status.auth.funnel.map((s) => [s.step, s.count]));
      expect(Object.keys(funnel)).toEqual([
        'challenge',
        'client_registered',
        'consent_granted',
        'login_success',
        'token_issued',
        'mcp_first_call',
      ]);
      for (const step of Object.keys(funnel)) expect(funnel[step], step).toBeGreaterThan(0);
      const events = status.recent_audit.map((e) => e.event);
      expect(events).toEqual(expect.arrayContaining(['login_success', 'token_issued', 'admin_user_revoked']));
      expect(status.recent_audit.length).toBeLessThanOrEqual(200);
      // Newest first.
      const times = status.recent_audit.map((e) => Date.parse(e.time));
      expect([...times].sort((a, b) => b - a)).toEqual(times);
      // The metric counts the funnel's last step too; admin actions are no auth step.
      const metrics = await (await fetch(`${stack.url}/metrics`)).text();
      expect(metrics).toMatch(
        /mcp_oidc_proxy_auth_events_total\{event="mcp_first_call",client="SDK test client"\} \d/,
      );
      expect(metrics).not.toMatch(/event="admin_/);
    });

    it("does not count the admin API's own requests, and measures rates between two reports", async () => {
      const first = await json<Status>('/admin/api/status');
      const again = await json<Status>('/admin/api/status');
      expect(again.requests.total).toBe(first.requests.total);
      await fetch(`${stack.url}/health`);
      await fetch(`${stack.url}/health`);
      const third = await json<Status>('/admin/api/status');
      expect(third.requests.total).toBe(first.requests.total + 2);
      expect(third.rates.window_seconds).toBeGreaterThan(0);
      expect(third.rates.requests_per_second).toBeGreaterThan(0);
    });
  });

  describe('the page', () => {
    it('serves the page, its script and style with the strict CSP, framing refused', async () => {
      for (const [path, type] of [
        ['/admin', 'text/html'],
        ['/admin/', 'text/html'],
        ['/admin/app.js', 'text/javascript'],
        ['/admin/app.css', 'text/css'],
      ] as const) {
        const res = await fetch(`${stack.url}${path}`);
        expect(res.status, path).toBe(200);
        expect(res.headers.get('content-type')).toBe(`${type}; charset=utf-8`);
        expect(res.headers.get('content-security-policy')).toBe(
          "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        );
        expect(res.headers.get('x-frame-options')).toBe('DENY');
      }
      const page = await (await fetch(`${stack.url}/admin`)).text();
      expect(page).not.toMatch(/<script>|<style>| style=| on[a-z]+=/i);
      expect(page).not.toMatch(/https?:\/\//);
      expect((await fetch(`${stack.url}/admin`, { method: 'POST' })).status).toBe(405);
    });

    it("takes no WebSocket upgrade under /admin (the path is the proxy's own while enabled)", async () => {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(`${stack.url}/admin/api/status`, {
          headers: {
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-version': '13',
            'sec-websocket-key': randomBytes(16).toString('base64'),
            authorization: `Bearer ${ADMIN_TOKEN}`,
          },
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('upgrade', () => reject(new Error('the upgrade was accepted')));
        req.on('error', reject);
        req.end();
      });
      expect(status).toBe(404);
    });
  });

  describe('signing keys', () => {
    interface KeysView {
      active: { kid: string; activated_at: string };
      next: null | { kid: string; signs_from: string };
      retired: Array<{ kid: string; published_until: string }>;
      rotation_days: number;
    }
    const kidOf = (token: string): string =>
      (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid;
    const jwksKids = async (): Promise<string[]> =>
      ((await (await fetch(`${stack.url}/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys.map(
        (k) => k.kid,
      );

    it('shows the active key and the schedule; "rotate now" signs with a new key at once, the old one still verifies', async () => {
      const user = await connectMcpClient(stack.url, as('erin'));
      const before = await json<KeysView>('/admin/api/signing-keys');
      expect(before.active.kid).toBe(kidOf(user.accessToken));
      expect(before.next).toBeNull();
      expect(before.rotation_days).toBe(30);

      const rotated = await json<KeysView & { rotated: string }>('/admin/api/signing-keys', {
        method: 'POST',
      });
      expect(rotated.rotated).toBe('signing_key');
      expect(rotated.active.kid).not.toBe(before.active.kid);
      expect(rotated.retired.map((k) => k.kid)).toContain(before.active.kid);
      // Published when it signs, the old key too, until every token it signed has expired.
      expect(await jwksKids()).toEqual(expect.arrayContaining([rotated.active.kid, before.active.kid]));
      expect((await whoami(user.client)).user).toBe('erin');
      const fresh = (await (await refresh(stack.url, user)).json()) as { access_token: string };
      expect(kidOf(fresh.access_token)).toBe(rotated.active.kid);
      await user.client.close();
      const audited = stack.proxy.logs.find((l) => l.audit === 'admin_signing_key_rotated');
      expect(audited).toMatchObject({
        kid: rotated.active.kid,
        previous_kid: before.active.kid,
        admin: 'token',
      });
    });

    it('is for admins only, and takes GET and POST', async () => {
      expect((await admin('/admin/api/signing-keys', { method: 'POST', as: bobJar })).status).toBe(403);
      expect((await admin('/admin/api/signing-keys', { method: 'POST', as: 'none' })).status).toBe(401);
      const put = await admin('/admin/api/signing-keys', { method: 'PUT' });
      expect(put.status).toBe(405);
      expect(put.headers.get('allow')).toBe('GET, POST');
      expect((await admin('/admin/api/signing-keys/x')).status).toBe(404);
    });
  });

  it('never puts a secret in a response or a log line', () => {
    const secrets = [ADMIN_TOKEN, carol.accessToken, carol.refreshToken];
    for (const jar of [adminJar, bobJar, carol.jar]) secrets.push(sessionIdOf(jar, stack.url));
    const everything = bodies.join('\n');
    const logs = stack.proxy.logText();
    for (const secret of secrets) {
      expect(everything).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
    // (`"refresh_token":true` in a token_issued audit event says one was issued, not which.)
    expect(everything).not.toMatch(/secret_hash|client_secret|"refresh_token":"|"access_token":"/);
  });
});

describe('with ADMIN_ENABLED off, /admin is a path like any other', () => {
  let stack: OidcStack;
  beforeAll(async () => {
    stack = await startOidcStack({ ADMIN_TOKEN });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('needs a login and is then forwarded to the backend; the admin token means nothing', async () => {
    const anonymous = await fetch(`${stack.url}/admin/api/sessions`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toContain('resource_metadata=');
    const page = await fetch(`${stack.url}/admin`, { headers: { accept: 'text/html' }, redirect: 'manual' });
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toBe('/login?rd=%2Fadmin');
    const jar = await signInThroughProxy(stack.url, alice);
    const forwarded = await fetch(`${stack.url}/admin/api/sessions?q=x`, {
      headers: { cookie: jar.get(stack.url) },
    });
    expect(forwarded.status).toBe(200);
    expect(((await forwarded.json()) as { url: string }).url).toBe('/admin/api/sessions?q=x');
  });
});

describe('the admin API in bypass mode', () => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await startTestProxy({
      ADMIN_ENABLED: 'true',
      ADMIN_TOKEN,
      PROXY_TARGET_URL: 'http://127.0.0.1:9',
    });
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('reports status with the token; there are no sessions, clients or tokens to list', async () => {
    const headers = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const status = (await (await fetch(`${proxy.url}/admin/api/status`, { headers })).json()) as Status;
    expect(status).toMatchObject({ auth_mode: 'bypass', store: null, identity_provider: null });
    expect(status.upstream).toMatchObject({ target: 'http://127.0.0.1:9/', status: 'unhealthy' });
    const sessions = await fetch(`${proxy.url}/admin/api/sessions`, { headers });
    expect(sessions.status).toBe(404);
    expect(((await sessions.json()) as { error_description: string }).error_description).toContain('bypass');
    expect((await fetch(`${proxy.url}/admin/api/status`)).status).toBe(401);
  });
});

describe('the admin API on a shared Redis store (two instances)', () => {
  let redis: RedisServer;
  let stack: OidcStack;
  let second: TestProxy;
  const secret = randomBytes(32).toString('base64url');

  beforeAll(async () => {
    redis = await startRedisServer(await freePort());
    const shared = {
      ADMIN_ENABLED: 'true',
      ADMIN_TOKEN,
      SESSION_STORE: 'redis',
      REDIS_URL: redis.url,
      SESSION_SECRET: secret,
    };
    stack = await startOidcStack(shared, { users: USERS }, startMcpServer);
    // The same public URL and store: every token and session of the first instance works here.
    second = await startTestProxy({
      AUTH_MODE: 'oidc',
      PUBLIC_URL: stack.url,
      PROXY_TARGET_URL: stack.backend.url,
      OIDC_DISCOVERY_URL: `${stack.idp.issuer}/.well-known/openid-configuration`,
      OIDC_CLIENT_ID: 'mcp-oidc-proxy',
      OIDC_CLIENT_SECRET: 'proxy-secret-for-tests-only',
      ...shared,
    });
  });
  afterAll(async () => {
    await second?.close();
    await stack?.close();
    await redis?.stop();
  });

  it('lists what the store holds from either instance, and a revocation on one holds on the other at once', async () => {
    const carol = await connectMcpClient(stack.url, as('carol'));
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const list = async (base: string, what: string) =>
      (await (await fetch(`${base}/admin/api/${what}?user=carol`, { headers: auth })).json()) as Listing;
    for (const base of [stack.url, second.url]) {
      expect((await list(base, 'sessions')).total, base).toBe(1);
      expect((await list(base, 'tokens')).total, base).toBe(1);
    }
    const status = (await (
      await fetch(`${second.url}/admin/api/status`, { headers: auth })
    ).json()) as Status;
    expect(status.store).toMatchObject({ kind: 'redis', status: 'healthy', active_sessions: 1 });

    expect((await mcpRequest(second.url, carol.accessToken)).status).toBe(200);
    const res = await fetch(`${stack.url}/admin/api/users/carol`, { method: 'DELETE', headers: auth });
    expect(res.status).toBe(200);
    expect((await mcpRequest(second.url, carol.accessToken)).status).toBe(401);
    expect((await refresh(second.url, carol)).status).toBe(400);
    expect((await list(second.url, 'sessions')).total).toBe(0);
    await carol.client.close();
  });
});
