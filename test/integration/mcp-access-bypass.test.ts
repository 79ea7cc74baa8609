import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type McpTestServer, startMcpServer } from '../helpers/mcp-server.js';
import { startTestProxy, type TestProxy, testProxyConfig } from '../helpers/servers.js';

/** Bypass mode: no user, so rules with `allow: {}` only; they still limit what every caller may use. */
describe('mcp_access in bypass mode, reloaded under a live MCP session', () => {
  let backend: McpTestServer;
  let proxy: TestProxy;
  let client: Client;
  const env = (rules: unknown): Record<string, string> => ({
    PROXY_TARGET_URL: backend.url,
    MCP_ACCESS: JSON.stringify(rules),
  });

  beforeAll(async () => {
    backend = await startMcpServer();
    proxy = await startTestProxy(env({ default: 'deny', rules: [{ tools: ['echo', 'count'] }] }));
    client = new Client({ name: 'bypass-test', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp`)));
  });
  afterAll(async () => {
    await client?.close();
    await proxy?.close();
    await backend?.close();
  });

  const toolNames = async (): Promise<string[]> => (await client.listTools()).tools.map((t) => t.name).sort();

  it('lists and allows only what the rules name, refusing the rest itself', async () => {
    expect(await toolNames()).toEqual(['count', 'echo']);
    const refused = await client.callTool({ name: 'whoami', arguments: {} }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(McpError);
    expect((refused as McpError).message).toContain('Tool "whoami" is not allowed for this user.');
    // Streamed progress passes the stage untouched.
    const progress: number[] = [];
    const counted = await client.callTool({ name: 'count', arguments: { n: 3, delayMs: 10 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    });
    expect(counted.content).toEqual([{ type: 'text', text: 'counted to 3' }]);
    expect(progress).toEqual([1, 2, 3]);
  });

  it('takes new rules over at reload without ending the session', async () => {
    const sessions = backend.sessions();
    expect(sessions).toHaveLength(1);
    const next = testProxyConfig(
      env({ default: 'allow', rules: [{ tools: ['count'], allow: {} }, { tools: ['echo'] }] }),
    );
    const changes = proxy.proxy.reload(next, 'test');
    expect(changes.applied).toContain('MCP_ACCESS');
    expect(await toolNames()).toEqual(['count', 'echo', 'whoami']);
    const whoami = await client.callTool({ name: 'whoami', arguments: {} });
    expect(JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}')).toEqual({
      user: null,
      email: null,
      groups: null,
    });
    expect(backend.sessions()).toEqual(sessions);
  });
});
