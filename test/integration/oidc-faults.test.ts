/**
 * Faults around the login: the identity provider unreachable at start or gone in the middle of
 * a login, and the session store (a Redis of the test's own) going away and coming back. In
 * every one the proxy stays up, says what is wrong (/health, a 503 page or JSON), and never
 * lets a request reach the backend without a valid session.
 */

import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type DevIdp, startDevIdp } from '../../src/demo/dev-idp.js';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { CLIENT_ID, CLIENT_SECRET } from '../helpers/oidc-stack.js';
import { onFreshPorts } from '../helpers/ports.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { type Listening, startBackend, startTestProxy, type TestProxy, waitFor } from '../helpers/servers.js';

const alice = { username: 'alice', password: 'alice-password' };

interface HealthReport {
  status: string;
  checks: {
    session_store: { status: string; active_sessions: number; error?: string };
    identity_provider?: { status: string; error?: string };
  };
}

/** An echo backend that counts what reaches it. */
async function startCountingBackend(): Promise<Listening & { requests: string[] }> {
  const requests: string[] = [];
  const listening = await startBackend((req: IncomingMessage, res: ServerResponse) => {
    requests.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ url: req.url, user: req.headers['x-forwarded-user'] ?? null }));
    });
  });
  return Object.assign(listening, { requests });
}

async function getHealth(url: string): Promise<{ status: number; report: HealthReport }> {
  const res = await fetch(`${url}/health`);
  return { status: res.status, report: (await res.json()) as HealthReport };
}

function idpClient(proxyOrigin: string) {
  return {
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [`${proxyOrigin}/callback`],
    post_logout_redirect_uris: [`${proxyOrigin}/logout`],
  };
}

function oidcEnv(proxyPort: number, backendUrl: string, discoveryUrl: string): Record<string, string> {
  return {
    AUTH_MODE: 'oidc',
    SERVER_PORT: String(proxyPort),
    PUBLIC_URL: `http://127.0.0.1:${proxyPort}`,
    PROXY_TARGET_URL: backendUrl,
    OIDC_DISCOVERY_URL: discoveryUrl,
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: CLIENT_SECRET,
  };
}

/** How many retries a 1 s, 2 s, 4 s, ... backoff has made by `elapsedMs` after the first attempt. */
function scheduledRetriesWithin(elapsedMs: number): number {
  let n = 0;
  for (let at = 1000, step = 1000; at <= elapsedMs; step = Math.min(step * 2, 30_000), at += step) n++;
  return n;
}

/** The requests an unauthenticated or broken caller can make; none may reach the backend. */
async function apiCall(url: string, cookie = ''): Promise<Response> {
  return fetch(`${url}/mcp`, {
    method: 'POST',
    headers: {
      accept: 'application/json',
      'content-type': 'application/json',
      ...(cookie ? { cookie } : {}),
    },
    body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
  });
}

async function browserGet(url: string, path: string, cookie = ''): Promise<Response> {
  return fetch(`${url}${path}`, {
    headers: { accept: 'text/html', ...(cookie ? { cookie } : {}) },
    redirect: 'manual',
  });
}

describe('identity provider and session store faults', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    // Last started, first stopped; every server and redis-server a test started goes.
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
  });

  async function backend(): Promise<Listening & { requests: string[] }> {
    const b = await startCountingBackend();
    cleanups.push(() => b.close());
    return b;
  }
  async function proxy(env: Record<string, string>): Promise<TestProxy> {
    const p = await startTestProxy(env);
    cleanups.push(() => p.close());
    return p;
  }
  async function idp(proxyOrigin: string, port = 0): Promise<DevIdp> {
    const i = await startDevIdp({ port, clients: [idpClient(proxyOrigin)] });
    cleanups.push(() => i.close());
    return i;
  }
  async function redis(port: number): Promise<RedisServer> {
    const r = await startRedisServer(port);
    cleanups.push(() => r.stop());
    return r;
  }

  it('starts unhealthy when the IdP is unreachable, refuses logins with a 503 page, and recovers by itself', async () => {
    const b = await backend();
    let started = 0;
    // Nothing listens on idpPort until the IdP is started on it below.
    const { p, idpPort, proxyOrigin } = await onFreshPorts(2, async ([idpPort, proxyPort]) => {
      started = Date.now();
      const p = await proxy(
        oidcEnv(proxyPort!, b.url, `http://127.0.0.1:${idpPort}/.well-known/openid-configuration`),
      );
      return { p, idpPort: idpPort!, proxyOrigin: `http://127.0.0.1:${proxyPort}` };
    });

    // Up, but unhealthy, and it says which part is down.
    const down = await getHealth(p.url);
    expect(down.status).toBe(503);
    expect(down.report.status).toBe('unhealthy');
    expect(down.report.checks.identity_provider?.status).toBe('unhealthy');
    expect(down.report.checks.identity_provider?.error).toMatch(/OIDC_DISCOVERY_URL/);

    // Users retrying the login meanwhile get a page saying why, every time.
    for (let i = 0; i < 5; i++) {
      const login = await browserGet(p.url, '/login?rd=%2F');
      expect(login.status).toBe(503);
      expect(login.headers.get('content-type')).toMatch(/^text\/html/);
      expect(login.headers.get('location')).toBeNull();
      expect(await login.text()).toMatch(/identity provider cannot be reached/i);
    }
    // Those retries did not make the proxy hammer the provider: its attempts (each logged) still
    // follow one backoff schedule, first at start, then 1 s, 3 s, 7 s, ... after it.
    const attempts = p.logs.filter((l) => /discovery failed/.test(String(l.msg))).length;
    expect(attempts).toBeGreaterThanOrEqual(1);
    expect(attempts).toBeLessThanOrEqual(1 + scheduledRetriesWithin(Date.now() - started));
    // No login, no backend: the MCP endpoint still challenges, browsers are sent to /login.
    const api = await apiCall(p.url);
    expect(api.status).toBe(401);
    expect(api.headers.get('www-authenticate')).toContain('resource_metadata=');
    const page = await browserGet(p.url, '/app');
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toBe('/login?rd=%2Fapp');
    expect(b.requests).toEqual([]);

    // The IdP appears on the address the proxy was given; the proxy finds it on its next retry
    // (backoff 1 s, 2 s, 4 s, ...: the failed /login attempts above must not have stretched it).
    await idp(proxyOrigin, idpPort);
    const idpUp = Date.now();
    await waitFor(
      async () => (await getHealth(p.url)).status === 200,
      10_000,
      'healthy after the IdP came up',
    );
    const elapsedSinceStart = idpUp - started;
    // The next scheduled attempt was at most one backoff step (<= the time already waited, + 1 s)
    // away; /health may add its 1 s cache.
    expect(Date.now() - idpUp).toBeLessThanOrEqual(elapsedSinceStart + 1000 + 1000 + 500);
    const healthy = await getHealth(p.url);
    expect(healthy.report.checks.identity_provider?.status).toBe('healthy');

    const jar = new CookieJar();
    const result = await loginThroughBrowserless(`${p.url}/after-login`, alice, { jar });
    expect(result.status).toBe(200);
    expect(JSON.parse(result.body)).toEqual({ url: '/after-login', user: 'alice' });
  });

  it('answers a callback it cannot redeem because the IdP went away with a 5xx page, and creates no session', async () => {
    const b = await backend();
    const { p, provider, proxyOrigin } = await onFreshPorts(1, async ([proxyPort]) => {
      const proxyOrigin = `http://127.0.0.1:${proxyPort}`;
      const provider = await idp(proxyOrigin);
      const p = await proxy(
        oidcEnv(proxyPort!, b.url, `${provider.issuer}/.well-known/openid-configuration`),
      );
      return { p, provider, proxyOrigin };
    });
    await waitFor(async () => (await getHealth(p.url)).status === 200, 10_000, 'proxy ready');

    // The user signs in at the IdP; the IdP's redirect back to /callback is held.
    const jar = new CookieJar();
    const held = await loginThroughBrowserless(`${p.url}/after-login`, alice, {
      jar,
      stopAt: (u) => u.origin === proxyOrigin && u.pathname === '/callback',
    });
    const callback = new URL(held.finalUrl);
    expect(callback.searchParams.get('code')).toBeTruthy();
    expect(callback.searchParams.get('state')).toBeTruthy();

    await provider.close();
    const res = await fetch(callback, {
      headers: { accept: 'text/html', cookie: jar.get(callback) },
      redirect: 'manual',
    });
    expect(res.status).toBeGreaterThanOrEqual(500);
    expect(res.status).toBeLessThan(600);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await res.text()).toMatch(/identity provider (cannot|could not) be reached/i);
    const sessionCookies = res.headers.getSetCookie().filter((c) => /^mcp_oidc_proxy=[^;]/.test(c));
    expect(sessionCookies).toEqual([]);

    await waitFor(
      async () => (await getHealth(p.url)).report.checks.session_store.active_sessions === 0,
      3000,
      'no session',
    );
    await waitFor(
      () => p.logs.some((l) => l.audit === 'login_failure' && l.reason === 'provider_unreachable'),
      2000,
      'audit login_failure',
    );
    expect(b.requests).toEqual([]);
  });

  it('answers 503 while Redis is down (never the backend), reports it in /health, and recovers when Redis returns', async () => {
    const b = await backend();
    const started = await onFreshPorts(2, async ([redisPort, proxyPort]) => {
      const store = await redis(redisPort!);
      const provider = await idp(`http://127.0.0.1:${proxyPort}`);
      const p = await proxy({
        ...oidcEnv(proxyPort!, b.url, `${provider.issuer}/.well-known/openid-configuration`),
        SESSION_STORE: 'redis',
        REDIS_URL: store.url,
        SESSION_SECRET: randomBytes(36).toString('base64url'),
      });
      return { store, p };
    });
    const { p } = started;
    let { store } = started;
    await waitFor(async () => (await getHealth(p.url)).status === 200, 10_000, 'proxy ready');

    const jar = new CookieJar();
    const first = await loginThroughBrowserless(`${p.url}/after-login`, alice, { jar });
    expect(first.status).toBe(200);
    const cookie = jar.get(p.url);
    expect((await apiCall(p.url, cookie)).status).toBe(200);
    const forwardedBefore = b.requests.length;

    await store.stop();

    const api = await apiCall(p.url, cookie);
    expect(api.status).toBe(503);
    expect(api.headers.get('content-type')).toMatch(/^application\/json/);
    expect(((await api.json()) as { error: string }).error).toBe('temporarily_unavailable');
    const page = await browserGet(p.url, '/app', cookie);
    expect(page.status).toBe(503);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toMatch(/session store is unavailable/i);
    // A new login cannot be recorded either: a page, not a redirect to the IdP.
    const login = await browserGet(p.url, '/login');
    expect(login.status).toBe(503);
    expect(login.headers.get('location')).toBeNull();

    await waitFor(async () => (await getHealth(p.url)).status === 503, 3000, '/health 503');
    const sick = await getHealth(p.url);
    expect(sick.report.checks.session_store.status).toBe('unhealthy');
    expect(sick.report.checks.session_store.error).toBeTruthy();
    expect(b.requests.length).toBe(forwardedBefore);

    // Redis returns (empty: it kept nothing); the same proxy serves again.
    store = await redis(store.port);
    await waitFor(
      async () => (await getHealth(p.url)).status === 200,
      10_000,
      '/health 200 after Redis returned',
    );
    expect((await getHealth(p.url)).report.checks.session_store).toEqual({
      status: 'healthy',
      active_sessions: 0,
    });
    // The session died with Redis's memory: 401, not the backend.
    expect((await apiCall(p.url, cookie)).status).toBe(401);
    expect(b.requests.length).toBe(forwardedBefore);

    const again = await loginThroughBrowserless(`${p.url}/after-login`, alice, { jar });
    expect(again.status).toBe(200);
    expect(JSON.parse(again.body)).toEqual({ url: '/after-login', user: 'alice' });
    expect((await apiCall(p.url, jar.get(p.url))).status).toBe(200);
  });
});
