import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { waitFor } from '../helpers/servers.js';

const alice = { username: 'alice', password: 'alice-password' };
const bob = { username: 'bob', password: 'bob-password' };

interface Echo {
  url: string;
  headers: Record<string, string>;
}

describe('browser login through a real OIDC provider', () => {
  let stack: OidcStack;

  beforeAll(async () => {
    stack = await startOidcStack({ ALLOWED_DOMAINS: 'example.com' });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('answers a non-browser request without a session with 401 and the resource metadata challenge', async () => {
    const res = await fetch(`${stack.url}/mcp`, { method: 'POST', headers: { accept: 'application/json' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="${stack.url}/.well-known/oauth-protected-resource/mcp", scope="mcp"`,
    );
    expect(((await res.json()) as { error: string }).error).toBe('unauthorized');
  });

  it('redirects browser navigation to /login with the original path, same origin', async () => {
    const res = await fetch(`${stack.url}/some/page?x=1`, {
      headers: { accept: 'text/html' },
      redirect: 'manual',
    });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/login?rd=%2Fsome%2Fpage%3Fx%3D1');
  });

  it('logs in, lands on the original URL, and the backend sees who the user is (never the cookie)', async () => {
    const jar = new CookieJar();
    const result = await loginThroughBrowserless(`${stack.url}/some/page?x=1`, alice, { jar });
    expect(result.status).toBe(200);
    expect(new URL(result.finalUrl).pathname).toBe('/some/page');
    const echo = JSON.parse(result.body) as Echo;
    expect(echo.url).toBe('/some/page?x=1');
    expect(echo.headers['x-forwarded-user']).toBe('alice');
    expect(echo.headers['x-forwarded-email']).toBe('alice@example.com');
    expect(echo.headers['x-forwarded-groups']).toBe('engineering,mcp-users');
    expect(echo.headers.cookie ?? '').not.toContain('mcp_oidc_proxy');
    expect(echo.headers.authorization).toBeUndefined();

    // The session now serves non-browser requests too.
    const api = await fetch(`${stack.url}/mcp`, { headers: { cookie: jar.get(new URL(stack.url)) } });
    expect(api.status).toBe(200);

    await waitFor(
      () => stack.proxy.logs.some((l) => l.audit === 'login_success'),
      2000,
      'audit login_success',
    );
    const audit = stack.proxy.logs.find((l) => l.audit === 'login_success');
    expect(audit).toMatchObject({ sub: 'alice', email: 'alice@example.com', provider: 'generic' });
  });

  it('refuses a user outside the allow-list with a 403 page and forwards nothing', async () => {
    const before = stack.proxy.logs.filter((l) => l.msg === 'request' && l.route === 'proxied').length;
    const result = await loginThroughBrowserless(`${stack.url}/private`, bob);
    expect(result.status).toBe(403);
    expect(result.body).toContain('Access denied');
    expect(result.body).toContain('bob@other.org');
    // The way out is another sign-in that makes the provider ask for credentials again.
    expect(result.body).toContain('href="/login?prompt=login"');
    const again = await fetch(`${stack.url}/login?prompt=login`, { redirect: 'manual' });
    expect(new URL(again.headers.get('location') as string).searchParams.get('prompt')).toBe('login');
    await waitFor(
      () => stack.proxy.logs.some((l) => l.audit === 'access_denied'),
      2000,
      'audit access_denied',
    );
    const forwarded = stack.proxy.logs.filter(
      (l) => l.msg === 'request' && l.route === 'proxied' && l.upstream_status,
    );
    expect(forwarded.length).toBeLessThanOrEqual(before);
  });

  it('logs out: the session ends and the provider session is ended too', async () => {
    const jar = new CookieJar();
    await loginThroughBrowserless(`${stack.url}/`, alice, { jar });
    const cookie = jar.get(new URL(stack.url));
    expect((await fetch(`${stack.url}/x`, { headers: { cookie } })).status).toBe(200);
    const out = await fetch(`${stack.url}/logout`, { headers: { cookie }, redirect: 'manual' });
    expect(out.status).toBe(302);
    expect(out.headers.get('location')).toContain(`${stack.idp.issuer}/`);
    expect(out.headers.getSetCookie().join('\n')).toMatch(/mcp_oidc_proxy=; .*Max-Age=0/);
    // The old cookie no longer works, even if the browser kept it.
    expect((await fetch(`${stack.url}/x`, { headers: { cookie } })).status).toBe(401);
  });
});
