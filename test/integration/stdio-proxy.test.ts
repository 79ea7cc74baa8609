import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { hostOf, rawRequest } from '../helpers/raw-http.js';
import { startTestProxy, type TestProxy } from '../helpers/servers.js';
import { probeCommand, toolText, whoami } from '../helpers/stdio-bridge.js';
import { commandLine, connectClient, gone, sampleValue } from '../helpers/stdio-proxy.js';
import { waitFor } from '../helpers/wait.js';

const proxies: TestProxy[] = [];
afterEach(async () => {
  for (const proxy of proxies.splice(0)) await proxy.close();
});

/** The proxy in bypass mode in front of the probe stdio server; closed after the test. */
async function probeProxy(env: Record<string, string> = {}): Promise<TestProxy> {
  const proxy = await startTestProxy({ PROXY_TARGET_COMMAND: commandLine(probeCommand()), ...env });
  proxies.push(proxy);
  return proxy;
}

/** An `initialize` POSTed by hand, for status codes and bodies no SDK client shows. */
function postInitialize(proxy: TestProxy): Promise<Response> {
  return fetch(`${proxy.url}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
}

async function metrics(proxy: TestProxy): Promise<string> {
  return (await fetch(`${proxy.url}/metrics`)).text();
}

/** The gauge drops when the bridge has taken the exit in, a moment after the process is gone. */
async function untilNoProcesses(proxy: TestProxy): Promise<void> {
  await waitFor(
    async () => sampleValue(await metrics(proxy), 'mcp_oidc_proxy_stdio_processes{server="default"}') === 0,
    5000,
    'mcp_oidc_proxy_stdio_processes to drop to 0',
  );
}

async function refusal(promise: Promise<unknown>): Promise<McpError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(McpError);
  return error as McpError;
}

describe('mcp_access in front of a stdio server', () => {
  it('hides a denied tool from tools/list, refuses its call itself and audits it: the child never sees it', async () => {
    const proxy = await probeProxy({
      // Bypass mode has no user to name: the rules deny by leaving tools out.
      MCP_ACCESS: JSON.stringify({ default: 'deny', rules: [{ tools: ['seen', 'whoami'] }] }),
    });
    const { client } = await connectClient(`${proxy.url}/mcp`);
    const names = (await client.listTools()).tools.map((t) => t.name);
    expect(names).toContain('seen');
    expect(names).not.toContain('echo');
    expect(names).not.toContain('crash');

    const callsBefore = JSON.parse(await toolText(client, 'seen'))['tools/call'] as number;
    const error = await refusal(client.callTool({ name: 'echo', arguments: { text: 'hi' } }));
    expect(error.code).toBe(-32003);
    expect(error.message).toContain('Tool "echo" is not allowed for this user.');
    // Only the second `seen` reached the child: the refused call was answered by the proxy.
    expect(JSON.parse(await toolText(client, 'seen'))['tools/call']).toBe(callsBefore + 1);

    expect(proxy.logs.filter((l) => l.audit === 'mcp_call')).toContainEqual(
      expect.objectContaining({ server: 'default', method: 'tools/call', name: 'echo', outcome: 'denied' }),
    );
    await client.close();
  });
});

describe('the lifecycle of stdio children, through the proxy', () => {
  it('STDIO_MAX_PROCESSES reached: the next initialize gets 503 at once, naming the setting', async () => {
    const proxy = await probeProxy({ STDIO_MAX_PROCESSES: '1' });
    const { client } = await connectClient(`${proxy.url}/mcp`);
    const start = performance.now();
    const res = await postInitialize(proxy);
    expect(performance.now() - start).toBeLessThan(1000);
    expect(res.status).toBe(503);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(res.headers.get('retry-after')).toBe('5');
    expect(JSON.stringify(await res.json())).toContain('STDIO_MAX_PROCESSES');
    await client.close();
  });

  it('a crashing child fails the pending call, its session then gets 404; /health and metrics follow', async () => {
    const proxy = await probeProxy();
    const { client, transport } = await connectClient(`${proxy.url}/mcp`);
    const { pid } = await whoami(client);
    const health = (await (await fetch(`${proxy.url}/health`)).json()) as {
      checks: { proxy_target: { status: string; processes: number } };
    };
    expect(health.checks.proxy_target).toMatchObject({ status: 'healthy', processes: 1 });
    let exposition = await metrics(proxy);
    expect(sampleValue(exposition, 'mcp_oidc_proxy_stdio_processes{server="default"}')).toBe(1);
    expect(sampleValue(exposition, 'mcp_oidc_proxy_stdio_spawns_total{server="default"}')).toBe(1);

    const sessionId = transport.sessionId as string;
    await refusal(client.callTool({ name: 'crash', arguments: {} }));
    await waitFor(() => gone(pid), 5000, 'the crashed child to be gone');

    const next = await fetch(`${proxy.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-06-18',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
    });
    expect(next.status).toBe(404);

    await untilNoProcesses(proxy);
    exposition = await metrics(proxy);
    expect(sampleValue(exposition, 'mcp_oidc_proxy_stdio_crashes_total{server="default"}')).toBe(1);
    expect(sampleValue(exposition, 'mcp_oidc_proxy_stdio_exits_total{server="default",reason="crash"}')).toBe(
      1,
    );
    await client.close();
  });

  it('DELETE counts as a session_end exit', async () => {
    const proxy = await probeProxy();
    const { client, transport } = await connectClient(`${proxy.url}/mcp`);
    const { pid } = await whoami(client);
    await transport.terminateSession();
    await waitFor(() => gone(pid), 5000, 'the child to end');
    await untilNoProcesses(proxy);
    const exposition = await metrics(proxy);
    expect(
      sampleValue(exposition, 'mcp_oidc_proxy_stdio_exits_total{server="default",reason="session_end"}'),
    ).toBe(1);
    await client.close();
  });

  it('a command that does not exist: /health unhealthy saying so, initialize 503', async () => {
    const proxy = await probeProxy({ PROXY_TARGET_COMMAND: '/nonexistent/x' });
    const res = await fetch(`${proxy.url}/health`);
    expect(res.status).toBe(503);
    const health = (await res.json()) as {
      status: string;
      checks: { proxy_target: { status: string; error: string } };
    };
    expect(health.status).toBe('unhealthy');
    expect(health.checks.proxy_target.status).toBe('unhealthy');
    expect(health.checks.proxy_target.error).toBe('command not found: /nonexistent/x');

    const init = await postInitialize(proxy);
    expect(init.status).toBe(503);
    expect(await init.json()).toMatchObject({
      error: 'server_start_failed',
      error_description: expect.stringContaining('command not found: /nonexistent/x'),
    });
    expect(sampleValue(await metrics(proxy), 'mcp_oidc_proxy_stdio_spawns_total{server="default"}')).toBe(0);
  });
});

describe('WebSocket upgrades to a stdio server', () => {
  it('are refused with 400 and start no child', async () => {
    const proxy = await probeProxy();
    const res = await rawRequest(proxy.url, [
      'GET /mcp HTTP/1.1',
      `Host: ${hostOf(proxy.url)}`,
      'Connection: Upgrade',
      'Upgrade: websocket',
      'Sec-WebSocket-Version: 13',
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    ]);
    expect(res.status).toBe(400);
    expect(res.body).toContain('no WebSocket upgrades');
    expect(proxy.proxy.backends.all()[0]?.bridge?.children()).toEqual([]);
  });
});
