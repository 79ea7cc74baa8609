/**
 * REDIS_KEY_PREFIX: two deployments on one Redis, with the same SESSION_SECRET so that only the
 * prefix keeps them apart, never see each other's sessions, clients, tokens or rate-limit budgets,
 * and every key either writes carries its prefix.
 */

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import {
  alice,
  type ConnectedMcpClient,
  connectMcpClient,
  initializeWithBearer,
} from '../helpers/mcp-oauth-client.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, oidcProxyEnv, startOidcStack } from '../helpers/oidc-stack.js';
import { type RedisServer, startRedisServer, stopAllRedisServers } from '../helpers/redis-server.js';
import { freePort, startTestProxy, type TestProxy } from '../helpers/servers.js';
import { scanKeys } from '../helpers/shared-redis.js';

const SECRET = 'one-secret-for-both-deployments-0123456789';

function token(url: string, params: Record<string, string>): Promise<Response> {
  return fetch(`${url}/token`, { method: 'POST', body: new URLSearchParams(params) });
}

/** What the proxy at `url` answers a bearer token on the MCP endpoint. */
async function bearerStatus(url: string, accessToken: string): Promise<number> {
  const res = await initializeWithBearer(url, accessToken);
  await res.arrayBuffer();
  return res.status;
}

describe('two deployments on one Redis with different REDIS_KEY_PREFIX', () => {
  let redis: RedisServer;
  let raw: Redis;
  let a: OidcStack;
  let b: OidcStack;
  const limited: TestProxy[] = [];
  let onA: ConnectedMcpClient;

  const env = (prefix: string) => ({
    SESSION_STORE: 'redis',
    REDIS_URL: redis.url,
    SESSION_SECRET: SECRET,
    REDIS_KEY_PREFIX: prefix,
  });

  beforeAll(async () => {
    redis = await startRedisServer(await freePort());
    raw = new Redis(redis.url);
    a = await startOidcStack(env('team-a:'), {}, startMcpServer);
    b = await startOidcStack(env('team-b:'), {}, startMcpServer);
    onA = await connectMcpClient(a.url);
  });
  afterAll(async () => {
    await onA?.client.close();
    for (const proxy of limited) await proxy.close();
    await a?.close();
    await b?.close();
    raw?.disconnect();
    await stopAllRedisServers();
  });

  it('a login on A is no session on B (same secret, same cookie name)', async () => {
    const jar = new CookieJar();
    // The MCP server behind A answers the page itself (404): the request got through the login.
    const login = await loginThroughBrowserless(`${a.url}/after-login`, alice, { jar });
    expect(new URL(login.finalUrl).origin).toBe(a.url);
    const session = jar.list(a.url).find((c) => c.name === 'mcp_oidc_proxy');
    expect(session).toBeDefined();
    const cookie = `mcp_oidc_proxy=${session!.value}`;
    const page = (url: string) =>
      fetch(`${url}/page`, { headers: { cookie, accept: 'text/html' }, redirect: 'manual' });
    const onA = await page(a.url);
    expect(onA.status).toBe(404);
    expect(onA.headers.get('location')).toBeNull();
    const onB = await page(b.url);
    expect(onB.status).toBe(302);
    expect(onB.headers.get('location')).toBe('/login?rd=%2Fpage');
  });

  it("a client registered at A is unknown at B, and A's tokens mean nothing there", async () => {
    expect(await bearerStatus(a.url, onA.accessToken)).toBe(200);
    expect(await bearerStatus(b.url, onA.accessToken)).toBe(401);
    const refreshOnB = await token(b.url, {
      grant_type: 'refresh_token',
      refresh_token: onA.refreshToken,
      client_id: onA.clientId,
    });
    expect(refreshOnB.status).toBe(401);
    expect(((await refreshOnB.json()) as { error: string }).error).toBe('invalid_client');
    // B publishes its own key only.
    const kids = async (url: string) =>
      ((await (await fetch(`${url}/jwks.json`)).json()) as { keys: Array<{ kid: string }> }).keys.map(
        (k) => k.kid,
      );
    const [kidsA, kidsB] = [await kids(a.url), await kids(b.url)];
    expect(kidsB.some((kid) => kidsA.includes(kid))).toBe(false);
  });

  it("B's rate-limit budget is untouched by A's traffic; an instance on A's prefix shares A's", async () => {
    const start = async (prefix: string): Promise<TestProxy> => {
      const proxy = await startTestProxy({
        ...oidcProxyEnv(a.idp, 'http://127.0.0.1:0'),
        SERVER_PORT: '0',
        PUBLIC_URL: 'http://127.0.0.1',
        PROXY_TARGET_URL: a.backend.url,
        ...env(prefix),
        AUTH_RATE_LIMIT_PER_MINUTE: '1',
      });
      limited.push(proxy);
      return proxy;
    };
    const [a1, b1, a2] = [await start('rl-a:'), await start('rl-b:'), await start('rl-a:')];
    const attempt = async (proxy: TestProxy) =>
      (await token(proxy.url, { grant_type: 'client_credentials' })).status;
    // An unknown client is invalid_client (401) when the budget allows the request at all.
    expect(await attempt(a1)).toBe(401);
    expect(await attempt(a1)).toBe(429);
    expect(await attempt(b1)).toBe(401); // its own budget of one, unspent
    expect(await attempt(a2)).toBe(429); // the same prefix: the budget A spent
  });

  it('writes no key without its prefix', async () => {
    const keys = await scanKeys(raw, '*');
    expect(keys.length).toBeGreaterThan(0);
    const prefixes = ['team-a:', 'team-b:', 'rl-a:', 'rl-b:'];
    expect(keys.filter((key) => !prefixes.some((p) => key.startsWith(p)))).toEqual([]);
    for (const p of prefixes)
      expect(
        keys.some((key) => key.startsWith(p)),
        p,
      ).toBe(true);
    expect(keys.some((key) => key.startsWith('team-a:rl:auth:'))).toBe(true);
  });
});
