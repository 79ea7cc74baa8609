/**
 * Attacks on the operator features (the admin API and page, config reload, rate limits on every
 * route, tracing, revocation cut-offs), written from the public contract: the dev OIDC provider,
 * the proxy in oidc mode and a backend, driven with raw sockets, the official MCP SDK client and
 * the headless browser login. Each test states the attack and asserts that it fails.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { DEFAULT_DEV_USERS, type DevUser } from '../../src/demo/dev-idp.js';
import {
  approveConsent,
  CookieJar,
  loginThroughBrowserless,
  signInThroughProxy,
} from '../helpers/headless-login.js';
import { type ConnectedMcpClient, connectMcpClient, REDIRECT_URL } from '../helpers/mcp-oauth-client.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type OtlpReceiver, startOtlpReceiver } from '../helpers/otlp-receiver.js';
import { type JsonLog, jsonLines, terminate } from '../helpers/process.js';
import { hostOf, type RawResponse, rawGet, rawRequest } from '../helpers/raw-http.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import {
  freePort,
  type Listening,
  listen,
  startBackend,
  startEchoBackend,
  startTestProxy,
  type TestProxy,
  testProxyConfig,
  waitFor,
} from '../helpers/servers.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
const ADMIN_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

type User = { username: string; password: string };
const person = (username: string, groups: string[], extra: Partial<DevUser> = {}): DevUser => ({
  username,
  password: `${username}-password`,
  email: `${username}@example.com`,
  name: `${username} (test)`,
  groups,
  ...extra,
});
const as = (username: string): User => ({ username, password: `${username}-password` });
const alice = as('alice'); // in ADMIN_GROUPS (engineering)

/** A documentation address per attack, so failures one test counts never block another's. */
let nextAddress = 1;
const freshAddress = (): string => `198.51.100.${nextAddress++}`;

async function body(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

/** Runs an authorization for `clientId` in `jar`'s browser and returns the (unredeemed) code and its verifier. */
async function authorizationCode(
  url: string,
  clientId: string,
  jar: CookieJar,
  user: User,
): Promise<{ code: string; verifier: string; consentShown: boolean }> {
  let consentShown = false;
  const verifier = randomBytes(32).toString('base64url');
  const authorize = new URL(`${url}/authorize`);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id: clientId,
    redirect_uri: REDIRECT_URL,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state: randomBytes(8).toString('hex'),
    resource: `${url}/mcp`,
    scope: 'mcp',
  }).toString();
  const result = await loginThroughBrowserless(authorize.href, user, {
    jar,
    stopAt: (target) => target.href.startsWith(REDIRECT_URL),
    onPage: (page) => {
      const submission = approveConsent(page);
      consentShown ||= submission !== undefined;
      return submission;
    },
  });
  const code = new URL(result.finalUrl).searchParams.get('code');
  if (!code) throw new Error(`no code: ${result.finalUrl}`);
  return { code, verifier, consentShown };
}

function redeem(url: string, clientId: string, grant: { code: string; verifier: string }): Promise<Response> {
  return fetch(`${url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: grant.code,
      code_verifier: grant.verifier,
      redirect_uri: REDIRECT_URL,
      client_id: clientId,
    }),
  });
}

function refresh(url: string, clientId: string, refreshToken: string): Promise<Response> {
  return fetch(`${url}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
    }),
  });
}

/** One MCP request with a bearer token, without the SDK (which would start a new login on 401). */
function mcpCall(url: string, accessToken: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${accessToken}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
}

/** Registers a public client (RFC 7591) with the given metadata; its client_id. */
async function register(url: string, metadata: Record<string, unknown>): Promise<Record<string, unknown>> {
  const res = await fetch(`${url}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      redirect_uris: [REDIRECT_URL],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      ...metadata,
    }),
  });
  expect(res.status, await res.clone().text()).toBe(201);
  return body(res);
}

describe('the admin surface: paths, methods and credentials an attacker can vary', () => {
  let stack: OidcStack;
  let seen: string[];
  let aliceMcp: ConnectedMcpClient;
  let aliceJar: CookieJar;
  const from = (ip: string): string => `X-Forwarded-For: ${ip}`;
  const bearer = `Authorization: Bearer ${ADMIN_TOKEN}`;

  beforeAll(async () => {
    stack = await startOidcStack(
      { ADMIN_ENABLED: 'true', ADMIN_TOKEN, ADMIN_GROUPS: 'engineering', TRUSTED_PROXIES: '127.0.0.1' },
      {},
      async () => {
        // The sample MCP server (the SDK client needs one), recording every target it is asked for.
        const backend = await startMcpServer();
        seen = [];
        backend.server.on('request', (req: IncomingMessage) => {
          if (!req.url?.startsWith('/mcp')) seen.push(req.url ?? '');
        });
        return backend;
      },
    );
    aliceJar = await signInThroughProxy(stack.url, alice);
    aliceMcp = await connectMcpClient(stack.url, alice);
  });
  afterAll(async () => {
    await aliceMcp?.client.close();
    await stack?.close();
  });

  /** A raw request with the admin token from a fresh address; `lines` replace the request line. */
  function send(requestLine: string, extra: string[] = []): Promise<RawResponse> {
    return rawRequest(stack.url, [
      requestLine,
      `Host: ${hostOf(stack.url)}`,
      from(freshAddress()),
      ...extra,
      'Connection: close',
    ]);
  }

  it('refuses every spelling of the admin paths that a server could read two ways, before anything is done', async () => {
    const ambiguous = [
      '/admin/./api/status',
      '/admin/api/./status',
      '/admin/api/../api/status',
      '/admin%2Fapi/status',
      '/admin%2fapi%2fstatus',
      '/admin/api//status',
      '//admin/api/status',
      '/admin/api/users/..%2F..',
      '/admin/api/users/%2e%2e',
      '/admin/api/users/..;/status',
      '/admin\\api\\status',
      '/admin/api/status%00',
      '/admin/api/status#x',
      '/admin/api/%zz',
    ];
    for (const target of ambiguous) {
      const res = await send(`GET ${target} HTTP/1.1`, [bearer]);
      expect(res.status, target).toBe(400);
      expect(res.json().error, target).toBe('invalid_request');
    }
    // Absolute-form and asterisk-form targets, even naming the proxy itself.
    for (const target of [`http://${hostOf(stack.url)}/admin/api/status`, '*']) {
      expect((await send(`GET ${target} HTTP/1.1`, [bearer])).status, target).toBe(400);
    }
    expect(seen).toEqual([]);
  });

  it('treats other spellings as other paths: never the admin API, and forwarded only after a normal login', async () => {
    for (const target of ['/Admin/api/status', '/ADMIN', '/admin;x/api/status', '/adminx', '/admin.json']) {
      // The admin token is no MCP access token: these get the normal 401 challenge.
      const withToken = await send(`GET ${target} HTTP/1.1`, [bearer]);
      expect(withToken.status, target).toBe(401);
      expect(withToken.get('www-authenticate'), target).toContain('resource_metadata=');
    }
    expect(seen).toEqual([]);
    // A signed-in user reaches the backend with them, as with any path the proxy does not own.
    const cookie = `Cookie: ${aliceJar.get(stack.url)}`;
    const forwarded = await send('GET /Admin/api/status HTTP/1.1', [cookie]);
    expect(forwarded.status).not.toBe(401);
    expect(forwarded.body).not.toContain('auth_mode');
    expect(seen).toEqual(['/Admin/api/status']);
    // Inside /admin, a path parameter or an unknown name is a 404 of the admin API, not a route.
    for (const target of ['/admin/api/status;x', '/admin/api/status/x', '/admin/api/statuS', '/admin/x']) {
      const res = await send(`GET ${target} HTTP/1.1`, [bearer]);
      expect(res.status, target).toBe(404);
      expect(res.json().error, target).toBe('not_found');
    }
    // A query string is just a query string.
    expect((await send('GET /admin/api/status?x HTTP/1.1', [bearer])).status).toBe(200);
    expect(seen).toEqual(['/Admin/api/status']);
  });

  it('does not take overlong or invalid UTF-8 in an id as another id', async () => {
    for (const id of ['%C0%AF', '%C0%AE%C0%AE', '%E0%80%AF', '%ED%A0%80', '%FF']) {
      const res = await send(`DELETE /admin/api/users/${id} HTTP/1.1`, [bearer]);
      expect(res.status, id).toBe(400);
      expect(res.json().error_description, id).toContain('percent-encoding');
    }
  });

  it('answers HEAD and OPTIONS without credentials with no data, and sends no CORS headers', async () => {
    for (const method of ['HEAD', 'OPTIONS', 'GET', 'DELETE', 'POST', 'PUT', 'PATCH']) {
      const res = await send(`${method} /admin/api/sessions HTTP/1.1`);
      expect(res.status, method).toBe(401);
      expect(res.body, method).not.toContain('"sessions"');
      expect(res.get('access-control-allow-origin'), method).toBeUndefined();
    }
    const preflight = await send('OPTIONS /admin/api/users/alice HTTP/1.1', [
      'Origin: https://evil.example',
      'Access-Control-Request-Method: DELETE',
    ]);
    expect(preflight.status).toBe(403);
    expect(preflight.get('access-control-allow-origin')).toBeUndefined();
    expect(preflight.get('access-control-allow-methods')).toBeUndefined();
  });

  it('accepts the token only as Authorization: Bearer, once, and nowhere else', async () => {
    const status = (extra: string[], target = '/admin/api/status') =>
      send(`GET ${target} HTTP/1.1`, extra).then((r) => r.status);
    // The scheme is case-insensitive (RFC 9110 §11.1); spaces after it are allowed.
    expect(await status([`authorization: bearer ${ADMIN_TOKEN}`])).toBe(200);
    expect(await status([`Authorization: BEARER   ${ADMIN_TOKEN}`])).toBe(200);
    // Anywhere else it is not a credential.
    expect(await status([], `/admin/api/status?access_token=${ADMIN_TOKEN}`)).toBe(401);
    expect(await status([], `/admin/api/status?token=${ADMIN_TOKEN}`)).toBe(401);
    expect(await status([`Cookie: access_token=${ADMIN_TOKEN}; admin_token=${ADMIN_TOKEN}`])).toBe(401);
    expect(await status([`X-Admin-Token: ${ADMIN_TOKEN}`])).toBe(401);
    expect(await status([`Proxy-Authorization: Bearer ${ADMIN_TOKEN}`])).toBe(401);
    expect(await status([`Authorization: Basic ${Buffer.from(`x:${ADMIN_TOKEN}`).toString('base64')}`])).toBe(
      401,
    );
    expect(await status([`Authorization: Bearer${ADMIN_TOKEN}`])).toBe(401);
    expect(await status([`Authorization: Bearer ${ADMIN_TOKEN.toUpperCase()}`])).toBe(401);
    // Two Authorization fields are ambiguous (a front proxy may read the other one): refused,
    // whichever of them holds the token.
    for (const pair of [
      [bearer, 'Authorization: Bearer wrong'],
      ['Authorization: Bearer wrong', bearer],
      [bearer, bearer],
    ]) {
      const res = await send('GET /admin/api/status HTTP/1.1', pair);
      expect(res.status, pair.join(' + ')).toBe(400);
      expect(res.json().error).toBe('invalid_request');
    }
  });

  it('answers a huge Authorization header with 431, never with data', async () => {
    const res = await send('GET /admin/api/status HTTP/1.1', [`Authorization: Bearer ${'A'.repeat(70_000)}`]);
    expect(res.status).toBe(431);
    expect(res.body).not.toContain('auth_mode');
  });

  it('does not let an MCP access token of a member of ADMIN_GROUPS in, even beside the admin session cookie', async () => {
    const token = aliceMcp.accessToken;
    expect((await mcpCall(stack.url, token)).status).toBe(200);
    for (const extra of [[], [`Cookie: ${aliceJar.get(stack.url)}`]]) {
      const res = await send('GET /admin/api/sessions HTTP/1.1', [
        `Authorization: Bearer ${token}`,
        ...extra,
      ]);
      expect(res.status).toBe(401);
      expect(res.json().error).toBe('invalid_token');
    }
  });

  it('sends the strict CSP and refuses framing on every admin answer, errors included', async () => {
    const answers = [
      await send('GET /admin HTTP/1.1'),
      await send('GET /admin/app.js HTTP/1.1'),
      await send('GET /admin/app.css HTTP/1.1'),
      await send('GET /admin/nothing-here HTTP/1.1'),
      await send('GET /admin/api/status HTTP/1.1'),
      await send('GET /admin/api/nope HTTP/1.1', [bearer]),
      await send('POST /admin HTTP/1.1', ['Content-Length: 0']),
    ];
    for (const res of answers) {
      const what = `${res.status} ${res.body.slice(0, 60)}`;
      expect(res.get('content-security-policy'), what).toBe(ADMIN_CSP);
      expect(res.get('x-frame-options'), what).toBe('DENY');
      expect(res.get('x-content-type-options'), what).toBe('nosniff');
      expect(res.body, what).not.toMatch(/at [\w.]+ \(|node:internal|\.ts:\d+/);
    }
  });
});

describe('admin privilege through the browser session: groups, and forged changes', () => {
  let stack: OidcStack;
  const INSPECTOR_ORIGIN = 'http://inspector.example:6274';
  const users = [
    ...DEFAULT_DEV_USERS,
    person('gina', ['engineering', 'mcp-users']),
    person('victim', ['mcp-users']),
  ];

  beforeAll(async () => {
    stack = await startOidcStack(
      {
        ADMIN_ENABLED: 'true',
        ADMIN_TOKEN,
        ADMIN_GROUPS: 'engineering',
        ALLOWED_ORIGINS: INSPECTOR_ORIGIN,
      },
      // Provider access tokens shorter than the refresh margin: every request refreshes the
      // session, so the groups the provider reports now are the ones checked.
      { users, ttl: { AccessToken: 30 } },
      startMcpServer,
    );
  });
  afterAll(async () => {
    await stack?.close();
  });

  const status = (jar: CookieJar) =>
    fetch(`${stack.url}/admin/api/status`, { headers: { cookie: jar.get(stack.url) } });

  it('a member removed from ADMIN_GROUPS at the provider loses admin at the next session refresh', async () => {
    const jar = await signInThroughProxy(stack.url, as('gina'));
    expect((await status(jar)).status).toBe(200);
    const gina = stack.idp.users.find((u) => u.username === 'gina');
    if (!gina) throw new Error('no gina');
    gina.groups = ['mcp-users'];
    const after = await status(jar);
    expect(after.status).toBe(403);
    expect((await body(after)).error).toBe('access_denied');
    // And what she could do before: revoke someone.
    const del = await fetch(`${stack.url}/admin/api/users/victim`, {
      method: 'DELETE',
      headers: { cookie: jar.get(stack.url), origin: stack.url },
    });
    expect(del.status).toBe(403);
    expect(stack.proxy.logs.some((l) => l.audit === 'admin_user_revoked')).toBe(false);
  });

  it('refuses every forged change made with the admin cookie, on every mutating route, and revokes nothing', async () => {
    const admin = await signInThroughProxy(stack.url, alice);
    const victimJar = await signInThroughProxy(stack.url, as('victim'));
    const victimMcp = await connectMcpClient(stack.url, as('victim'));
    const token = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const list = async <T>(path: string, key: string): Promise<T[]> =>
      (await body(await fetch(`${stack.url}${path}`, { headers: token })))[key] as T[];
    const [session] = await list<{ id: string }>('/admin/api/sessions?user=victim', 'sessions');
    const [grant] = await list<{ id: string }>('/admin/api/tokens?user=victim', 'tokens');
    if (!session || !grant) throw new Error('nothing to attack');
    const targets = [
      `/admin/api/sessions/${session.id}`,
      `/admin/api/tokens/${grant.id}`,
      `/admin/api/clients/${encodeURIComponent(victimMcp.clientId)}`,
      `/admin/api/clients?client_id=${encodeURIComponent(victimMcp.clientId)}`,
      '/admin/api/users/victim',
      '/admin/api/users?subject=victim',
    ];
    const origin = new URL(stack.url);
    const forgeries: Array<[string, Record<string, string>]> = [
      ['no Origin', {}],
      ['Origin: null', { origin: 'null' }],
      ['foreign Origin', { origin: 'https://evil.example' }],
      ['an ALLOWED_ORIGINS page', { origin: INSPECTOR_ORIGIN }],
      ['Origin with a trailing slash', { origin: `${stack.url}/` }],
      ['Origin as a prefix of another host', { origin: `${stack.url}.evil.example` }],
      ['Origin of another port', { origin: `http://${origin.hostname}:${Number(origin.port) + 1}` }],
      ['Origin with another scheme', { origin: `https://${origin.host}` }],
      ['Sec-Fetch-Site: cross-site', { 'sec-fetch-site': 'cross-site' }],
      ['Sec-Fetch-Site: same-site', { 'sec-fetch-site': 'same-site' }],
      ['Sec-Fetch-Site: none', { 'sec-fetch-site': 'none' }],
      ['Origin: null, Sec-Fetch-Site: same-site', { origin: 'null', 'sec-fetch-site': 'same-site' }],
      ['right Origin, but cross-site', { origin: stack.url, 'sec-fetch-site': 'cross-site' }],
      ['Referer of the page only', { referer: `${stack.url}/admin` }],
    ];
    for (const target of targets) {
      for (const [what, headers] of forgeries) {
        const res = await fetch(`${stack.url}${target}`, {
          method: 'DELETE',
          headers: { cookie: admin.get(stack.url), ...headers },
        });
        expect(res.status, `${what}: ${target}`).toBe(403);
      }
      // A form can only POST: no method override turns it into a DELETE.
      for (const [what, init] of [
        ['X-HTTP-Method-Override', { headers: { 'x-http-method-override': 'DELETE' } }],
        ['X-Method-Override', { headers: { 'x-method-override': 'DELETE' } }],
        [
          '_method in a form body',
          {
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
            body: '_method=DELETE',
          },
        ],
      ] as const) {
        const res = await fetch(`${stack.url}${target}${target.includes('?') ? '&' : '?'}_method=DELETE`, {
          method: 'POST',
          ...init,
          headers: { cookie: admin.get(stack.url), origin: stack.url, ...init.headers },
        });
        expect(res.status, `${what}: ${target}`).toBe(405);
      }
    }
    // Nothing happened to the victim.
    expect(
      stack.proxy.logs.filter(
        (l) => String(l.audit).startsWith('admin_') && l.audit !== 'admin_auth_failure',
      ),
    ).toEqual([]);
    expect((await mcpCall(stack.url, victimMcp.accessToken)).status).toBe(200);
    const page = await fetch(`${stack.url}/`, {
      headers: { cookie: victimJar.get(stack.url) },
      redirect: 'manual',
    });
    expect(page.status).not.toBe(302);
    // The same change from the page's own origin works.
    const real = await fetch(`${stack.url}/admin/api/users/victim`, {
      method: 'DELETE',
      headers: { cookie: admin.get(stack.url), origin: stack.url },
    });
    expect(real.status).toBe(200);
    await victimMcp.client.close();
  });
});

describe('what the admin API, the page, the logs and the spans must never show', () => {
  let stack: OidcStack;
  let redis: RedisServer;
  let receiver: OtlpReceiver;
  const REDIS_PASSWORD = `redis-${randomBytes(12).toString('hex')}`;
  const SESSION_SECRET = randomBytes(32).toString('base64url');
  /** Every admin response body and the page. */
  const shown: string[] = [];
  /** What an attacker would like to find there. */
  const secrets = new Map<string, string>([
    ['ADMIN_TOKEN', ADMIN_TOKEN],
    ['SESSION_SECRET', SESSION_SECRET],
    ['Redis password', REDIS_PASSWORD],
  ]);
  const echoes: Array<Record<string, string>> = [];

  beforeAll(async () => {
    redis = await startRedisServer(await freePort());
    const client = new Redis(redis.url);
    await client.config('SET', 'requirepass', REDIS_PASSWORD);
    client.disconnect();
    receiver = await startOtlpReceiver();
    stack = await startOidcStack(
      {
        ADMIN_ENABLED: 'true',
        ADMIN_TOKEN,
        ADMIN_GROUPS: 'engineering',
        SESSION_STORE: 'redis',
        REDIS_URL: `redis://:${REDIS_PASSWORD}@127.0.0.1:${redis.port}`,
        SESSION_SECRET,
        TRACING_ENABLED: 'true',
        TRACING_ENDPOINT: receiver.url,
        FORWARD_ACCESS_TOKEN: 'true',
        FORWARD_ID_TOKEN: 'true',
      },
      { users: [...DEFAULT_DEV_USERS, person('carol', ['mcp-users'])] },
    );
    stack.backend.server.on('request', (req: IncomingMessage) => {
      const forwarded: Record<string, string> = {};
      for (const name of ['x-forwarded-access-token', 'x-forwarded-id-token']) {
        const value = req.headers[name];
        if (typeof value === 'string') forwarded[name] = value;
      }
      echoes.push(forwarded);
    });
  });
  afterAll(async () => {
    await stack?.close();
    await receiver?.close();
    await redis?.stop();
  });

  async function adminGet(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const res = await fetch(`${stack.url}${path}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...headers },
    });
    shown.push(await res.clone().text());
    return res;
  }

  it('shows no session id, cookie, token, token hash, code, verifier, client secret or configured secret anywhere', async () => {
    // Browser sessions: the raw ids and the signed cookies.
    for (const user of [alice, as('carol')]) {
      const jar = await signInThroughProxy(stack.url, user);
      for (const cookie of jar.list(stack.url)) {
        secrets.set(`cookie ${cookie.name}`, cookie.value);
        secrets.set(`session id ${cookie.name}`, cookie.value.slice(0, cookie.value.lastIndexOf('.')));
      }
      // The provider's tokens the backend gets with FORWARD_ACCESS_TOKEN / FORWARD_ID_TOKEN.
      expect((await fetch(`${stack.url}/x`, { headers: { cookie: jar.get(stack.url) } })).status).toBe(200);
      for (const [name, value] of Object.entries(echoes.at(-1) ?? {})) secrets.set(`provider ${name}`, value);
      // A confidential client (its secret), through a whole authorization with PKCE.
      const registered = await register(stack.url, {
        client_name: 'Confidential',
        token_endpoint_auth_method: 'client_secret_post',
      });
      const clientId = String(registered.client_id);
      secrets.set('client_secret', String(registered.client_secret));
      const grant = await authorizationCode(stack.url, clientId, jar, user);
      secrets.set('authorization code', grant.code);
      secrets.set('code hash', createHash('sha256').update(grant.code).digest('base64url'));
      secrets.set('PKCE verifier', grant.verifier);
      const tokenRes = await fetch(`${stack.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: grant.code,
          code_verifier: grant.verifier,
          redirect_uri: REDIRECT_URL,
          client_id: clientId,
          client_secret: String(registered.client_secret),
        }),
      });
      expect(tokenRes.status).toBe(200);
      const tokens = await body(tokenRes);
      const refreshToken = String(tokens.refresh_token);
      secrets.set('access token', String(tokens.access_token));
      secrets.set('refresh token', refreshToken);
      secrets.set('refresh token hash', createHash('sha256').update(refreshToken).digest('base64url'));
      expect((await mcpCall(stack.url, String(tokens.access_token))).status).toBe(200);
      // A failed refresh and a failed admin login, with their tokens in the request.
      expect((await refresh(stack.url, clientId, 'A'.repeat(43))).status).toBe(401);
    }
    const wrong = `wrong-${randomBytes(20).toString('hex')}`;
    secrets.set('a wrong admin token', wrong);
    expect((await adminGet('/admin/api/status', { authorization: `Bearer ${wrong}` })).status).toBe(401);

    for (const path of [
      '/admin',
      '/admin/app.js',
      '/admin/api/status',
      '/admin/api/sessions',
      '/admin/api/clients',
      '/admin/api/tokens',
      '/admin/api/sessions?q=a',
      '/admin/api/nope',
      '/admin/api/sessions?limit=0',
    ]) {
      await adminGet(path);
    }
    // Error answers when the store is down: 503, and what the status says about it.
    await redis.stop();
    expect((await adminGet('/admin/api/sessions')).status).toBe(503);
    // (The health probe is cached for a moment: wait for it to see the outage.)
    await waitFor(
      async () =>
        ((await body(await adminGet('/admin/api/status'))).store as { status: string }).status ===
        'unhealthy',
      10_000,
      'the status to report the store down',
    );

    const spans = await receiver.waitForSpans((all) => all.some((s) => s.name.includes('/token')));
    const exported = receiver.requests.map((r) => r.body).join('\n');
    const everything = { 'admin responses': shown.join('\n'), logs: stack.proxy.logText(), spans: exported };
    expect(secrets.size).toBeGreaterThan(15);
    for (const [where, text] of Object.entries(everything)) {
      for (const [what, secret] of secrets) {
        expect(secret.length, what).toBeGreaterThan(8);
        expect(text.includes(secret), `${what} in ${where}`).toBe(false);
      }
      expect(text, where).not.toMatch(/at [\w.<>]+ \(|node:internal|\.[jt]s:\d+:\d+/);
    }
    expect(spans.length).toBeGreaterThan(0);
  });
});

describe('revoking a user or a client: nothing of theirs may survive, nothing of others may be touched', () => {
  let stack: OidcStack;
  let redis: RedisServer;
  /** Subjects that look like store keys, glob patterns or encodings of another user's. */
  const ODD_SUBJECTS = [
    '*',
    'carol*',
    'c?rol',
    '[c]arol',
    'carol:x',
    'carol%3Ax',
    'carol/x',
    'ｃarol',
    'carol\u0000',
  ];
  const odd = ODD_SUBJECTS.map((sub, i) => person(`odd${i}`, ['mcp-users'], { sub }));
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

  beforeAll(async () => {
    redis = await startRedisServer(await freePort());
    stack = await startOidcStack(
      {
        ADMIN_ENABLED: 'true',
        ADMIN_TOKEN,
        SESSION_STORE: 'redis',
        REDIS_URL: redis.url,
        // Many logins and token requests from one address.
        AUTH_RATE_LIMIT_PER_MINUTE: '100000',
      },
      {
        users: [
          ...DEFAULT_DEV_USERS,
          person('carol', ['mcp-users']),
          person('dana', ['mcp-users']),
          person('erin', ['mcp-users']),
          ...odd,
        ],
      },
    );
  });
  afterAll(async () => {
    await stack?.close();
    await redis?.stop();
  });

  /** A user's whole footprint: a browser session, a client with a grant and a consent, and tokens. */
  async function footprint(user: User): Promise<{
    jar: CookieJar;
    clientId: string;
    accessToken: string;
    refreshToken: string;
  }> {
    const jar = await signInThroughProxy(stack.url, user);
    const clientId = String(
      (await register(stack.url, { client_name: `client of ${user.username}` })).client_id,
    );
    const tokens = await body(
      await redeem(stack.url, clientId, await authorizationCode(stack.url, clientId, jar, user)),
    );
    return {
      jar,
      clientId,
      accessToken: String(tokens.access_token),
      refreshToken: String(tokens.refresh_token),
    };
  }

  const revokeUser = (subject: string) =>
    fetch(`${stack.url}/admin/api/users?subject=${encodeURIComponent(subject)}`, {
      method: 'DELETE',
      headers: auth,
    });

  it('a code issued just before the revocation cannot be redeemed after it', async () => {
    const user = as('dana');
    const { jar, clientId } = await footprint(user);
    const pending = await authorizationCode(stack.url, clientId, jar, user);
    const res = await revokeUser('dana');
    expect(res.status).toBe(200);
    expect((await body(res)).authorization_codes_revoked).toBe(1);
    const late = await redeem(stack.url, clientId, pending);
    expect(late.status).toBe(400);
    expect((await body(late)).error).toBe('invalid_grant');
    // A revocation signs the user out; it is no ban: a sign-in after it (the cut-off has a
    // resolution of one second) works again, with the same client.
    const revokedAt = Date.parse(String((await body(await revokeUser('dana'))).access_tokens_revoked_before));
    await waitFor(
      () => Math.floor(Date.now() / 1000) > Math.floor(revokedAt / 1000),
      3000,
      'the next second',
    );
    const again = await redeem(
      stack.url,
      clientId,
      await authorizationCode(stack.url, clientId, new CookieJar(), user),
    );
    expect(again.status).toBe(200);
    const tokens = await body(again);
    expect((await mcpCall(stack.url, String(tokens.access_token))).status).toBe(200);
    expect((await refresh(stack.url, clientId, String(tokens.refresh_token))).status).toBe(200);
  });

  it('tokens minted by refreshes and code exchanges racing the revocation are refused once it has answered', async () => {
    const user = as('erin');
    const clients = await Promise.all(Array.from({ length: 6 }, () => footprint(user)));
    const pending = await Promise.all(
      clients.map(async (c) => ({
        clientId: c.clientId,
        grant: await authorizationCode(stack.url, c.clientId, c.jar, user),
      })),
    );
    // Everything at once: six refreshes, six code exchanges and the revocation.
    const racing = [
      ...clients.map((c) => refresh(stack.url, c.clientId, c.refreshToken)),
      ...pending.map((p) => redeem(stack.url, p.clientId, p.grant)),
    ];
    const [revoked, ...answers] = await Promise.all([revokeUser('erin'), ...racing]);
    expect(revoked.status).toBe(200);
    let issued = 0;
    for (const [i, answer] of answers.entries()) {
      if (answer.status !== 200) continue;
      issued++;
      const tokens = await body(answer);
      const clientId = (i < clients.length ? clients[i] : pending[i - clients.length])?.clientId ?? '';
      expect((await mcpCall(stack.url, String(tokens.access_token))).status, `access token ${i}`).toBe(401);
      expect(
        (await refresh(stack.url, clientId, String(tokens.refresh_token))).status,
        `refresh token ${i}`,
      ).toBe(400);
    }
    // And what they held before.
    for (const c of clients) expect((await mcpCall(stack.url, c.accessToken)).status).toBe(401);
    expect(
      (await body(await fetch(`${stack.url}/admin/api/tokens?user=erin`, { headers: auth }))).total,
      `grants left (of ${issued} issued while racing)`,
    ).toBe(0);
  });

  it('subjects that look like patterns, separators or encodings revoke only themselves', async () => {
    const carol = await footprint(as('carol'));
    const oddOnes = await Promise.all(odd.map((u) => footprint(as(u.username))));
    for (const subject of ODD_SUBJECTS) {
      const res = await revokeUser(subject);
      expect(res.status, subject).toBe(200);
      expect(await body(res), subject).toMatchObject({
        subject,
        sessions_revoked: 1,
        grants_revoked: 1,
        consents_revoked: 1,
      });
    }
    // Each of them is gone ...
    for (const [i, o] of oddOnes.entries()) {
      expect((await mcpCall(stack.url, o.accessToken)).status, ODD_SUBJECTS[i]).toBe(401);
      expect((await refresh(stack.url, o.clientId, o.refreshToken)).status, ODD_SUBJECTS[i]).toBe(400);
    }
    // ... and carol, whose id each of them resembles, still has everything.
    expect((await mcpCall(stack.url, carol.accessToken)).status).toBe(200);
    const refreshed = await refresh(stack.url, carol.clientId, carol.refreshToken);
    expect(refreshed.status).toBe(200);
    const page = await fetch(`${stack.url}/x`, {
      headers: { cookie: carol.jar.get(stack.url) },
      redirect: 'manual',
    });
    expect(page.status).toBe(200);
    expect((await authorizationCode(stack.url, carol.clientId, carol.jar, as('carol'))).consentShown).toBe(
      false,
    );
  });

  it('client ids that look like patterns or encodings delete nothing of another client', async () => {
    const carol = await footprint(as('carol'));
    for (const id of [
      '*',
      `${carol.clientId.slice(0, 4)}*`,
      '?'.repeat(carol.clientId.length),
      `[${carol.clientId[0]}]*`,
      `${carol.clientId}%00`,
      `${carol.clientId} `,
    ]) {
      const res = await fetch(`${stack.url}/admin/api/clients?client_id=${encodeURIComponent(id)}`, {
        method: 'DELETE',
        headers: auth,
      });
      expect(res.status, id).toBe(404);
    }
    expect((await mcpCall(stack.url, carol.accessToken)).status).toBe(200);
    expect((await refresh(stack.url, carol.clientId, carol.refreshToken)).status).toBe(200);
    // Deleting the client itself ends its tokens at once.
    const res = await fetch(`${stack.url}/admin/api/clients/${carol.clientId}`, {
      method: 'DELETE',
      headers: auth,
    });
    expect(res.status).toBe(200);
    expect((await mcpCall(stack.url, carol.accessToken)).status).toBe(401);
  });
});

describe('rate limits: whose budget an attacker can spend', () => {
  let stack: OidcStack;
  const PER_MINUTE = 5;

  beforeAll(async () => {
    stack = await startOidcStack(
      {
        ADMIN_ENABLED: 'true',
        ADMIN_TOKEN,
        RATE_LIMIT_PER_MINUTE: String(PER_MINUTE),
        AUTH_RATE_LIMIT_PER_MINUTE: '100000',
        TRUSTED_PROXIES: '127.0.0.1',
      },
      { users: [...DEFAULT_DEV_USERS, person('victim', ['mcp-users'])] },
    );
  });
  afterAll(async () => {
    await stack?.close();
  });

  /** A request to a forwarded path, as a trusted proxy reporting `ip`. */
  const from = (ip: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${stack.url}/x`, { headers: { 'x-forwarded-for': ip, ...headers } });

  it("tokens that merely name the victim (forged, unsigned, tampered) spend the sender's budget, never the victim's", async () => {
    const jar = await signInThroughProxy(stack.url, as('victim'));
    const clientId = String((await register(stack.url, { client_name: 'victim app' })).client_id);
    const tokens = await body(
      await redeem(stack.url, clientId, await authorizationCode(stack.url, clientId, jar, as('victim'))),
    );
    const real = String(tokens.access_token);
    const [header = '', payload = '', signature = ''] = real.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
    const { kid } = JSON.parse(Buffer.from(header, 'base64url').toString()) as { kid: string };
    const { privateKey } = await generateKeyPair('ES256');
    const forgeries = {
      'signed with another key, our kid': await new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' })
        .sign(privateKey),
      'alg none': `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt', kid })).toString('base64url')}.${payload}.`,
      'tampered signature': `${header}.${payload}.${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BB' : 'AA'}`,
      'expired claims, re-encoded': `${header}.${Buffer.from(JSON.stringify({ ...claims, exp: 1 })).toString('base64url')}.${signature}`,
    };
    const attacker = freshAddress();
    for (const [what, forged] of Object.entries(forgeries)) {
      for (let i = 0; i < PER_MINUTE; i++) {
        const res = await from(attacker, { authorization: `Bearer ${forged}` });
        expect([401, 429], what).toContain(res.status);
      }
    }
    // The sender's address is what paid: anonymous requests from it are refused now.
    expect((await from(attacker)).status).toBe(429);
    // The victim, from anywhere else, has the whole budget.
    const statuses: number[] = [];
    for (let i = 0; i <= PER_MINUTE; i++) {
      statuses.push((await from(freshAddress(), { authorization: `Bearer ${real}` })).status);
    }
    expect(statuses).toEqual([...Array<number>(PER_MINUTE).fill(200), 429]);
  });

  it('counts every spelling of one address in one budget (IPv4-mapped IPv6, case, zero compression)', async () => {
    for (const spellings of [
      [
        '198.51.100.200',
        '::ffff:198.51.100.200',
        '::FFFF:198.51.100.200',
        '::ffff:c633:64c8',
        '0:0:0:0:0:ffff:c633:64c8',
        '0000:0000:0000:0000:0000:FFFF:C633:64C8',
      ],
      [
        '2001:db8::7',
        '2001:DB8::7',
        '2001:db8:0:0:0:0:0:7',
        '2001:0db8:0000:0000:0000:0000:0000:0007',
        '2001:db8::0:7',
      ],
    ]) {
      const statuses: number[] = [];
      for (const ip of [...spellings, ...spellings].slice(0, PER_MINUTE + 2))
        statuses.push((await from(ip)).status);
      expect(statuses, spellings[0]).toEqual([...Array<number>(PER_MINUTE).fill(401), 429, 429]);
    }
  });

  it('counts failed admin tokens per address whatever its spelling', async () => {
    const spellings = [
      '198.51.100.201',
      '::ffff:198.51.100.201',
      '::ffff:c633:64c9',
      '0:0:0:0:0:FFFF:C633:64C9',
    ];
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await fetch(`${stack.url}/admin/api/status`, {
        headers: {
          'x-forwarded-for': spellings[i % spellings.length] ?? '',
          authorization: `Bearer guess-${i}`,
        },
      });
      statuses.push(res.status);
    }
    expect(statuses).toEqual([...Array<number>(10).fill(401), 429, 429]);
    // The right token from that address waits too; from another it works.
    const right = { authorization: `Bearer ${ADMIN_TOKEN}` };
    expect(
      (
        await fetch(`${stack.url}/admin/api/status`, {
          headers: { 'x-forwarded-for': '198.51.100.201', ...right },
        })
      ).status,
    ).toBe(429);
    expect(
      (
        await fetch(`${stack.url}/admin/api/status`, {
          headers: { 'x-forwarded-for': freshAddress(), ...right },
        })
      ).status,
    ).toBe(200);
  });
});

describe('reloading: what the --config path may be swapped for (SIGHUP to the built CLI)', () => {
  const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-operator-attacks-'));
  let a: Listening;
  let b: Listening;
  let child: ChildProcess;
  let log: JsonLog;
  let url: string;
  let file: string;
  let port: number;

  /** The file the proxy was started with, pointing at `target`. */
  const yaml = (target: string, extra: string[] = []): string =>
    [
      'server:',
      '  host: 127.0.0.1',
      `  port: ${port}`,
      'proxy:',
      `  target_url: ${target}`,
      'auth:',
      '  mode: bypass',
      ...extra,
      '',
    ].join('\n');

  /** Puts `what` where the config file was (written aside and renamed, or a symlink), then SIGHUP. */
  async function swapAndReload(place: (path: string) => void): Promise<Record<string, unknown>> {
    rmSync(file, { force: true });
    place(file);
    const line = log.next(
      (l) => typeof l.msg === 'string' && /^configuration reload/.test(l.msg),
      'the reload log line',
    );
    child.kill('SIGHUP');
    return line;
  }

  /** Which backend answers now (each says its name). */
  const answeredBy = async (): Promise<string> => String((await rawGet(url, '/which')).json().name);

  beforeAll(async () => {
    const named = (name: string) =>
      startBackend((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ name }));
      });
    [a, b] = await Promise.all([named('A'), named('B')]);
    port = await freePort();
    url = `http://127.0.0.1:${port}`;
    file = join(dir, 'proxy.yaml');
    writeFileSync(file, yaml(a.url));
    child = spawn(process.execPath, [MAIN, '--config', file], {
      env: { PATH: process.env.PATH ?? '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    log = jsonLines(child);
    await log.next((l) => l.msg === 'mcp-oidc-proxy listening', 'the proxy to listen');
  });
  afterAll(async () => {
    if (child?.exitCode === null) await terminate(child);
    await Promise.all([a?.close(), b?.close()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a FIFO at the path without hanging, and keeps serving', async () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const line = await swapAndReload((path) => symlinkSync(fifo, path));
    expect(line.msg).toMatch(/^configuration reload refused/);
    expect(String(line.msg)).toContain('not a regular file');
    expect((await rawGet(url, '/health')).status).toBe(200);
    expect(await answeredBy()).toBe('A');
    // The FIFO itself, renamed into place (no symlink), and a directory.
    const direct = await swapAndReload((path) => execFileSync('mkfifo', [path]));
    expect(String(direct.msg)).toContain('not a regular file');
    const directory = await swapAndReload((path) => mkdirSync(path));
    expect(String(directory.msg)).toContain('not a regular file');
    rmSync(file, { recursive: true, force: true });
    expect(await answeredBy()).toBe('A');
  });

  it('refuses a file far larger than any configuration without reading it whole', async () => {
    const big = join(dir, 'big.yaml');
    writeFileSync(big, yaml(b.url));
    truncateSync(big, 64 * 1024 * 1024); // sparse: 64 MiB of NULs after a valid start
    const line = await swapAndReload((path) => symlinkSync(big, path));
    expect(String(line.msg)).toMatch(/^configuration reload refused.*larger than/);
    expect(await answeredBy()).toBe('A');
  });

  it('does not quote a secret file it is pointed at, whatever its shape', async () => {
    const SECRET_VALUE = `s3cr3t-${randomBytes(12).toString('hex')}`;
    const shapes = [
      `root:${SECRET_VALUE}:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n`, // /etc/shadow
      `aws_secret_access_key: ${SECRET_VALUE}\n`, // a mapping of unknown keys
      `${SECRET_VALUE}: [unclosed\n`, // invalid YAML whose first line is the secret
      `- ${SECRET_VALUE}\n`, // a list
      `proxy:\n  target_url: http://user:${SECRET_VALUE}@127.0.0.1:${b.port}\n`, // credentials in a URL
      `proxy:\n  target_url: http://${SECRET_VALUE}@127.0.0.1:${b.port}\n`,
    ];
    for (const [i, text] of shapes.entries()) {
      const secretFile = join(dir, `secret-${i}`);
      writeFileSync(secretFile, text);
      const line = await swapAndReload((path) => symlinkSync(secretFile, path));
      expect(line.msg, text).toMatch(/^configuration reload refused/);
    }
    expect(JSON.stringify(log.lines)).not.toContain(SECRET_VALUE);
    expect(await answeredBy()).toBe('A');
  });

  it('survives a storm of SIGHUPs switching the target, without leaking connections', async () => {
    const fds = (): number => readdirSync(`/proc/${child.pid}/fd`).length;
    await swapAndReload((path) => writeFileSync(path, yaml(a.url)));
    const before = fds();
    // (Raw requests with Connection: close, so that no client connection stays open either.)
    const answers: Array<Promise<RawResponse>> = [];
    for (let i = 0; i < 100; i++) {
      writeFileSync(`${file}.tmp`, yaml(i % 2 === 0 ? b.url : a.url));
      renameSync(`${file}.tmp`, file);
      child.kill('SIGHUP');
      answers.push(rawGet(url, '/which'));
    }
    for (const res of await Promise.all(answers)) expect(res.status).toBe(200);
    // Signals arriving together may be handled as one: one more, once the storm is over, says
    // where it all ended.
    const last = await swapAndReload((path) => writeFileSync(path, yaml(b.url, ['log:', '  level: warn'])));
    expect(last.msg).toMatch(/^configuration reloaded: applied .*LOG_LEVEL/);
    expect(child.exitCode).toBeNull();
    expect(await answeredBy()).toBe('B');
    // Every pool the storm replaced closes once idle: the open descriptors come back down.
    await waitFor(() => fds() <= before + 4, 15_000, `descriptors back near ${before} (now ${fds()})`);
  });
});

describe('trace context an attacker sends while tracing is on', () => {
  let receiver: OtlpReceiver;
  let backend: Listening;
  let proxy: TestProxy;
  const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
  const PARENT = `00-${TRACE_ID}-00f067aa0ba902b7-01`;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    backend = await startEchoBackend();
    proxy = await startTestProxy({
      PROXY_TARGET_URL: backend.url,
      TRACING_ENABLED: 'true',
      TRACING_ENDPOINT: receiver.url,
      ADMIN_ENABLED: 'true',
      ADMIN_TOKEN,
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await backend?.close();
    await receiver?.close();
  });

  /** What the backend received, for a request with these headers. */
  async function forwarded(
    headers: Array<[string, string]>,
  ): Promise<{ res: Response; seen: Record<string, string> }> {
    const res = await fetch(`${proxy.url}/x`, { headers });
    expect(res.status).toBe(200);
    const seen = ((await res.clone().json()) as { headers: Record<string, string> }).headers;
    return { res, seen };
  }

  it('passes on at most 32 valid tracestate members in 512 characters, however many are sent', async () => {
    const many = Array.from({ length: 1200 }, (_, i) => `k${i}=v${i}`).join(','); // ~13 KB
    const huge = `big=${'x'.repeat(250)},${Array.from({ length: 40 }, (_, i) => `m${i}=${'y'.repeat(20)}`).join(',')}`;
    const invalid = [
      'UPPER=1',
      'sp ace=1',
      'k=v with space',
      'k=,',
      '=v',
      'k=v\u00e9',
      'ok=1',
      `long=${'z'.repeat(300)}`,
    ].join(',');
    for (const tracestate of [many, huge, invalid]) {
      const { res, seen } = await forwarded([
        ['traceparent', PARENT],
        ['tracestate', tracestate],
      ]);
      // The trace is continued under the proxy's own span, never the client's parent id.
      expect(seen.traceparent).toMatch(new RegExp(`^00-${TRACE_ID}-[0-9a-f]{16}-01$`));
      expect(seen.traceparent).not.toBe(PARENT);
      const passed = seen.tracestate ?? '';
      expect(passed.length, tracestate.slice(0, 20)).toBeLessThanOrEqual(512);
      const members = passed === '' ? [] : passed.split(',');
      expect(members.length).toBeLessThanOrEqual(32);
      // W3C Trace Context §3.3.1.3: a lower-case key, and a value of printable characters (inner
      // spaces allowed) without `,` or `=`.
      for (const member of members) {
        expect(member).toMatch(
          /^[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/,
        );
      }
      // Nothing of it is reflected to the client.
      expect(res.headers.get('traceparent')).toBeNull();
      expect(res.headers.get('tracestate')).toBeNull();
    }
  });

  it('refuses trace context with control characters, and a CRLF only ever ends the field', async () => {
    for (const [name, value] of [
      ['traceparent', `${PARENT}\rX-Injected: 1`],
      ['tracestate', 'a=b\rX-Injected: 1'],
      ['tracestate', 'a=b\u0000c'],
    ]) {
      const res = await rawGet(proxy.url, '/x', [`${name}: ${value}`]);
      expect(res.status, JSON.stringify(value)).toBe(400);
      expect(res.body).not.toContain('X-Injected');
    }
    // `a=b CRLF X-Injected: 1` is two fields the client sent; the tracestate passed on is `a=b`.
    const split = await rawGet(proxy.url, '/x', [
      `traceparent: ${PARENT}`,
      'tracestate: a=b',
      'X-Injected: 1',
    ]);
    const seen = (split.json().headers ?? {}) as Record<string, string>;
    expect(seen.tracestate).toBe('a=b');
    for (const value of Object.values(seen)) {
      expect(['\r', '\n', '\u0000'].some((c) => String(value).includes(c))).toBe(false);
    }
  });

  it('does not reflect trace context in the answers the proxy writes itself', async () => {
    const headers = [`traceparent: ${PARENT}`, `tracestate: evil=${'1'.repeat(100)}`];
    for (const target of ['/health', '/metrics', '/admin/api/status', '/admin', '/%zz']) {
      const res = await rawGet(proxy.url, target, headers);
      expect(res.get('traceparent'), target).toBeUndefined();
      expect(res.get('tracestate'), target).toBeUndefined();
      expect(res.body, target).not.toContain(`evil=${'1'.repeat(100)}`);
    }
    // The spans continue the trace asked for (and carry its tracestate, bounded as above).
    await receiver.waitForSpans((spans) =>
      spans.some((s) => s.traceId === TRACE_ID && s.name.includes('/health')),
    );
    for (const request of receiver.requests) {
      for (const [, state] of request.body.matchAll(/"traceState":"([^"]*)"/g)) {
        expect((state ?? '').length).toBeLessThanOrEqual(512);
      }
    }
  });
});

describe('a reload that withdraws an origin or a trusted proxy, and the WebSockets already open', () => {
  it('keeps an open tunnel (as documented) but refuses the next upgrade and request from that origin', async () => {
    const wsBackend = await listen(createServer());
    const wss = new WebSocketServer({ server: wsBackend.server });
    wss.on('connection', (socket, req) => {
      socket.on('message', (data) => socket.send(`${data} via ${req.headers['x-forwarded-for']}`));
    });
    const APP = 'https://app.example.com';
    const env = { PROXY_TARGET_URL: wsBackend.url, ALLOWED_ORIGINS: APP, TRUSTED_PROXIES: '127.0.0.1' };
    const proxy = await startTestProxy(env);
    const wsUrl = `${proxy.url.replace('http', 'ws')}/ws`;
    const open = (): Promise<WebSocket> =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(wsUrl, { origin: APP, headers: { 'x-forwarded-for': '203.0.113.5' } });
        ws.once('open', () => resolve(ws));
        ws.once('unexpected-response', (_req, res) => reject(new Error(`refused: ${res.statusCode}`)));
        ws.once('error', reject);
      });
    const echo = (ws: WebSocket, text: string): Promise<string> =>
      new Promise((resolve) => {
        ws.once('message', (data) => resolve(String(data)));
        ws.send(text);
      });
    try {
      const live = await open();
      expect(await echo(live, 'before')).toBe('before via 203.0.113.5, 127.0.0.1');
      const next = testProxyConfig({ PROXY_TARGET_URL: wsBackend.url });
      expect(proxy.proxy.reload(next).applied).toEqual(['ALLOWED_ORIGINS', 'TRUSTED_PROXIES']);
      // Running streams keep what they started with ...
      expect(await echo(live, 'after')).toBe('after via 203.0.113.5, 127.0.0.1');
      // ... and everything new is judged by the new settings.
      await expect(open()).rejects.toThrow('refused: 403');
      const plain = await fetch(`${proxy.url}/x`, { headers: { origin: APP } });
      expect(plain.status).toBe(403);
      live.close();
    } finally {
      await proxy.close();
      wss.close();
      await wsBackend.close();
    }
  });
});
