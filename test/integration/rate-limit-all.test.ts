import { createServer, type IncomingMessage } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { freePort, type Listening, listen, startTestProxy, type TestProxy } from '../helpers/servers.js';

const alice = { username: 'alice', password: 'alice-password' };
const bob = { username: 'bob', password: 'bob-password' };

interface CountingBackend extends Listening {
  /** One entry per request the backend received: the user it was forwarded for, or `anonymous`. */
  hits: string[];
  count(user: string): number;
}

/** A backend that answers 200 and records who every request it received was for. */
async function startCountingBackend(): Promise<CountingBackend> {
  const hits: string[] = [];
  const listening = await listen(
    createServer((req: IncomingMessage, res) => {
      const user = req.headers['x-forwarded-user'];
      hits.push(typeof user === 'string' ? user : 'anonymous');
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ url: req.url }));
      });
    }),
  );
  return { ...listening, hits, count: (user) => hits.filter((h) => h === user).length };
}

async function expectRateLimited(res: Response): Promise<void> {
  expect(res.status).toBe(429);
  const retryAfter = Number(res.headers.get('retry-after'));
  expect(Number.isInteger(retryAfter)).toBe(true);
  expect(retryAfter).toBeGreaterThanOrEqual(1);
  expect(retryAfter).toBeLessThanOrEqual(60);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  expect(res.headers.get('cache-control')).toBe('no-store');
  expect(res.headers.get('x-request-id')).toBeTruthy();
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  const body = (await res.json()) as Record<string, unknown>;
  expect(body).toEqual({
    error: 'rate_limited',
    error_description: `Too many requests; retry after ${retryAfter} s.`,
    request_id: res.headers.get('x-request-id'),
  });
}

describe('RATE_LIMIT_PER_MINUTE per user, through the real OIDC login', () => {
  let stack: OidcStack;
  let backend: CountingBackend;
  const jars = { alice: new CookieJar(), bob: new CookieJar() };

  beforeAll(async () => {
    stack = await startOidcStack({ RATE_LIMIT_PER_MINUTE: '4' }, {}, async () => {
      backend = await startCountingBackend();
      return backend;
    });
    // The login's /login and /callback spend the login budget, not this one; landing on `/`
    // is the user's first request.
    for (const [user, jar] of [
      [alice, jars.alice],
      [bob, jars.bob],
    ] as const) {
      const landed = await loginThroughBrowserless(`${stack.url}/login?rd=%2F`, user, { jar });
      expect(landed.status).toBe(200);
    }
  });
  afterAll(async () => {
    await stack?.close();
  });

  const as = (jar: CookieJar, path = '/mcp'): Promise<Response> =>
    fetch(`${stack.url}${path}`, { headers: { cookie: jar.get(stack.url), accept: 'application/json' } });

  it('gives every user a budget of their own, and forwards nothing over it', async () => {
    expect(backend.count('alice')).toBe(1);
    expect(backend.count('bob')).toBe(1);
    for (let i = 0; i < 3; i++) expect((await as(jars.alice)).status).toBe(200);
    await expectRateLimited(await as(jars.alice));
    await expectRateLimited(await as(jars.alice, '/other/path'));
    expect(backend.count('alice')).toBe(4);

    // Bob's budget is untouched by Alice's, though both come from the same address.
    for (let i = 0; i < 3; i++) expect((await as(jars.bob)).status).toBe(200);
    await expectRateLimited(await as(jars.bob));
    expect(backend.count('bob')).toBe(4);

    // Monitoring is never limited.
    expect((await fetch(`${stack.url}/health`)).status).toBe(200);
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metrics).toMatch(
      /mcp_oidc_proxy_http_requests_total\{method="GET",route="mcp",status="429"\} [1-9]/,
    );
  });

  it('counts requests without a session against the client IP, separately from the users', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      statuses.push((await fetch(`${stack.url}/mcp`, { headers: { accept: 'application/json' } })).status);
    }
    expect(statuses).toEqual([401, 401, 401, 401, 429]);
    expect(backend.count('anonymous')).toBe(0);
    // A forged session cookie is still anonymous.
    await expectRateLimited(
      await fetch(`${stack.url}/mcp`, { headers: { cookie: 'mcp_oidc_proxy=forged.x' } }),
    );
    // Browser navigations get the 429 instead of the login redirect.
    await expectRateLimited(
      await fetch(`${stack.url}/private`, { headers: { accept: 'text/html' }, redirect: 'manual' }),
    );
    const line = stack.proxy.logs.find(
      (l) => l.msg === 'request' && l.status === 429 && l.route === 'proxied',
    );
    expect(line?.outcome).toBe('rate_limited');
  });
});

describe('which routes spend which budget', () => {
  let stack: OidcStack;

  beforeAll(async () => {
    stack = await startOidcStack({
      RATE_LIMIT_PER_MINUTE: '3',
      AUTH_RATE_LIMIT_PER_MINUTE: '2',
      TRUSTED_PROXIES: '127.0.0.1',
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  const from = (ip: string, path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${stack.url}${path}`, {
      redirect: 'manual',
      ...init,
      headers: { 'x-forwarded-for': ip, ...(init.headers as Record<string, string>) },
    });

  it.each([
    ['/login', 'GET'],
    ['/callback', 'GET'],
    ['/authorize', 'GET'],
    ['/token', 'POST'],
    ['/register', 'POST'],
    ['/revoke', 'POST'],
  ])('%s spends AUTH_RATE_LIMIT_PER_MINUTE per client IP, whatever the method', async (path, method) => {
    const ip = `198.51.100.${10 + ['/login', '/callback', '/authorize', '/token', '/register', '/revoke'].indexOf(path)}`;
    // A wrong method is a request too: it spends the budget before it is refused.
    const wrong = method === 'GET' ? 'PUT' : 'GET';
    expect((await from(ip, path, { method: wrong })).status).toBe(405);
    expect((await from(ip, path, { method, body: method === 'POST' ? '' : undefined })).status).not.toBe(429);
    await expectRateLimited(await from(ip, path, { method }));
    // ...and never the per-user budget: the same client still has all of that.
    for (let i = 0; i < 3; i++) {
      expect((await from(ip, '/mcp', { headers: { accept: 'application/json' } })).status).toBe(401);
    }
    await expectRateLimited(await from(ip, '/mcp'));
  });

  it('logout, discovery and JWKS spend the client IP budget of RATE_LIMIT_PER_MINUTE', async () => {
    const ip = '198.51.100.30';
    expect((await from(ip, '/.well-known/oauth-authorization-server')).status).toBe(200);
    expect((await from(ip, '/jwks.json')).status).toBe(200);
    expect((await from(ip, '/logout')).status).toBe(200);
    await expectRateLimited(await from(ip, '/.well-known/oauth-protected-resource/mcp'));
    // /health and /metrics are for monitoring: never limited.
    for (let i = 0; i < 5; i++) {
      expect((await from(ip, '/health')).status).toBe(200);
      expect((await from(ip, '/metrics')).status).toBe(200);
    }
  });
});

describe('RATE_LIMIT_PER_MINUTE per client IP when anonymous (bypass mode)', () => {
  let backend: CountingBackend;
  let proxy: TestProxy | undefined;

  beforeAll(async () => {
    backend = await startCountingBackend();
  });
  afterEach(async () => {
    await proxy?.close();
    proxy = undefined;
    backend.hits.length = 0;
  });
  afterAll(async () => {
    await backend.close();
  });

  it('does not believe X-Forwarded-For from a peer that is not a trusted proxy', async () => {
    proxy = await startTestProxy({
      PROXY_TARGET_URL: backend.url,
      RATE_LIMIT_PER_MINUTE: '3',
      TRUSTED_PROXIES: '10.0.0.0/8',
    });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      // A new made-up client address each time: ignored, the peer (127.0.0.1) is the client.
      const res = await fetch(`${proxy.url}/api`, {
        headers: { 'x-forwarded-for': `203.0.113.${i}`, 'cf-connecting-ip': `203.0.113.${i}` },
      });
      statuses.push(res.status);
      if (res.status === 429) await expectRateLimited(res);
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(backend.hits).toHaveLength(3);
  });

  it('counts each client a trusted proxy reports separately', async () => {
    proxy = await startTestProxy({
      PROXY_TARGET_URL: backend.url,
      RATE_LIMIT_PER_MINUTE: '2',
      TRUSTED_PROXIES: '127.0.0.1',
    });
    const from = (ip: string): Promise<number> =>
      fetch(`${proxy?.url}/api`, { headers: { 'x-forwarded-for': ip } }).then((r) => r.status);
    expect([await from('203.0.113.1'), await from('203.0.113.1'), await from('203.0.113.1')]).toEqual([
      200, 200, 429,
    ]);
    expect([await from('203.0.113.2'), await from('203.0.113.2')]).toEqual([200, 200]);
    expect(backend.hits).toHaveLength(4);
  });

  it('counts an IPv6 client by its /64: other addresses of the same network share the budget', async () => {
    proxy = await startTestProxy({
      PROXY_TARGET_URL: backend.url,
      RATE_LIMIT_PER_MINUTE: '2',
      TRUSTED_PROXIES: '127.0.0.1',
    });
    const from = (ip: string): Promise<number> =>
      fetch(`${proxy?.url}/api`, { headers: { 'x-forwarded-for': ip } }).then((r) => r.status);
    // Three addresses of 2001:db8:1:2::/64, as an attacker rotating through its own network would.
    expect([
      await from('2001:db8:1:2::1'),
      await from('2001:db8:1:2:ffff:ffff:ffff:fffe'),
      await from('2001:DB8:1:2:0:0:0:9'),
    ]).toEqual([200, 200, 429]);
    // The neighbouring /64 is another subscriber.
    expect(await from('2001:db8:1:3::1')).toBe(200);
    expect(backend.hits).toHaveLength(3);
  });

  it('counts WebSocket upgrades, and refuses one over the limit with 429 before reaching the backend', async () => {
    const wsBackend = await listen(createServer());
    const wss = new WebSocketServer({ server: wsBackend.server });
    let upgrades = 0;
    wss.on('connection', (socket) => {
      upgrades++;
      socket.on('message', (data) => socket.send(data));
    });
    proxy = await startTestProxy({ PROXY_TARGET_URL: wsBackend.url, RATE_LIMIT_PER_MINUTE: '2' });
    const wsUrl = `${proxy.url.replace('http', 'ws')}/ws`;
    try {
      for (let i = 0; i < 2; i++) {
        const ws = new WebSocket(wsUrl);
        await new Promise<void>((resolve, reject) => {
          ws.once('open', () => ws.send('ping'));
          ws.once('message', () => resolve());
          ws.once('error', reject);
        });
        ws.close();
      }
      const refused = await new Promise<{
        status: number;
        headers: IncomingMessage['headers'];
        body: string;
      }>((resolve, reject) => {
        const ws = new WebSocket(wsUrl);
        ws.once('open', () => reject(new Error('the third upgrade was let through')));
        ws.once('unexpected-response', (_req, res) => {
          let body = '';
          res.on('data', (c: Buffer) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
        ws.once('error', () => {});
      });
      expect(refused.status).toBe(429);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(refused.body)).toMatchObject({ error: 'rate_limited' });
      expect(upgrades).toBe(2);
      // Plain requests share the same budget.
      await expectRateLimited(await fetch(`${proxy.url}/api`));
    } finally {
      wss.close();
      await wsBackend.close();
    }
  });

  it('costs nothing when 0: no limit at all', async () => {
    proxy = await startTestProxy({ PROXY_TARGET_URL: backend.url, RATE_LIMIT_PER_MINUTE: '0' });
    for (let i = 0; i < 30; i++) expect((await fetch(`${proxy.url}/api`)).status).toBe(200);
    expect(backend.hits).toHaveLength(30);
  });
});

describe('RATE_LIMIT_PER_MINUTE shared through Redis (SESSION_STORE=redis)', () => {
  let redis: RedisServer;
  let stack: OidcStack;
  let second: TestProxy;
  let backend: CountingBackend;
  const jar = new CookieJar();

  beforeAll(async () => {
    redis = await startRedisServer(await freePort());
    const shared = {
      SESSION_STORE: 'redis',
      REDIS_URL: redis.url,
      SESSION_SECRET: 'rate-limit-shared-secret-0123456789abcdef',
      RATE_LIMIT_PER_MINUTE: '5',
    };
    stack = await startOidcStack(shared, {}, async () => {
      backend = await startCountingBackend();
      return backend;
    });
    // A second instance on the same Redis and backend: the session made on the first works here.
    second = await startTestProxy({
      ...shared,
      AUTH_MODE: 'oidc',
      PROXY_TARGET_URL: backend.url,
      OIDC_DISCOVERY_URL: `${stack.idp.issuer}/.well-known/openid-configuration`,
      OIDC_CLIENT_ID: 'mcp-oidc-proxy',
      OIDC_CLIENT_SECRET: 'proxy-secret-for-tests-only',
    });
    expect((await loginThroughBrowserless(`${stack.url}/login?rd=%2F`, alice, { jar })).status).toBe(200);
  });
  afterAll(async () => {
    await second?.close();
    await stack?.close();
    await redis?.stop();
  });

  it('two instances spend one budget per user', async () => {
    const cookie = jar.get(stack.url);
    const on = (url: string): Promise<Response> => fetch(`${url}/mcp`, { headers: { cookie } });
    // One request was the landing page after the login (on the first instance).
    expect((await on(second.url)).status).toBe(200);
    expect((await on(stack.url)).status).toBe(200);
    expect((await on(second.url)).status).toBe(200);
    expect((await on(stack.url)).status).toBe(200);
    await expectRateLimited(await on(second.url));
    await expectRateLimited(await on(stack.url));
    expect(backend.count('alice')).toBe(5);
  });

  it('two instances spend one budget per anonymous client IP', async () => {
    const statuses: number[] = [];
    for (const url of [stack.url, second.url, stack.url, second.url, stack.url, second.url]) {
      statuses.push((await fetch(`${url}/mcp`, { headers: { accept: 'application/json' } })).status);
    }
    expect(statuses).toEqual([401, 401, 401, 401, 401, 429]);
  });

  it('keeps the counters in Redis under the rate limit prefix', async () => {
    const { Redis } = await import('ioredis');
    const client = new Redis(redis.url);
    try {
      expect(Number(await client.get('mcp-oidc-proxy:rl:req:user:alice'))).toBeGreaterThanOrEqual(6);
      expect(Number(await client.get('mcp-oidc-proxy:rl:req:ip:127.0.0.1'))).toBe(6);
    } finally {
      client.disconnect();
    }
  });
});
