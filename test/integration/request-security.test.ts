import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import type { AuthDecision, Authenticator } from '../../src/auth/authenticator.js';
import { loadConfig } from '../../src/config/load.js';
import { type RunningProxy, startProxy } from '../../src/server/app.js';
import { quietLogger } from '../helpers/log-capture.js';
import { hostOf, type RawResponse, rawGet, rawRequest, startRecordingEcho } from '../helpers/raw-http.js';
import {
  type Listening,
  startBackend,
  startEchoBackend,
  startTestProxy,
  type TestProxy,
  waitFor,
} from '../helpers/servers.js';

interface Echoed {
  method: string;
  url: string;
  headers: Record<string, string | string[]>;
  rawHeaders: string[];
}

/** Header names the echo backend received, folded the way lenient backends fold them. */
function receivedNames(echoed: Echoed): string[] {
  return echoed.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase().replaceAll('_', '-'));
}

function receivedValues(echoed: Echoed, name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < echoed.rawHeaders.length; i += 2) {
    if ((echoed.rawHeaders[i] as string).toLowerCase().replaceAll('_', '-') === name)
      out.push(echoed.rawHeaders[i + 1] as string);
  }
  return out;
}

const SECURITY_HEADERS = [
  'x-frame-options',
  'x-content-type-options',
  'x-xss-protection',
  'content-security-policy',
  'referrer-policy',
  'permissions-policy',
];

function expectSecurityHeaders(res: RawResponse): void {
  for (const name of SECURITY_HEADERS) expect(res.all(name), name).toHaveLength(1);
  expect(res.get('x-frame-options')).toBe('DENY');
  expect(res.get('x-content-type-options')).toBe('nosniff');
  expect(res.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
  expect(res.get('referrer-policy')).toBe('no-referrer');
}

describe('hop-by-hop headers', () => {
  let echo: Listening & { seen: string[] };
  let backend: Listening;
  let proxy: TestProxy;
  let proxyToBackend: TestProxy;

  beforeAll(async () => {
    echo = await startRecordingEcho();
    backend = await startBackend((_req, res) => {
      res.setHeader('Connection', 'X-Backend-Secret');
      res.setHeader('Keep-Alive', 'timeout=5');
      res.setHeader('Proxy-Authenticate', 'Basic realm="internal"');
      res.setHeader('Proxy-Connection', 'keep-alive');
      res.setHeader('Upgrade', 'h2c');
      res.setHeader('Trailer', 'X-Checksum');
      res.setHeader('X-Backend-Secret', 'internal-value');
      res.setHeader('X-Kept', 'yes');
      res.setHeader('Content-Type', 'text/plain');
      res.end('ok');
    });
    proxy = await startTestProxy({ PROXY_TARGET_URL: echo.url });
    proxyToBackend = await startTestProxy({ PROXY_TARGET_URL: backend.url });
  });
  afterAll(async () => {
    await proxy?.close();
    await proxyToBackend?.close();
    await echo?.close();
    await backend?.close();
  });

  it('does not forward hop-by-hop request headers or headers named in Connection', async () => {
    const res = await rawRequest(proxy.url, [
      'GET /hop HTTP/1.1',
      `Host: ${hostOf(proxy.url)}`,
      'Connection: close, X-Secret',
      'Keep-Alive: timeout=100',
      'TE: trailers',
      'Trailer: X-Checksum',
      'Upgrade: websocket',
      'Proxy-Authorization: Basic cHJveHk6c2VjcmV0',
      'Proxy-Connection: keep-alive',
      'X-Secret: hop-secret',
      'X-Kept: yes',
    ]);
    expect(res.status).toBe(200);
    const echoed = res.json() as unknown as Echoed;
    expect(echoed.url).toBe('/hop');
    const names = receivedNames(echoed);
    for (const name of [
      'keep-alive',
      'te',
      'trailer',
      'upgrade',
      'proxy-authorization',
      'proxy-connection',
    ]) {
      expect(names, name).not.toContain(name);
    }
    expect(names).not.toContain('x-secret');
    expect(JSON.stringify(echoed.rawHeaders)).not.toMatch(/hop-secret|cHJveHk6c2VjcmV0|timeout=100/);
    // The proxy's own connection to the backend may say keep-alive; never the client's tokens.
    for (const v of receivedValues(echoed, 'connection')) expect(v.toLowerCase()).toBe('keep-alive');
    expect(receivedValues(echoed, 'x-kept')).toEqual(['yes']);
  });

  it('refuses an h2c upgrade (request smuggling through the proxy) and forwards nothing', async () => {
    const before = echo.seen.length;
    const res = await rawRequest(proxy.url, [
      'GET /mcp HTTP/1.1',
      `Host: ${hostOf(proxy.url)}`,
      'Connection: Upgrade, HTTP2-Settings',
      'Upgrade: h2c',
      'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA',
    ]);
    expect(res.status).toBe(400);
    expect(res.json().error).toBe('invalid_request');
    expect(echo.seen.length).toBe(before);
  });

  it('does not relay hop-by-hop response headers or headers the backend named in Connection', async () => {
    const res = await rawGet(proxyToBackend.url, '/');
    expect(res.status).toBe(200);
    expect(res.body).toBe('ok');
    for (const name of ['keep-alive', 'proxy-authenticate', 'proxy-connection', 'upgrade', 'trailer']) {
      expect(res.all(name), name).toEqual([]);
    }
    expect(res.all('x-backend-secret')).toEqual([]);
    for (const v of res.all('connection')) expect(v.toLowerCase()).toBe('close');
    expect(res.get('x-kept')).toBe('yes');
  });
});

/** Starts a proxy with a given authentication stage (the config's own would be bypass). */
async function startProxyWith(
  env: Record<string, string>,
  authenticate: Authenticator['authenticate'],
): Promise<{ url: string; proxy: RunningProxy }> {
  const config = loadConfig({
    env: { AUTH_MODE: 'bypass', SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', LOG_LEVEL: 'error', ...env },
  });
  const logger = quietLogger();
  const proxy = await startProxy({ config, logger, authenticator: { mode: 'test', authenticate } });
  return { url: proxy.url, proxy };
}

/** A proxy whose authentication stage admits everyone as a fixed user (identity headers on). */
function startProxyWithIdentity(env: Record<string, string>): Promise<{ url: string; proxy: RunningProxy }> {
  return startProxyWith(
    env,
    async (): Promise<AuthDecision> => ({
      kind: 'allow',
      identity: { user: 'alice', email: 'alice@example.com', groups: ['dev', 'ops'] },
      credentialsConsumed: true,
    }),
  );
}

describe('identity and forwarding headers', () => {
  let echo: Listening;
  let plain: TestProxy;
  let trusting: TestProxy;
  let withIdentity: { url: string; proxy: RunningProxy };

  beforeAll(async () => {
    echo = await startEchoBackend();
    plain = await startTestProxy({ PROXY_TARGET_URL: echo.url });
    trusting = await startTestProxy({ PROXY_TARGET_URL: echo.url, TRUSTED_PROXIES: '127.0.0.1' });
    withIdentity = await startProxyWithIdentity({ PROXY_TARGET_URL: echo.url });
  });
  afterAll(async () => {
    await plain?.close();
    await trusting?.close();
    await withIdentity?.proxy.shutdown();
    await echo?.close();
  });

  const spoofed = [
    'X-Forwarded-User: attacker',
    'x-forwarded-email: attacker@evil.example',
    'X_Forwarded_Groups: admins',
    'X-FORWARDED-USER: root',
    'x_forwarded_user: root2',
    'X-Real-IP: 6.6.6.6',
    'Forwarded: for=6.6.6.6;host=evil.example;proto=https',
    'CF-Connecting-IP: 6.6.6.6',
    'X_Forwarded_For: 6.6.6.6',
    'X-Forwarded-Host: evil.example',
    'X-Forwarded-Proto: https',
    'X-Forwarded-Port: 443',
    'X-Forwarded-Access-Token: stolen',
    'Authorization: Bearer proxy-token-123',
  ];

  it('removes client-sent identity headers in every spelling and writes its own', async () => {
    const res = await rawGet(withIdentity.url, '/who', [...spoofed, 'X-Forwarded-For: 6.6.6.6']);
    expect(res.status).toBe(200);
    const echoed = res.json() as unknown as Echoed;
    expect(receivedValues(echoed, 'x-forwarded-user')).toEqual(['alice']);
    expect(receivedValues(echoed, 'x-forwarded-email')).toEqual(['alice@example.com']);
    expect(receivedValues(echoed, 'x-forwarded-groups')).toEqual(['dev,ops']);
    expect(receivedValues(echoed, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(receivedValues(echoed, 'x-forwarded-proto')).toEqual(['http']);
    expect(receivedValues(echoed, 'x-forwarded-host')).toEqual([hostOf(withIdentity.url)]);
    const names = receivedNames(echoed);
    for (const name of [
      'x-real-ip',
      'forwarded',
      'cf-connecting-ip',
      'x-forwarded-port',
      'x-forwarded-access-token',
      'authorization',
    ]) {
      expect(names, name).not.toContain(name);
    }
    // No header of the client's kept a spoofed value under any name.
    expect(JSON.stringify(echoed.rawHeaders)).not.toMatch(/attacker|root|admins|6\.6\.6\.6|evil|stolen/);
  });

  it('removes spoofed identity headers in bypass mode too and computes X-Forwarded-*', async () => {
    const res = await rawGet(plain.url, '/who', [...spoofed, 'X-Forwarded-For: 203.0.113.7']);
    const echoed = res.json() as unknown as Echoed;
    const names = receivedNames(echoed);
    for (const name of [
      'x-forwarded-user',
      'x-forwarded-email',
      'x-forwarded-groups',
      'x-real-ip',
      'forwarded',
    ]) {
      expect(names, name).not.toContain(name);
    }
    // Without TRUSTED_PROXIES the client's chain is replaced by the peer.
    expect(receivedValues(echoed, 'x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(receivedValues(echoed, 'x-forwarded-proto')).toEqual(['http']);
    expect(receivedValues(echoed, 'x-forwarded-host')).toEqual([hostOf(plain.url)]);
  });

  it('keeps the X-Forwarded-For chain of a trusted proxy and appends the peer', async () => {
    const res = await rawGet(trusting.url, '/who', [
      'X-Forwarded-For: 203.0.113.7, 198.51.100.2',
      'X-Forwarded-Proto: https',
      'X-Forwarded-User: attacker',
    ]);
    const echoed = res.json() as unknown as Echoed;
    expect(receivedValues(echoed, 'x-forwarded-for')).toEqual(['203.0.113.7, 198.51.100.2, 127.0.0.1']);
    expect(receivedValues(echoed, 'x-forwarded-proto')).toEqual(['https']);
    // Trusting the forwarding chain never means trusting an identity claim.
    expect(receivedNames(echoed)).not.toContain('x-forwarded-user');
  });
});

describe('Origin and Host validation (DNS rebinding)', () => {
  let echo: Listening & { seen: string[] };
  let proxy: TestProxy;

  beforeAll(async () => {
    echo = await startRecordingEcho();
    proxy = await startTestProxy({
      PROXY_TARGET_URL: echo.url,
      PUBLIC_URL: 'https://mcp.example.com',
      ALLOWED_ORIGINS: 'http://localhost:6274',
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await echo?.close();
  });

  it.each([
    'http://evil.example',
    'https://mcp.example.com.evil.example',
    'http://mcp.example.com',
    'https://mcp.example.com:8443',
    'null',
    'http://localhost:6275',
  ])('refuses Origin %s with 403 JSON and forwards nothing', async (origin) => {
    const before = echo.seen.length;
    const res = await rawGet(proxy.url, '/mcp', [`Origin: ${origin}`]);
    expect(res.status).toBe(403);
    expect(res.get('content-type')).toBe('application/json');
    expect(res.json().error).toBe('forbidden');
    expect(echo.seen.length).toBe(before);
  });

  it.each(['https://mcp.example.com', 'HTTPS://MCP.EXAMPLE.COM', 'http://localhost:6274'])(
    'lets Origin %s through',
    async (origin) => {
      const res = await rawGet(proxy.url, '/mcp', [`Origin: ${origin}`]);
      expect(res.status).toBe(200);
      expect((res.json() as unknown as Echoed).headers.origin).toBe(origin);
    },
  );

  it.each([
    'evil.example',
    'evil.example:80',
    'mcp.example.com.evil.example',
    'localhost.evil.example',
    '127.0.0.1.nip.io',
    'localhost:1@evil.example',
    'localhost:evil.example',
    '127.0.0.1:80/evil',
    '[::1]@evil.example',
    '[::1].evil.example',
    '',
  ])('refuses Host "%s" with 403 and forwards nothing', async (host) => {
    const before = echo.seen.length;
    const res = await rawRequest(proxy.url, ['GET /mcp HTTP/1.1', `Host: ${host}`, 'Connection: close']);
    expect(res.status).toBe(403);
    expect(res.json().error).toBe('forbidden');
    expect(echo.seen.length).toBe(before);
  });

  it.each([
    'mcp.example.com',
    'MCP.example.com',
    'localhost',
    'localhost:8080',
    '127.0.0.1',
    '127.0.0.1:9',
    '[::1]',
    '[::1]:8080',
  ])('lets Host %s through', async (host) => {
    const res = await rawRequest(proxy.url, ['GET /mcp HTTP/1.1', `Host: ${host}`, 'Connection: close']);
    expect(res.status).toBe(200);
  });

  it('refuses a WebSocket upgrade from a foreign Origin with 403', async () => {
    const before = echo.seen.length;
    const status = await new Promise<number>((resolve, reject) => {
      const ws = new WebSocket(`${proxy.url.replace('http:', 'ws:')}/mcp`, { origin: 'http://evil.example' });
      ws.once('open', () => reject(new Error('upgrade should have been refused')));
      ws.once('error', () => undefined);
      ws.once('unexpected-response', (_req, res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
    });
    expect(status).toBe(403);
    expect(echo.seen.length).toBe(before);
  });

  it('refuses a WebSocket upgrade with a foreign Host with 403', async () => {
    const before = echo.seen.length;
    const res = await rawRequest(proxy.url, [
      'GET /mcp HTTP/1.1',
      'Host: evil.example',
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ]);
    expect(res.status).toBe(403);
    expect(echo.seen.length).toBe(before);
  });
});

describe('request target checks', () => {
  let echo: Listening & { seen: string[] };
  let proxy: TestProxy;
  let prefixed: TestProxy;

  beforeAll(async () => {
    echo = await startRecordingEcho();
    proxy = await startTestProxy({ PROXY_TARGET_URL: echo.url });
    prefixed = await startTestProxy({ PROXY_TARGET_URL: `${echo.url}/base` });
  });
  afterAll(async () => {
    await proxy?.close();
    await prefixed?.close();
    await echo?.close();
  });

  it.each([
    ['GET', '/a/../mcp'],
    ['GET', '/mcp/..'],
    ['GET', '/./mcp'],
    ['GET', '//mcp'],
    ['GET', '/mcp//x'],
    ['GET', '/mcp/%2e%2e/x'],
    ['GET', '/mcp/%2E%2E/x'],
    ['GET', '/mcp/.%2e/x'],
    ['GET', '/mcp/..;/admin'],
    ['GET', '/mcp/..;jsessionid=1/admin'],
    ['GET', '/.;/mcp'],
    ['GET', '/caf\u00c3\u00a9'],
    ['GET', '/%2e%2e/etc'],
    ['GET', '/a%2fb'],
    ['GET', '/a%2Fb'],
    ['GET', '/a%5cb'],
    ['GET', '/a\\b'],
    ['GET', '/a%00b'],
    ['GET', '/a%zz'],
    ['GET', '/a%2'],
    ['GET', 'http://evil/'],
    ['GET', 'http://127.0.0.1/mcp'],
    ['OPTIONS', '*'],
    ['GET', 'mcp'],
  ])('%s %s -> 400 JSON, nothing forwarded', async (method, target) => {
    const before = echo.seen.length;
    const res = await rawRequest(proxy.url, [
      `${method} ${target} HTTP/1.1`,
      `Host: ${hostOf(proxy.url)}`,
      'Connection: close',
    ]);
    expect(res.status).toBe(400);
    expect(res.get('content-type')).toBe('application/json');
    expect(res.json().error).toBe('invalid_request');
    expect(echo.seen.length).toBe(before);
    expect(echo.seen.some((seen) => seen.includes('evil') || seen.includes('..'))).toBe(false);
  });

  it('refuses a path trick on a WebSocket upgrade', async () => {
    const before = echo.seen.length;
    const res = await rawRequest(proxy.url, [
      'GET /a/../mcp HTTP/1.1',
      `Host: ${hostOf(proxy.url)}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ]);
    expect(res.status).toBe(400);
    expect(echo.seen.length).toBe(before);
  });

  it.each([
    '/mcp',
    '/mcp?x=1&y=2',
    '/a%20b/c?q=%2F%3F&r=a%20b',
    '/caf%C3%A9/%7Euser',
    '/mcp/sub?redirect=http%3A%2F%2Fexample.com%2F..%2F',
    '/mcp?path=/../x&empty=&flag',
    '/a.b/.well-known/x..y',
    '/mcp;v=1/x;y?z=1',
  ])('forwards %s byte for byte', async (target) => {
    const res = await rawGet(proxy.url, target);
    expect(res.status).toBe(200);
    expect((res.json() as unknown as Echoed).url).toBe(target);
  });

  it('maps paths under a PROXY_TARGET_URL path prefix', async () => {
    const res = await rawGet(prefixed.url, '/mcp?x=%20y');
    expect((res.json() as unknown as Echoed).url).toBe('/base/mcp?x=%20y');
    const root = await rawGet(prefixed.url, '/');
    expect((root.json() as unknown as Echoed).url).toBe('/base/');
  });
});

describe('malformed requests', () => {
  let echo: Listening;
  let proxy: TestProxy;

  beforeAll(async () => {
    echo = await startEchoBackend();
    proxy = await startTestProxy({ PROXY_TARGET_URL: echo.url });
  });
  afterAll(async () => {
    await proxy?.close();
    await echo?.close();
  });

  it.each<[string, string[], number | undefined]>([
    ['a garbage request line', ['HELLO THERE'], undefined],
    ['an unknown HTTP version', ['GET /mcp HTTP/7.1', 'Host: 127.0.0.1'], undefined],
    ['an obsolete line folding', ['GET /mcp HTTP/1.1', 'Host: 127.0.0.1', 'X-Folded: a', ' b'], undefined],
    [
      'a bad chunk size',
      ['POST /mcp HTTP/1.1', 'Host: 127.0.0.1', 'Transfer-Encoding: chunked', '', 'zz'],
      undefined,
    ],
    ['a space in a header name', ['GET /mcp HTTP/1.1', `Host: 127.0.0.1`, 'Bad Header: x'], undefined],
    [
      'a control character in a header name',
      ['GET /mcp HTTP/1.1', 'Host: 127.0.0.1', 'X-Bad\u0001: x'],
      undefined,
    ],
    [
      'a control character in a header value',
      ['GET /mcp HTTP/1.1', 'Host: 127.0.0.1', 'X-Bad: a\u0000b'],
      undefined,
    ],
    [
      'Content-Length together with Transfer-Encoding',
      ['POST /mcp HTTP/1.1', 'Host: 127.0.0.1', 'Content-Length: 4', 'Transfer-Encoding: chunked'],
      undefined,
    ],
    [
      'two different Content-Lengths',
      ['POST /mcp HTTP/1.1', 'Host: 127.0.0.1', 'Content-Length: 1', 'Content-Length: 2'],
      undefined,
    ],
    ['headers over 16 KB', ['GET /mcp HTTP/1.1', 'Host: 127.0.0.1', `X-Big: ${'a'.repeat(17 * 1024)}`], 431],
  ])('answers %s with a 4xx and keeps serving', async (_what, head, exact) => {
    const res = await rawRequest(proxy.url, head);
    if (exact) expect(res.status).toBe(exact);
    else expect(res.status).toBe(400);
    expect(res.get('content-type')).toBe('application/json');
    expectSecurityHeaders(res);
    const health = await fetch(`${proxy.url}/health`);
    expect(health.status).toBe(200);
    await health.body?.cancel();
  });
});

describe('security headers', () => {
  let echo: Listening;
  let ownHeaders: Listening;
  let proxy: TestProxy;
  let customCsp: TestProxy;
  let notOnProxied: TestProxy;
  let downProxy: TestProxy;
  const CSP = "default-src 'none'; frame-ancestors 'none'";

  beforeAll(async () => {
    echo = await startEchoBackend();
    ownHeaders = await startBackend((_req, res) => {
      res.setHeader('Content-Security-Policy', "default-src 'self' https://cdn.example");
      res.setHeader('X-Frame-Options', 'SAMEORIGIN');
      res.setHeader('Content-Type', 'text/html');
      res.end('<p>page</p>');
    });
    // A port that was just free: nothing listens there.
    const gone = await startBackend(() => undefined);
    await gone.close();
    proxy = await startTestProxy({ PROXY_TARGET_URL: echo.url });
    customCsp = await startTestProxy({ PROXY_TARGET_URL: ownHeaders.url, CONTENT_SECURITY_POLICY: CSP });
    notOnProxied = await startTestProxy({ PROXY_TARGET_URL: echo.url, SECURITY_HEADERS_ON_PROXIED: 'false' });
    downProxy = await startTestProxy({ PROXY_TARGET_URL: gone.url, PROXY_RETRIES: '0' });
  });
  afterAll(async () => {
    await proxy?.close();
    await customCsp?.close();
    await notOnProxied?.close();
    await downProxy?.close();
    await echo?.close();
    await ownHeaders?.close();
  });

  it('are set on /health, on proxy errors and on proxied responses', async () => {
    const health = await rawGet(proxy.url, '/health');
    expect(health.status).toBe(200);
    expectSecurityHeaders(health);

    const bad = await rawGet(proxy.url, '/a/../b');
    expect(bad.status).toBe(400);
    expectSecurityHeaders(bad);

    const forbidden = await rawGet(proxy.url, '/mcp', ['Origin: http://evil.example']);
    expect(forbidden.status).toBe(403);
    expectSecurityHeaders(forbidden);

    const proxied = await rawGet(proxy.url, '/mcp');
    expect(proxied.status).toBe(200);
    expectSecurityHeaders(proxied);
  });

  it('are set on a 502 when the backend is down', async () => {
    const down = await rawGet(downProxy.url, '/mcp');
    expect(down.status).toBe(502);
    expect(down.get('content-type')).toBe('application/json');
    expectSecurityHeaders(down);
  });

  it('are set on a 500 when a stage fails, and the proxy keeps serving', async () => {
    const failing = await startProxyWith({ PROXY_TARGET_URL: echo.url }, async () => {
      throw new Error('stage exploded');
    });
    try {
      const res = await rawGet(failing.url, '/mcp');
      expect(res.status).toBe(500);
      expect(res.json().error).toBe('server_error');
      expect(res.body).not.toContain('exploded');
      expectSecurityHeaders(res);
      expect((await rawGet(failing.url, '/health')).status).toBe(200);
    } finally {
      await failing.proxy.shutdown();
    }
  });

  it('never overwrite a header the backend set', async () => {
    const res = await rawGet(customCsp.url, '/page');
    expect(res.status).toBe(200);
    expect(res.all('content-security-policy')).toEqual(["default-src 'self' https://cdn.example"]);
    expect(res.all('x-frame-options')).toEqual(['SAMEORIGIN']);
    expect(res.get('x-content-type-options')).toBe('nosniff');
  });

  it('use CONTENT_SECURITY_POLICY', async () => {
    const res = await rawGet(customCsp.url, '/health');
    expect(res.all('content-security-policy')).toEqual([CSP]);
  });

  it('are left off proxied responses only with SECURITY_HEADERS_ON_PROXIED=false', async () => {
    const proxied = await rawGet(notOnProxied.url, '/mcp');
    expect(proxied.status).toBe(200);
    for (const name of SECURITY_HEADERS) expect(proxied.all(name), name).toEqual([]);
    expectSecurityHeaders(await rawGet(notOnProxied.url, '/health'));
    expectSecurityHeaders(await rawGet(notOnProxied.url, '/mcp', ['Origin: http://evil.example']));
    expectSecurityHeaders(await rawGet(notOnProxied.url, '//mcp'));
  });
});

describe('response and request details', () => {
  let echo: Listening;
  let cookies: Listening;
  let proxy: TestProxy;
  let cookieProxy: TestProxy;

  beforeAll(async () => {
    echo = await startEchoBackend();
    cookies = await startBackend((_req, res) => {
      res.setHeader('Set-Cookie', [
        'a=1; Path=/; HttpOnly',
        'b=2; Path=/; Secure; SameSite=Lax',
        'c=3, with comma; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
      ]);
      res.end('cookies');
    });
    proxy = await startTestProxy({ PROXY_TARGET_URL: echo.url });
    cookieProxy = await startTestProxy({ PROXY_TARGET_URL: cookies.url });
  });
  afterAll(async () => {
    await proxy?.close();
    await cookieProxy?.close();
    await echo?.close();
    await cookies?.close();
  });

  it('relays every Set-Cookie header separately', async () => {
    const res = await rawGet(cookieProxy.url, '/');
    expect(res.all('set-cookie')).toEqual([
      'a=1; Path=/; HttpOnly',
      'b=2; Path=/; Secure; SameSite=Lax',
      'c=3, with comma; Path=/; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
    ]);
  });

  it('propagates a valid X-Request-Id to the backend and echoes it', async () => {
    const id = 'req-123_abc.DEF:9';
    const res = await rawGet(proxy.url, '/id', [`X-Request-Id: ${id}`]);
    expect(res.all('x-request-id')).toEqual([id]);
    expect(receivedValues(res.json() as unknown as Echoed, 'x-request-id')).toEqual([id]);
  });

  it.each([
    ['too long', ['X-Request-Id: a'.padEnd(14 + 129, 'a')]],
    ['with a space', ['X-Request-Id: abc def']],
    ['with a tab', ['X-Request-Id: abc\tdef']],
    ['with a newline escape attempt', ['X-Request-Id: abc%0d%0aSet-Cookie:x=1']],
    ['sent twice', ['X-Request-Id: one', 'X-Request-Id: two']],
    ['empty', ['X-Request-Id: ']],
  ])('replaces an X-Request-Id %s with a generated UUID', async (_what, lines) => {
    const res = await rawGet(proxy.url, '/id', lines);
    const ids = res.all('x-request-id');
    expect(ids).toHaveLength(1);
    expect(ids[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(receivedValues(res.json() as unknown as Echoed, 'x-request-id')).toEqual(ids);
    expect(res.all('set-cookie')).toEqual([]);
  });

  it('does not let an underscore spelling smuggle a request id to the backend', async () => {
    const res = await rawGet(proxy.url, '/id', ['X_Request_Id: smuggled']);
    const received = receivedValues(res.json() as unknown as Echoed, 'x-request-id');
    expect(received).toEqual(res.all('x-request-id'));
    expect(received).not.toContain('smuggled');
  });
});

describe('logs', () => {
  let echo: Listening;
  let proxy: TestProxy;

  beforeAll(async () => {
    echo = await startEchoBackend();
    proxy = await startTestProxy({ PROXY_TARGET_URL: echo.url, LOG_LEVEL: 'debug' });
  });
  afterAll(async () => {
    await proxy?.close();
    await echo?.close();
  });

  it('never contain codes, states, tokens or cookies', async () => {
    const secrets = {
      code: 'SECRETCODE4711',
      state: 'S2STATE0815',
      token: 'bearer-token-9f8e7d',
      cookie: 'cookie-value-1a2b3c',
      verifier: 'VERIFIER5150',
    };
    const auth = [`Authorization: Bearer ${secrets.token}`, `Cookie: session=${secrets.cookie}; other=1`];
    const targets = [
      `/callback?code=${secrets.code}&state=${secrets.state}&x=1`,
      `/authorize?state=${secrets.state}&x=1&code_verifier=${secrets.verifier}`,
      `/mcp?x=1&Code=${secrets.code}`,
      `/mcp?x=1&c%6Fde=${secrets.code}`,
      `/mcp?access_token=${secrets.token}&x=1`,
      `/a/../callback?code=${secrets.code}&x=1`,
      `http://evil/callback?code=${secrets.code}&x=1`,
    ];
    const ids: string[] = [];
    for (const [i, target] of targets.entries()) {
      const id = `log-test-${i}`;
      ids.push(id);
      await rawGet(proxy.url, target, [...auth, `X-Request-Id: ${id}`]);
    }
    await waitFor(
      () => ids.every((id) => proxy.logs.some((l) => l.req_id === id && l.msg === 'request')),
      5000,
      'access log lines',
    );
    const text = proxy.logText();
    for (const secret of Object.values(secrets)) expect(text).not.toContain(secret);
    const paths = proxy.logs.filter((l) => ids.includes(String(l.req_id))).map((l) => String(l.path));
    expect(paths).toHaveLength(targets.length);
    for (const path of paths) expect(path).toContain('x=1');
    expect(paths[0]).toBe('/callback?code=[REDACTED]&state=[REDACTED]&x=1');
  });
});

describe('one admission path for requests and WebSocket upgrades', () => {
  let echo: Listening & { seen: string[] };
  let proxy: { url: string; proxy: RunningProxy };
  const upgrade = (target: string, extra: string[] = []): Promise<RawResponse> =>
    rawRequest(proxy.url, [
      `GET ${target} HTTP/1.1`,
      `Host: ${hostOf(proxy.url)}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
      ...extra,
    ]);
  const authCount = async (result: string): Promise<number> => {
    const metric = await proxy.proxy.metrics.registry
      .getSingleMetric('mcp_oidc_proxy_auth_requests_total')
      ?.get();
    return metric?.values.find((v) => v.labels.result === result)?.value ?? 0;
  };

  beforeAll(async () => {
    echo = await startRecordingEcho();
    // Admits requests that say who they are; challenges the rest, as a login stage would.
    proxy = await startProxyWith(
      { PROXY_TARGET_URL: echo.url, METRICS_ENABLED: 'true' },
      (req): AuthDecision =>
        req.headers['x-test-user'] === undefined
          ? {
              kind: 'challenge',
              challenge: {
                status: 401,
                headers: [['www-authenticate', 'Bearer realm="test"']],
                result: 'unauthenticated',
                error: { code: 'unauthorized', description: 'Authentication is required.' },
              },
            }
          : { kind: 'allow', identity: { user: 'alice' }, credentialsConsumed: false },
    );
  });
  afterAll(async () => {
    await proxy?.proxy.shutdown();
    await echo?.close();
  });

  it('counts upgrades in mcp_oidc_proxy_auth_requests_total like requests', async () => {
    const challenged = await authCount('unauthenticated');
    const allowed = await authCount('allowed');
    const refused = await upgrade('/mcp');
    expect(refused.status).toBe(401);
    expect(refused.get('www-authenticate')).toBe('Bearer realm="test"');
    expect(refused.json()).toEqual({
      error: 'unauthorized',
      error_description: 'Authentication is required.',
      request_id: refused.get('x-request-id'),
    });
    expect(await authCount('unauthenticated')).toBe(challenged + 1);
    // The recording backend hangs up on upgrades (502): what matters is that it was reached.
    await upgrade('/mcp', ['X-Test-User: alice']);
    expect(echo.seen).toContain('upgrade /mcp');
    expect(await authCount('allowed')).toBe(allowed + 1);
    const plain = await rawGet(proxy.url, '/mcp');
    expect(plain.status).toBe(401);
    expect(await authCount('unauthenticated')).toBe(challenged + 2);
  });

  it.each(['/health', '/metrics'])('takes no WebSocket upgrade on the proxy-owned %s', async (path) => {
    const before = echo.seen.length;
    const res = await upgrade(path, ['X-Test-User: alice']);
    expect(res.status).toBe(404);
    expect(res.json()).toEqual({
      error: 'not_found',
      error_description: `${path} is the proxy's own endpoint and takes no WebSocket upgrades.`,
      request_id: res.get('x-request-id'),
    });
    expect(echo.seen.length).toBe(before);
  });

  it('answers every refusal in the one error shape, with the request id, on both writers', async () => {
    const target = await rawGet(proxy.url, '/a/../mcp', ['X-Request-Id: trace-me-1']);
    const upgraded = await upgrade('/a/../mcp', ['X-Request-Id: trace-me-2']);
    const notWebSocket = await upgrade('/mcp', ['Upgrade: h2c']);
    for (const [res, id] of [
      [target, 'trace-me-1'],
      [upgraded, 'trace-me-2'],
    ] as const) {
      expect(res.status).toBe(400);
      expect(res.get('x-request-id')).toBe(id);
      expect(res.json()).toMatchObject({ error: 'invalid_request', request_id: id });
      expect(Object.keys(res.json()).sort()).toEqual(['error', 'error_description', 'request_id']);
    }
    expect(notWebSocket.status).toBe(400);
  });
});
