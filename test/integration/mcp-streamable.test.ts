import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type McpTestServer, startMcpServer } from '../helpers/mcp-server.js';
import { startTestProxy, type TestProxy, waitFor } from '../helpers/servers.js';

describe('an MCP client through the proxy (bypass mode)', () => {
  let mcp: McpTestServer;
  let proxy: TestProxy;

  beforeAll(async () => {
    mcp = await startMcpServer();
    proxy = await startTestProxy({ PROXY_TARGET_URL: mcp.url });
  });
  afterAll(async () => {
    await proxy.close();
    await mcp.close();
  });

  it('initializes, lists tools, streams progress and deletes the session', async () => {
    const transport = new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp`));
    const client = new Client({ name: 'test-client', version: '1.0.0' });
    await client.connect(transport);
    const sessionId = transport.sessionId;
    expect(sessionId).toMatch(/[0-9a-f-]{36}/);
    expect(mcp.sessions()).toContain(sessionId);

    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['count', 'echo', 'whoami']);

    const progress: Array<{ progress: number; at: number }> = [];
    const started = Date.now();
    const result = await client.callTool({ name: 'count', arguments: { n: 5, delayMs: 150 } }, undefined, {
      onprogress: (p) => progress.push({ progress: p.progress, at: Date.now() - started }),
    });
    expect(result.content).toEqual([{ type: 'text', text: 'counted to 5' }]);
    expect(progress.map((p) => p.progress)).toEqual([1, 2, 3, 4, 5]);
    // Delivered as they happened, not in one buffered burst at the end.
    const first = progress[0]?.at ?? 0;
    const last = progress[4]?.at ?? 0;
    expect(last - first).toBeGreaterThanOrEqual(400);

    // The MCP transport headers reached the backend untouched.
    const lastSeen = mcp.received.at(-1);
    expect(lastSeen?.['mcp-session-id']).toBe(sessionId);
    expect(lastSeen?.['mcp-protocol-version']).toBeTruthy();

    await transport.terminateSession();
    await waitFor(
      () => !mcp.sessions().includes(sessionId as string),
      5000,
      'session deleted at the backend',
    );
    await client.close();
  });

  it('passes the standalone GET stream with Mcp-Session-Id and Last-Event-ID', async () => {
    const post = (body: unknown, sessionId?: string): Promise<Response> =>
      fetch(`${proxy.url}/mcp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2025-06-18',
          ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
        },
        body: JSON.stringify(body),
      });
    const init = await post({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    });
    expect(init.status).toBe(200);
    const sessionId = init.headers.get('mcp-session-id') as string;
    expect(sessionId).toBeTruthy();
    await init.text();
    expect((await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, sessionId)).status).toBe(202);

    const res = await fetch(`${proxy.url}/mcp`, {
      headers: {
        accept: 'text/event-stream',
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-06-18',
        'last-event-id': 'abc_123',
      },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/text\/event-stream/);
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    expect(res.headers.get('cache-control')).toMatch(/no-transform/);
    expect(mcp.received.at(-1)?.['last-event-id']).toBe('abc_123');
    await res.body?.cancel();

    const del = await fetch(`${proxy.url}/mcp`, {
      method: 'DELETE',
      headers: { 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' },
    });
    expect(del.status).toBe(200);
    await waitFor(() => !mcp.sessions().includes(sessionId), 5000, 'session deleted at the backend');
  });
});
