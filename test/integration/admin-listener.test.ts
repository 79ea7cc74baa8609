/**
 * ADMIN_LISTEN: the admin surface on a listener of its own, against the real stack (dev OIDC
 * provider, proxy in oidc mode, a recording backend). The main listener's /admin is the proxy's
 * 404 and never reaches the backend; the admin listener serves the page and the API and nothing
 * else, only to its own Host and Origin; shutdown closes both listeners.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DEV_USERS } from '../../src/demo/dev-idp.js';
import { type CookieJar, signInThroughProxy } from '../helpers/headless-login.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type Listening, startBackend } from '../helpers/servers.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
const alice = { username: 'alice', password: 'alice-password' }; // in ADMIN_GROUPS (engineering)
const bob = { username: 'bob', password: 'bob-password' }; // signed in, not an admin
const carol = {
  username: 'carol',
  password: 'carol-password',
  email: 'carol@example.com',
  name: 'Carol',
  groups: ['mcp-users'],
};

describe('ADMIN_LISTEN: the admin surface on its own listener', () => {
  let stack: OidcStack;
  /** Every request path the backend received. */
  const seen: string[] = [];
  let adminUrl: string;
  let aliceJar: CookieJar;
  let bobJar: CookieJar;

  const recordingBackend = (): Promise<Listening> =>
    startBackend((req, res) => {
      seen.push(req.url ?? '');
      res.writeHead(200, { 'content-type': 'text/plain' }).end('from the backend');
    });

  beforeAll(async () => {
    stack = await startOidcStack(
      {
        ADMIN_ENABLED: 'true',
        ADMIN_TOKEN,
        ADMIN_GROUPS: 'engineering',
        ADMIN_LISTEN: '127.0.0.1:0',
      },
      { users: [...DEFAULT_DEV_USERS, carol] },
      recordingBackend,
    );
    const admin = stack.proxy.proxy.admin;
    if (!admin) throw new Error('the proxy started no admin listener');
    adminUrl = admin.url;
    aliceJar = await signInThroughProxy(stack.url, alice);
    bobJar = await signInThroughProxy(stack.url, bob);
  });
  afterAll(async () => {
    await stack?.close();
  });

  /**
   * A request to the admin listener as a browser would send it: the session cookie of the proxy's
   * host goes to every port of that host (cookies ignore ports).
   */
  const atAdmin = (
    path: string,
    options: { jar?: CookieJar; token?: boolean; method?: string; headers?: Record<string, string> } = {},
  ): Promise<Response> => {
    const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
    if (options.jar) headers.cookie = options.jar.get(stack.url);
    if (options.token) headers.authorization = `Bearer ${ADMIN_TOKEN}`;
    return fetch(`${adminUrl}${path}`, { method: options.method ?? 'GET', headers });
  };

  it('logs where the admin surface listens, at which origin', () => {
    const line = stack.proxy.logs.find((l) => l.msg === 'mcp-oidc-proxy listening');
    expect(line).toMatchObject({ admin_listen: new URL(adminUrl).host, admin_url: adminUrl });
  });

  it("answers /admin on the main listener with the proxy's 404, whoever asks, and forwards nothing", async () => {
    const before = seen.length;
    for (const path of ['/admin', '/admin/', '/admin/app.js', '/admin/api/status', '/admin/api/sessions']) {
      for (const headers of [
        { authorization: `Bearer ${ADMIN_TOKEN}` },
        { cookie: aliceJar.get(stack.url) },
        {} as Record<string, string>,
      ]) {
        const res = await fetch(`${stack.url}${path}`, {
          headers: { accept: 'application/json', ...headers },
        });
        expect(res.status, path).toBe(404);
        expect(await res.json()).toMatchObject({ error: 'not_found' });
      }
    }
    // A change too: nothing revoked, nothing forwarded.
    const del = await fetch(`${stack.url}/admin/api/users/alice`, {
      method: 'DELETE',
      headers: { cookie: aliceJar.get(stack.url), origin: stack.url },
    });
    expect(del.status).toBe(404);
    expect(seen.slice(before)).toEqual([]);
    // The rest of the main listener is as before: an admin's browser session reaches the backend.
    const proxied = await fetch(`${stack.url}/tools`, { headers: { cookie: aliceJar.get(stack.url) } });
    expect(await proxied.text()).toBe('from the backend');
  });

  it('serves the page and the API on the admin listener, to the token and to a member of ADMIN_GROUPS', async () => {
    const page = await atAdmin('/admin', { headers: { accept: 'text/html' } });
    expect(page.status).toBe(200);
    const html = await page.text();
    // Sign-in is the main listener's: the page links there.
    expect(html).toContain(`href="${stack.url}/login"`);
    expect(html).not.toContain('href="/login');

    const byToken = await atAdmin('/admin/api/status', { token: true });
    expect(byToken.status).toBe(200);
    expect(await byToken.json()).toMatchObject({ caller: { kind: 'token' } });

    const byCookie = await atAdmin('/admin/api/status', { jar: aliceJar });
    expect(byCookie.status).toBe(200);
    expect(await byCookie.json()).toMatchObject({ caller: { kind: 'session', email: 'alice@example.com' } });

    expect((await atAdmin('/admin/api/status', { jar: bobJar })).status).toBe(403);
    expect((await atAdmin('/admin/api/status')).status).toBe(401);
  });

  it('accepts a change made with the cookie from the admin origin only', async () => {
    const victim = await signInThroughProxy(stack.url, carol);
    const sessions = (await (await atAdmin('/admin/api/sessions', { token: true })).json()) as {
      sessions: Array<{ id: string; subject: string; email: string }>;
    };
    const session = sessions.sessions.find((s) => s.email === carol.email);
    if (!session) throw new Error("carol's session is not listed");

    // From the main origin (what a backend's page would send): refused, the session stays.
    const forged = await atAdmin(`/admin/api/sessions/${encodeURIComponent(session.id)}`, {
      jar: aliceJar,
      method: 'DELETE',
      headers: { origin: stack.url },
    });
    expect(forged.status).toBe(403);
    const stillThere = await fetch(`${stack.url}/tools`, { headers: { cookie: victim.get(stack.url) } });
    expect(stillThere.status).toBe(200);
    await stillThere.body?.cancel();

    const own = await atAdmin(`/admin/api/sessions/${encodeURIComponent(session.id)}`, {
      jar: aliceJar,
      method: 'DELETE',
      headers: { origin: adminUrl },
    });
    expect(own.status).toBe(200);
    await own.body?.cancel();
    const ended = await fetch(`${stack.url}/tools`, {
      headers: { cookie: victim.get(stack.url), accept: 'application/json' },
    });
    expect(ended.status).toBe(401);
    await ended.body?.cancel();
  });

  it('refuses reads from the main origin with the cookie too: the Origin is not the admin one', async () => {
    const res = await atAdmin('/admin/api/status', { jar: aliceJar, headers: { origin: stack.url } });
    expect(res.status).toBe(403);
    expect(await res.text()).not.toContain('alice@example.com');
  });

  it('serves nothing else: no backend, no login, no health; a foreign Host is refused (DNS rebinding)', async () => {
    const before = seen.length;
    for (const path of [
      '/',
      '/tools',
      '/login',
      '/health',
      '/mcp',
      '/.well-known/oauth-authorization-server',
    ]) {
      const res = await atAdmin(path, { jar: aliceJar, token: true });
      expect(res.status, path).toBe(404);
      await res.body?.cancel();
    }
    expect(seen.slice(before)).toEqual([]);

    const rebound = await new Promise<string>((resolve, reject) => {
      const { port } = new URL(adminUrl);
      const socket = connect(Number(port), '127.0.0.1', () => {
        socket.end(
          `GET /admin/api/status HTTP/1.1\r\nHost: attacker.example:${port}\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nConnection: close\r\n\r\n`,
        );
      });
      let text = '';
      socket.setEncoding('utf8').on('data', (chunk: string) => {
        text += chunk;
      });
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    expect(rebound).toMatch(/^HTTP\/1\.1 403 /);
  });

  it('closes both listeners at shutdown', async () => {
    const separate = await startOidcStack(
      { ADMIN_ENABLED: 'true', ADMIN_TOKEN, ADMIN_LISTEN: '127.0.0.1:0' },
      {},
      recordingBackend,
    );
    const admin = separate.proxy.proxy.admin!;
    expect(
      (await fetch(`${admin.url}/admin/api/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } }))
        .status,
    ).toBe(200);
    await separate.close();
    expect(admin.server.listening).toBe(false);
    expect(separate.proxy.proxy.server.listening).toBe(false);
    await expect(fetch(`${admin.url}/admin`)).rejects.toThrow();
  });
});
