import { createServer, type IncomingHttpHeaders } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { alice, authorizeInBrowser, HeadlessOAuthProvider } from '../helpers/mcp-oauth-client.js';
import { CLIENT_SECRET, type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from '../helpers/otlp-receiver.js';
import {
  freePort,
  type Listening,
  listen,
  startEchoBackend,
  startTestProxy,
  type TestProxy,
  waitFor,
} from '../helpers/servers.js';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const SAMPLED_PARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])$/;

interface Echo {
  url: string;
  headers: IncomingHttpHeaders;
}

// The batch processor's delay (the standard OTEL_BSP_SCHEDULE_DELAY, read when a proxy starts):
// spans reach the receiver within a tick instead of the default 5 s.
beforeAll(() => {
  vi.stubEnv('OTEL_BSP_SCHEDULE_DELAY', '20');
});
afterAll(() => {
  vi.unstubAllEnvs();
});

function traceparentOf(echo: Echo): { traceId: string; spanId: string; flags: string } {
  const value = echo.headers.traceparent;
  const m = typeof value === 'string' ? TRACEPARENT.exec(value) : null;
  if (!m) throw new Error(`the backend got no valid traceparent: ${JSON.stringify(value)}`);
  return { traceId: m[1] as string, spanId: m[2] as string, flags: m[3] as string };
}

function only(spans: ReceivedSpan[], predicate: (span: ReceivedSpan) => boolean, what: string): ReceivedSpan {
  const found = spans.filter(predicate);
  if (found.length !== 1) {
    throw new Error(`expected one ${what}, found ${found.length}: ${spans.map((s) => s.name).join(', ')}`);
  }
  return found[0] as ReceivedSpan;
}

describe('tracing in bypass mode (sampling, propagation, failures)', () => {
  let receiver: OtlpReceiver;
  let backend: Listening;
  const proxies: TestProxy[] = [];

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    backend = await startEchoBackend();
  });
  afterEach(async () => {
    await Promise.all(proxies.splice(0).map((p) => p.close()));
    receiver.spans.length = 0;
    receiver.requests.length = 0;
  });
  afterAll(async () => {
    await receiver.close();
    await backend.close();
  });

  async function proxyWith(env: Record<string, string>): Promise<TestProxy> {
    const proxy = await startTestProxy({ PROXY_TARGET_URL: backend.url, ...env });
    proxies.push(proxy);
    return proxy;
  }

  it('names the MCP method and tool on the request span when mcp_access inspects it', async () => {
    const proxy = await proxyWith({
      TRACING_ENABLED: 'true',
      TRACING_ENDPOINT: receiver.url,
      MCP_ACCESS: JSON.stringify({ rules: [{ tools: ['*'] }] }),
    });
    const call = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: {} } };
    const res = await fetch(`${proxy.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(call),
    });
    expect(res.status).toBe(200);
    const spans = await receiver.waitForSpans((s) => s.some((span) => span.kind === 'server'));
    const server = only(spans, (s) => s.kind === 'server', 'server span');
    expect(server.attributes).toMatchObject({ 'mcp.method': 'tools/call', 'mcp.tool.name': 'echo' });
  });

  it('continues an incoming trace and hands the backend its own client span as parent', async () => {
    const proxy = await proxyWith({ TRACING_ENABLED: 'true', TRACING_ENDPOINT: receiver.url });
    const res = await fetch(`${proxy.url}/mcp?code=secret-code&x=1`, {
      method: 'POST',
      headers: { traceparent: SAMPLED_PARENT, tracestate: 'vendor=abc', 'x-request-id': 'req-42' },
      body: '{}',
    });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    const sent = traceparentOf(echo);
    // The client's own header is replaced, not forwarded next to the proxy's.
    expect(echo.headers.traceparent).not.toBe(SAMPLED_PARENT);
    expect(sent).toMatchObject({ traceId: TRACE_ID, flags: '01' });
    expect(echo.headers.tracestate).toBe('vendor=abc');

    const spans = await receiver.waitForSpans((s) => s.length >= 2);
    const server = only(spans, (s) => s.kind === 'server', 'server span');
    const client = only(spans, (s) => s.kind === 'client', 'client span');
    expect(server).toMatchObject({
      traceId: TRACE_ID,
      parentSpanId: PARENT_ID,
      name: 'HTTP POST /mcp',
      attributes: {
        'http.request.method': 'POST',
        'http.route': '/mcp',
        'url.path': '/mcp',
        'url.query': 'code=[REDACTED]&x=1',
        'http.response.status_code': 200,
        'client.address': '127.0.0.1',
        'mcp_oidc_proxy.request_id': 'req-42',
        'mcp_oidc_proxy.route': 'mcp',
      },
      status: { code: 0 },
      resource: { 'service.name': 'mcp-oidc-proxy', 'service.version': expect.any(String) },
    });
    expect(client).toMatchObject({
      traceId: TRACE_ID,
      parentSpanId: server.spanId,
      spanId: sent.spanId,
      name: 'HTTP POST',
      attributes: {
        'http.request.method': 'POST',
        'server.address': '127.0.0.1',
        'server.port': backend.port,
        'http.response.status_code': 200,
        'mcp_oidc_proxy.outcome': 'ok',
      },
    });
    expect(receiver.requests.map((r) => r.body).join('\n')).not.toContain('secret-code');
  });

  it('starts a new trace without a traceparent, named by route class for forwarded paths', async () => {
    const proxy = await proxyWith({ TRACING_ENABLED: 'true', TRACING_ENDPOINT: receiver.url });
    const echo = (await (await fetch(`${proxy.url}/some/thing`)).json()) as Echo;
    const sent = traceparentOf(echo);
    expect(sent.flags).toBe('01');
    const spans = await receiver.waitForSpans((s) => s.length >= 2);
    const server = only(spans, (s) => s.kind === 'server', 'server span');
    expect(server.parentSpanId).toBeUndefined();
    expect(server.traceId).toBe(sent.traceId);
    expect(server.name).toBe('HTTP GET (proxied)');
    expect(server.attributes['http.route']).toBeUndefined();
  });

  it('ignores malformed or ambiguous trace context: a new trace, none of it forwarded', async () => {
    const proxy = await proxyWith({ TRACING_ENABLED: 'true', TRACING_ENDPOINT: receiver.url });
    const hostile: Array<Array<[string, string]>> = [
      [['traceparent', 'garbage']],
      [['traceparent', `00-${'0'.repeat(32)}-${PARENT_ID}-01`]],
      [['traceparent', `00-${TRACE_ID}-${'0'.repeat(16)}-01`]],
      [['traceparent', `ff-${TRACE_ID}-${PARENT_ID}-01`]],
      [['traceparent', `00-${TRACE_ID.toUpperCase()}-${PARENT_ID}-01`]],
      [['traceparent', `00-${TRACE_ID}-${PARENT_ID}-01-${'x'.repeat(4000)}`.replace('00-', 'zz-')]],
      // Two fields are ambiguous (they arrive joined): neither is followed.
      [
        ['traceparent', SAMPLED_PARENT],
        ['traceparent', `00-${'1'.repeat(32)}-${PARENT_ID}-01`],
      ],
    ];
    for (const headers of hostile) {
      const res = await fetch(`${proxy.url}/mcp`, { headers: [...headers, ['tracestate', 'evil=1']] });
      expect(res.status).toBe(200);
      const echo = (await res.json()) as Echo;
      const sent = traceparentOf(echo);
      expect([TRACE_ID, '0'.repeat(32), '1'.repeat(32)]).not.toContain(sent.traceId);
      expect(echo.headers.tracestate).toBeUndefined();
    }
    const spans = await receiver.waitForSpans(
      (s) => s.filter((x) => x.kind === 'server').length >= hostile.length,
    );
    expect(spans.filter((s) => s.kind === 'server').every((s) => s.parentSpanId === undefined)).toBe(true);
  });

  it('with TRACING_SAMPLE_RATE=0 exports no new trace, but follows a sampled parent', async () => {
    const proxy = await proxyWith({
      TRACING_ENABLED: 'true',
      TRACING_ENDPOINT: receiver.url,
      TRACING_SAMPLE_RATE: '0',
    });
    const unsampled = (await (await fetch(`${proxy.url}/mcp`)).json()) as Echo;
    // Not recorded, yet the trace id still reaches the backend (flags 00: not sampled).
    expect(traceparentOf(unsampled).flags).toBe('00');
    const followed = (await (
      await fetch(`${proxy.url}/mcp`, { headers: { traceparent: SAMPLED_PARENT } })
    ).json()) as Echo;
    expect(traceparentOf(followed)).toMatchObject({ traceId: TRACE_ID, flags: '01' });
    // Shutdown flushes whatever is buffered: afterwards the receiver has everything there is.
    await proxy.close();
    expect(receiver.spans.length).toBe(2);
    expect(receiver.spans.every((s) => s.traceId === TRACE_ID)).toBe(true);
  });

  it('marks a failed upstream call: error status, error type and the retries', async () => {
    const closed = await freePort();
    const proxy = await startTestProxy({
      PROXY_TARGET_URL: `http://127.0.0.1:${closed}`,
      TRACING_ENABLED: 'true',
      TRACING_ENDPOINT: receiver.url,
    });
    proxies.push(proxy);
    expect((await fetch(`${proxy.url}/mcp`)).status).toBe(502);
    const spans = await receiver.waitForSpans((s) => s.length >= 2);
    const server = only(spans, (s) => s.kind === 'server', 'server span');
    const client = only(spans, (s) => s.kind === 'client', 'client span');
    expect(server).toMatchObject({
      status: { code: 2 },
      attributes: { 'http.response.status_code': 502, 'error.type': '502' },
    });
    expect(client).toMatchObject({
      parentSpanId: server.spanId,
      status: { code: 2, message: 'upstream_unavailable' },
      attributes: {
        'error.type': 'upstream_unavailable',
        'server.port': closed,
        'http.request.resend_count': expect.any(Number),
      },
    });
    expect(client.attributes['http.request.resend_count']).toBeGreaterThan(0);
  });

  it('gives a WebSocket upgrade a span whose context the backend receives', async () => {
    const upgrades: IncomingHttpHeaders[] = [];
    const server = createServer();
    const wss = new WebSocketServer({ server });
    wss.on('connection', (ws, req) => {
      upgrades.push(req.headers);
      ws.on('message', (data) => ws.send(data));
    });
    const wsBackend = await listen(server);
    try {
      const proxy = await startTestProxy({
        PROXY_TARGET_URL: wsBackend.url,
        TRACING_ENABLED: 'true',
        TRACING_ENDPOINT: receiver.url,
      });
      proxies.push(proxy);
      const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/ws`, {
        headers: { traceparent: SAMPLED_PARENT },
      });
      await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));
      ws.close();
      const spans = await receiver.waitForSpans((s) => s.length >= 1);
      const upgrade = only(spans, (s) => s.kind === 'server', 'upgrade span');
      expect(upgrade).toMatchObject({
        traceId: TRACE_ID,
        parentSpanId: PARENT_ID,
        name: 'HTTP GET (websocket)',
        attributes: { 'http.response.status_code': 101, 'mcp_oidc_proxy.route': 'websocket' },
      });
      expect(upgrades[0]?.traceparent).toBe(`00-${TRACE_ID}-${upgrade.spanId}-01`);
    } finally {
      wss.close();
      await wsBackend.close();
    }
  });

  it('with tracing off, passes the client trace context through untouched', async () => {
    const proxy = await proxyWith({});
    const echo = (await (
      await fetch(`${proxy.url}/mcp`, { headers: { traceparent: SAMPLED_PARENT, tracestate: 'vendor=abc' } })
    ).json()) as Echo;
    expect(echo.headers.traceparent).toBe(SAMPLED_PARENT);
    expect(echo.headers.tracestate).toBe('vendor=abc');
    expect(proxy.logText()).not.toContain('tracing enabled');
  });

  it('keeps serving quickly while the collector is down, and says so in the log once', async () => {
    const down = await freePort();
    // The exporter's standard timeout: it retries a refused connection with backoff until then.
    vi.stubEnv('OTEL_EXPORTER_OTLP_TIMEOUT', '1000');
    const proxy = await proxyWith({ TRACING_ENABLED: 'true', TRACING_ENDPOINT: `http://127.0.0.1:${down}` });
    vi.stubEnv('OTEL_EXPORTER_OTLP_TIMEOUT', undefined);
    const started = performance.now();
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`${proxy.url}/mcp`);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    const elapsed = performance.now() - started;
    await waitFor(
      () =>
        proxy.logs.some(
          (l) => l.msg === 'trace export failed; spans are dropped until the collector is reachable',
        ),
      5_000,
      'the export failure log line',
    );
    const failures = proxy.logs.filter((l) => String(l.msg).startsWith('trace export failed'));
    expect(failures).toHaveLength(1);
    expect(failures[0]).toMatchObject({ level: 'warn', endpoint: `http://127.0.0.1:${down}/v1/traces` });
    console.log(`20 requests with the collector down: ${elapsed.toFixed(0)} ms`);
    expect(elapsed).toBeLessThan(2_000);
    const closing = performance.now();
    await proxy.close();
    expect(performance.now() - closing).toBeLessThan(4_000);
  });
});

describe('tracing through the full oidc stack (real IdP, sessions, bearer tokens)', () => {
  let receiver: OtlpReceiver;
  let stack: OidcStack;
  let jar: CookieJar;
  /** Values that must never appear in anything exported. */
  const secrets: string[] = [CLIENT_SECRET, alice.password];

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // Access tokens that live 30 s are always within the proxy's refresh margin: every request
    // with the session refreshes them, so the refresh is traced too.
    stack = await startOidcStack(
      { TRACING_ENABLED: 'true', TRACING_ENDPOINT: receiver.url },
      { ttl: { AccessToken: 30 } },
    );
  });
  afterAll(async () => {
    await stack.close();
    await receiver.close();
  });

  const idpPort = (): number => Number(new URL(stack.idp.issuer).port);

  it('traces identity provider discovery at start as a trace of its own', async () => {
    const spans = await receiver.waitForSpans((s) => s.some((x) => x.name === 'idp.discovery'));
    const discovery = only(spans, (s) => s.name === 'idp.discovery', 'discovery span');
    expect(discovery).toMatchObject({
      kind: 'client',
      parentSpanId: undefined,
      status: { code: 0 },
      attributes: { 'server.address': '127.0.0.1', 'server.port': idpPort() },
    });
  });

  it('traces the login callback with the token exchange and userinfo calls as its children', async () => {
    const login = await loginThroughBrowserless(`${stack.url}/login`, alice);
    jar = login.jar;
    const callbackUrl = login.visited.find((u) => u.startsWith(`${stack.url}/callback?`)) as string;
    const query = new URL(callbackUrl).searchParams;
    secrets.push(query.get('code') as string, query.get('state') as string);
    for (const cookie of jar.list(stack.url)) secrets.push(cookie.value);

    const spans = await receiver.waitForSpans((s) => s.some((x) => x.name === 'idp.userinfo'));
    const callback = only(spans, (s) => s.name === 'HTTP GET /callback', 'callback span');
    expect(callback.attributes['url.query']).toMatch(/code=\[REDACTED\]/);
    expect(callback.attributes['url.query']).toMatch(/state=\[REDACTED\]/);
    // The login ends on a page behind the proxy, whose own request may refresh the session (with
    // its own userinfo call): only the callback's trace is looked at.
    const inCallback = spans.filter((s) => s.traceId === callback.traceId);
    for (const name of ['idp.token_exchange', 'idp.userinfo']) {
      expect(only(inCallback, (s) => s.name === name, name)).toMatchObject({
        kind: 'client',
        traceId: callback.traceId,
        parentSpanId: callback.spanId,
        attributes: { 'server.address': '127.0.0.1', 'server.port': idpPort() },
      });
    }
  });

  it('traces an MCP request with a session: lookup, token refresh, upstream call, user', async () => {
    const res = await fetch(`${stack.url}/mcp`, {
      method: 'POST',
      headers: {
        cookie: jar.get(stack.url),
        traceparent: SAMPLED_PARENT,
        'content-type': 'application/json',
      },
      body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
    });
    expect(res.status).toBe(200);
    const echo = (await res.json()) as Echo;
    const user = echo.headers['x-forwarded-user'];
    expect(user).toEqual(expect.any(String));
    const sent = traceparentOf(echo);

    const spans = await receiver.waitForSpans((s) => s.some((x) => x.spanId === sent.spanId));
    const server = only(spans, (s) => s.traceId === TRACE_ID && s.kind === 'server', 'server span');
    expect(server).toMatchObject({
      parentSpanId: PARENT_ID,
      name: 'HTTP POST /mcp',
      attributes: { 'enduser.id': user, 'mcp_oidc_proxy.session': 'valid', 'http.response.status_code': 200 },
    });
    expect(only(spans, (s) => s.name === 'session.lookup' && s.traceId === TRACE_ID, 'lookup')).toMatchObject(
      { kind: 'internal', parentSpanId: server.spanId, status: { code: 0 } },
    );
    for (const name of ['idp.refresh', 'idp.userinfo']) {
      expect(only(spans, (s) => s.name === name && s.traceId === TRACE_ID, name)).toMatchObject({
        kind: 'client',
        parentSpanId: server.spanId,
        attributes: { 'server.port': idpPort() },
      });
    }
    expect(only(spans, (s) => s.spanId === sent.spanId, 'client span')).toMatchObject({
      kind: 'client',
      traceId: TRACE_ID,
      parentSpanId: server.spanId,
      attributes: { 'server.port': stack.backend.port, 'http.response.status_code': 200 },
    });
  });

  it('traces bearer token verification, and marks a refused token', async () => {
    const provider = new HeadlessOAuthProvider();
    const first = new StreamableHTTPClientTransport(new URL(`${stack.url}/mcp`), { authProvider: provider });
    await expect(new Client({ name: 'trace-test', version: '1.0.0' }).connect(first)).rejects.toThrow(
      /Unauthorized/i,
    );
    const callback = await authorizeInBrowser(provider.authorizationUrl as URL, new CookieJar());
    secrets.push(callback.searchParams.get('code') as string);
    await first.finishAuth(callback.searchParams.get('code') as string);
    const token = provider.saved?.access_token as string;
    secrets.push(token, provider.saved?.refresh_token as string);

    const traceId = 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa';
    const ok = await fetch(`${stack.url}/mcp`, {
      headers: { authorization: `Bearer ${token}`, traceparent: `00-${traceId}-${PARENT_ID}-01` },
    });
    expect(ok.status).toBe(200);
    const refusedTraceId = 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';
    const refused = await fetch(`${stack.url}/mcp`, {
      headers: { authorization: `Bearer ${token}x`, traceparent: `00-${refusedTraceId}-${PARENT_ID}-01` },
    });
    expect(refused.status).toBe(401);

    const spans = await receiver.waitForSpans(
      (s) => s.filter((x) => x.traceId === traceId || x.traceId === refusedTraceId).length >= 5,
    );
    const server = only(spans, (s) => s.traceId === traceId && s.kind === 'server', 'server span');
    expect(server.attributes['enduser.id']).toEqual(expect.any(String));
    expect(only(spans, (s) => s.traceId === traceId && s.name === 'token.verify', 'verify')).toMatchObject({
      parentSpanId: server.spanId,
      status: { code: 0 },
    });
    expect(
      only(spans, (s) => s.traceId === traceId && s.kind === 'client', 'upstream call').parentSpanId,
    ).toBe(server.spanId);

    const refusedServer = only(spans, (s) => s.traceId === refusedTraceId && s.kind === 'server', 'refused');
    expect(refusedServer.attributes).toMatchObject({
      'http.response.status_code': 401,
      'mcp_oidc_proxy.auth': 'invalid_token',
    });
    expect(refusedServer.attributes['enduser.id']).toBeUndefined();
    expect(
      only(spans, (s) => s.traceId === refusedTraceId && s.name === 'token.verify', 'refused verify'),
    ).toMatchObject({ status: { code: 2 }, attributes: { 'error.type': 'invalid_token' } });
    // Nothing was forwarded for the refused request.
    expect(spans.some((s) => s.traceId === refusedTraceId && s.kind === 'client')).toBe(false);
  });

  it('never exports a token, cookie, code, state, password or client secret', () => {
    expect(secrets.filter(Boolean).length).toBeGreaterThanOrEqual(8);
    const exported = receiver.requests.map((r) => r.body).join('\n');
    expect(exported.length).toBeGreaterThan(0);
    for (const secret of secrets.filter(Boolean)) expect(exported).not.toContain(secret);
  });
});
