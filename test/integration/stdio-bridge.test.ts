import { ElicitRequestSchema, LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import {
  alive,
  connect,
  identityEnvironment,
  identityHeaders,
  metric,
  postInitialize,
  startBridge,
  toolText,
  whoami,
} from '../helpers/stdio-bridge.js';
import { waitFor } from '../helpers/wait.js';

const alice = { user: 'alice', email: 'alice@example.com', groups: ['eng', 'ops'] };
const bob = { user: 'bob', groups: [] };

describe('stdio bridge: session isolation', () => {
  it('serves the stdio server as Streamable HTTP: tools listed and called', async () => {
    const target = await startBridge();
    const { client } = await connect(target, alice);
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(
      expect.arrayContaining(['whoami', 'echo', 'sleep', 'ask']),
    );
    expect(await toolText(client, 'echo', { text: 'hello' })).toBe('hello');
    await client.close();
  });

  it("gives the child exactly the environment built for the caller's identity", async () => {
    const target = await startBridge();
    const { client } = await connect(target, alice);
    const { env } = await whoami(client);
    expect(env).toEqual(identityEnvironment(alice));
    expect(env.MCP_USER).toBe('alice');
    expect(env.MCP_USER_GROUPS).toBe('eng,ops');

    const anonymous = await connect(target);
    expect((await whoami(anonymous.client)).env).toEqual(identityEnvironment(undefined));
  });

  it('starts a child per session, each in its own process group', async () => {
    const target = await startBridge();
    const first = await whoami((await connect(target, alice)).client);
    const second = await whoami((await connect(target, alice)).client);
    expect(first.pid).not.toBe(second.pid);
    expect(first.pgid).toBe(first.pid);
    expect(target.bridge.children().map((child) => child.pid)).toEqual(
      expect.arrayContaining([first.pid, second.pid]),
    );
  });

  it('relays progress notifications on the stream of the request that asked for them', async () => {
    const target = await startBridge();
    const { client } = await connect(target, alice);
    const seen: number[] = [];
    const result = await client.callTool(
      { name: 'progress', arguments: { steps: 4, delayMs: 5 } },
      undefined,
      {
        onprogress: (progress) => seen.push(progress.progress),
      },
    );
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(result.content).toEqual([{ type: 'text', text: '4 steps done' }]);
  });

  it("puts the child's elicitation request to the client and its answer back to the child", async () => {
    const target = await startBridge();
    const { client } = await connect(target, alice);
    client.setRequestHandler(ElicitRequestSchema, async (request) => ({
      action: 'accept',
      content: { answer: `yes to ${request.params.message}` },
    }));
    const answer = JSON.parse(await toolText(client, 'ask', { question: 'proceed?' }));
    expect(answer).toEqual({ via: 'elicitation', action: 'accept', answer: 'yes to proceed?' });
  });

  it('DELETE ends the session and its child at once', async () => {
    const target = await startBridge();
    const { client, transport } = await connect(target, alice);
    const { pid } = await whoami(client);
    const sessionId = transport.sessionId!;
    await transport.terminateSession();
    await waitFor(() => !alive(pid), 3000, `child ${pid} to end`);
    const after = await target.fetch(target.url, {
      method: 'POST',
      headers: sessionHeaders(sessionId, alice),
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    expect(after.status).toBe(404);
    expect(target.bridge.children()).toEqual([]);
    expect(await metric(target.registry, 'mcp_oidc_proxy_stdio_spawns_total')).toBe(
      'mcp_oidc_proxy_stdio_spawns_total{server="probe"} 1',
    );
    expect(await metric(target.registry, 'mcp_oidc_proxy_stdio_exits_total')).toBe(
      'mcp_oidc_proxy_stdio_exits_total{server="probe",reason="session_end"} 1',
    );
  });

  it("answers 404 Session not found to another user's session id and to an unknown one", async () => {
    const target = await startBridge();
    const { transport } = await connect(target, alice);
    const notFound = { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null };
    for (const [sessionId, identity] of [
      [transport.sessionId!, bob],
      [transport.sessionId!, undefined],
      ['00000000-0000-4000-8000-000000000000', alice],
    ] as const) {
      const response = await target.fetch(target.url, {
        method: 'POST',
        headers: sessionHeaders(sessionId, identity),
        body: JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/list' }),
      });
      expect(response.status).toBe(404);
      expect(await response.json()).toEqual(notFound);
    }
  });

  it("answers a session's POST that is not JSON with a parse error; the session carries on", async () => {
    const target = await startBridge();
    const { client, transport } = await connect(target, alice);
    const response = await target.fetch(target.url, {
      method: 'POST',
      headers: sessionHeaders(transport.sessionId!, alice),
      body: '{"jsonrpc":"2.0","id":7,',
    });
    expect(response.status).toBe(400);
    expect(await response.json()).toEqual({
      jsonrpc: '2.0',
      error: { code: -32700, message: 'Parse error: Invalid JSON' },
      id: null,
    });
    expect(await toolText(client, 'echo', { text: 'still here' })).toBe('still here');
  });

  it('answers 400 to a request other than initialize without a session id', async () => {
    const target = await startBridge();
    const response = await target.fetch(target.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
    });
    expect(response.status).toBe(400);
    expect(target.bridge.children()).toEqual([]);
  });

  it.each(['2025-06-18', '2025-11-25'])(
    'passes protocol version %s through to the child',
    async (version) => {
      const target = await startBridge();
      const response = await postInitialize(target, alice, version);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/event-stream');
      expect(response.headers.get('mcp-session-id')).toMatch(/^[0-9a-f-]{36}$/);
      const body = await response.text();
      const message = JSON.parse(
        body
          .split('\n')
          .find((line) => line.startsWith('data: '))!
          .slice(6),
      );
      expect(message).toMatchObject({ id: 1, result: { protocolVersion: version } });
    },
  );

  it('negotiates the SDK client latest protocol version', async () => {
    const target = await startBridge();
    const { transport } = await connect(target, alice);
    expect(transport.protocolVersion).toBe(LATEST_PROTOCOL_VERSION);
  });
});

function sessionHeaders(
  sessionId: string,
  identity: Parameters<typeof identityHeaders>[0],
): Record<string, string> {
  return {
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
    'mcp-session-id': sessionId,
    'mcp-protocol-version': '2025-06-18',
    ...identityHeaders(identity),
  };
}
