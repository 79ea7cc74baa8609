/**
 * A Redis holding state sealed with another SESSION_SECRET: a restart with a new secret, and an
 * instance still running with the old one. Every endpoint answers cleanly (a new login,
 * invalid_grant, 503 temporarily_unavailable), never 500; the start says what it found.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CookieJar } from '../helpers/headless-login.js';
import { type ConnectedMcpClient, connectMcpClient, REDIRECT_URL } from '../helpers/mcp-oauth-client.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, oidcProxyEnv, startOidcStack } from '../helpers/oidc-stack.js';
import { type RedisServer, startRedisServer, stopAllRedisServers } from '../helpers/redis-server.js';
import { freePort, startTestProxy, type TestProxy } from '../helpers/servers.js';

const SECRET_A = 'first-secret-first-secret-first-secret-01';
const SECRET_B = 'second-secret-second-secret-second-secret';

interface OAuthBody {
  error?: string;
  access_token?: string;
}

function refresh(url: string, user: ConnectedMcpClient): Promise<Response> {
  return fetch(`${url}/token`, {
    method: 'POST',
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: user.refreshToken,
      client_id: user.clientId,
    }),
  });
}

function kidOf(token: string): string {
  return (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid;
}

async function jwksKids(url: string): Promise<string[]> {
  const jwks = (await (await fetch(`${url}/jwks.json`)).json()) as { keys: Array<{ kid: string }> };
  return jwks.keys.map((k) => k.kid);
}

describe('a Redis holding state sealed with another SESSION_SECRET', () => {
  let redis: RedisServer;
  let stack: OidcStack | undefined;
  const others: TestProxy[] = [];
  const clients: ConnectedMcpClient[] = [];

  beforeAll(async () => {
    redis = await startRedisServer(await freePort());
  });
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.client.close();
    for (const p of others.splice(0)) await p.close();
    await stack?.close();
    stack = undefined;
  });
  afterAll(async () => {
    await stopAllRedisServers();
  });

  const env = (secret: string, prefix: string) => ({
    SESSION_STORE: 'redis',
    REDIS_URL: redis.url,
    SESSION_SECRET: secret,
    REDIS_KEY_PREFIX: prefix,
  });

  async function connect(url: string): Promise<ConnectedMcpClient> {
    const connected = await connectMcpClient(url, undefined, { jar: new CookieJar() });
    clients.push(connected);
    return connected;
  }

  /** The proxy of `stack` again, on its port (the IdP knows its callback), with other settings. */
  async function restart(s: OidcStack, settings: Record<string, string>): Promise<TestProxy> {
    await s.proxy.close();
    const proxy = await startTestProxy({
      ...oidcProxyEnv(s.idp, s.url),
      PROXY_TARGET_URL: s.backend.url,
      ...settings,
    });
    others.push(proxy);
    return proxy;
  }

  it('after a restart with a new secret: old refresh token invalid_grant, old cookie a new login, old bearer valid until it expires, new logins get tokens', async () => {
    stack = await startOidcStack(env(SECRET_A, 'restart:'), {}, startMcpServer);
    const before = await connect(stack.url);
    const cookie = before.jar
      .list(stack.url)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
    const restarted = await restart(stack, env(SECRET_B, 'restart:'));
    expect(restarted.logs.find((l) => l.problem === 'STORE_SEALED_WITH_ANOTHER_SECRET')).toMatchObject({
      level: 'error',
      key_prefix: 'restart:',
    });

    const refused = await refresh(stack.url, before);
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as OAuthBody).error).toBe('invalid_grant');

    // The browser session cannot be opened: a new login, for a page and for /authorize alike.
    const page = await fetch(`${stack.url}/page`, {
      headers: { cookie, accept: 'text/html' },
      redirect: 'manual',
    });
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toBe('/login?rd=%2Fpage');
    const authorize = new URL(`${stack.url}/authorize`);
    for (const [k, v] of Object.entries({
      response_type: 'code',
      client_id: before.clientId,
      redirect_uri: REDIRECT_URL,
      code_challenge: 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
      code_challenge_method: 'S256',
    }))
      authorize.searchParams.set(k, v);
    const authz = await fetch(authorize, { headers: { cookie }, redirect: 'manual' });
    expect(authz.status).toBe(302);
    expect(authz.headers.get('location')).toMatch(/^\/login\?rd=/);

    // The old access token was signed with a key that is only retired: it works until it expires.
    expect((await before.client.listTools()).tools.length).toBeGreaterThan(0);

    // A new login gets tokens signed with a new key; the old key is still published beside it.
    const after = await connect(stack.url);
    expect(kidOf(after.accessToken)).not.toBe(kidOf(before.accessToken));
    expect(await jwksKids(stack.url)).toEqual([kidOf(after.accessToken), kidOf(before.accessToken)]);
    expect(restarted.logs.find((l) => l.msg === 'token signing key rotated')).toMatchObject({
      reason: 'unreadable',
    });
    expect(restarted.logs.some((l) => l.level === 'error' && l.path === '/token')).toBe(false);
  });

  it('an instance still on the old secret answers 503 temporarily_unavailable at /token, not 500, and does not take the key back', async () => {
    stack = await startOidcStack(env(SECRET_A, 'mixed:'), {}, startMcpServer);
    const old = await connect(stack.url);
    // Another deployment (or a half-done secret change) starts on the same prefix with secret B.
    const other = await startOidcStack(env(SECRET_B, 'mixed:'), {}, startMcpServer);
    try {
      const onOther = await connect(other.url);
      expect(kidOf(onOther.accessToken)).not.toBe(kidOf(old.accessToken));

      const res = await refresh(stack.url, old);
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).not.toBeNull();
      expect(((await res.json()) as OAuthBody).error).toBe('temporarily_unavailable');
      expect(stack.proxy.logs.find((l) => l.msg === 'cannot sign tokens')).toMatchObject({
        problem: 'SIGNING_KEY_UNREADABLE',
      });
      expect(stack.proxy.logText()).not.toContain(SECRET_B);
      // The other deployment keeps its key: the stale instance did not replace it.
      expect((await refresh(other.url, onOther)).status).toBe(200);
      expect((await jwksKids(other.url))[0]).toBe(kidOf(onOther.accessToken));
    } finally {
      await other.close();
    }
  });
});
