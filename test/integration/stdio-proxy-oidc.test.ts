import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConnectedMcpClient, connectMcpClient } from '../helpers/mcp-oauth-client.js';
import { connectThroughMcpRemote } from '../helpers/mcp-remote.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { probeCommand, whoami } from '../helpers/stdio-bridge.js';
import { commandLine, connectClient } from '../helpers/stdio-proxy.js';

const alice = { username: 'alice', password: 'alice-password' };
const bob = { username: 'bob', password: 'bob-password' };

/** The proxy in oidc mode in front of the probe stdio server with this isolation. */
function probeStack(isolation: 'user' | 'session'): Promise<OidcStack> {
  return startOidcStack({ PROXY_TARGET_COMMAND: commandLine(probeCommand()), STDIO_ISOLATION: isolation });
}

/** Another MCP session of a logged-in client (its tokens), with extra request headers if given. */
async function anotherSession(
  stack: OidcStack,
  user: ConnectedMcpClient,
  headers: Record<string, string> = {},
): Promise<Client> {
  const { client } = await connectClient(`${stack.url}/mcp`, {
    authProvider: user.provider,
    requestInit: { headers },
  });
  return client;
}

/** The stdio children the proxy runs now. */
function children(stack: OidcStack): number {
  return stack.proxy.proxy.backends.all()[0]?.bridge?.children().length ?? -1;
}

describe('a stdio server behind the OIDC login (STDIO_ISOLATION=user)', () => {
  let stack: OidcStack;
  let aliceClient: ConnectedMcpClient;
  let bobClient: ConnectedMcpClient;
  const opened: Client[] = [];

  beforeAll(async () => {
    stack = await probeStack('user');
    // Both log in and start their children at the same time.
    [aliceClient, bobClient] = await Promise.all([
      connectMcpClient(stack.url, alice),
      connectMcpClient(stack.url, bob),
    ]);
  });
  afterAll(async () => {
    for (const client of [...opened, aliceClient?.client, bobClient?.client]) await client?.close();
    await stack?.close();
  });

  it("gives each user a child of their own, started with that user's identity", async () => {
    const [aliceSeen, bobSeen] = await Promise.all([whoami(aliceClient.client), whoami(bobClient.client)]);
    expect(aliceSeen.env).toMatchObject({
      MCP_USER: 'alice',
      MCP_USER_EMAIL: 'alice@example.com',
      MCP_USER_GROUPS: 'engineering,mcp-users',
    });
    expect(bobSeen.env).toMatchObject({
      MCP_USER: 'bob',
      MCP_USER_EMAIL: 'bob@other.org',
      MCP_USER_GROUPS: 'sales',
    });
    expect(bobSeen.pid).not.toBe(aliceSeen.pid);

    // Alice's second session shares her child.
    const second = await anotherSession(stack, aliceClient);
    opened.push(second);
    expect((await whoami(second)).pid).toBe(aliceSeen.pid);
    expect(children(stack)).toBe(2);
  });

  it("a client's own identity headers cannot change the child's user", async () => {
    const forged = await anotherSession(stack, aliceClient, {
      'X-Forwarded-User': 'root',
      'X-Forwarded-Email': 'root@example.com',
      'X-Forwarded-Groups': 'admins',
    });
    opened.push(forged);
    const seen = await whoami(forged);
    expect(seen.env).toMatchObject({
      MCP_USER: 'alice',
      MCP_USER_EMAIL: 'alice@example.com',
      MCP_USER_GROUPS: 'engineering,mcp-users',
    });
    expect(seen.pid).toBe((await whoami(aliceClient.client)).pid);
  });

  it("another user's session id gets 404, and the session it names lives on", async () => {
    const victim = await anotherSession(stack, aliceClient);
    opened.push(victim);
    const { pid } = await whoami(victim);
    const sessionId = victim.transport?.sessionId as string;
    const asBob = (method: string, body?: string): Promise<Response> =>
      fetch(`${stack.url}/mcp`, {
        method,
        headers: {
          authorization: `Bearer ${bobClient.accessToken}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': sessionId,
          'mcp-protocol-version': '2025-06-18',
        },
        ...(body ? { body } : {}),
      });
    const call = JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'whoami' } });
    expect((await asBob('POST', call)).status).toBe(404);
    expect((await asBob('DELETE')).status).toBe(404);
    const after = await whoami(victim);
    expect(after.pid).toBe(pid);
    expect(after.env.MCP_USER).toBe('alice');
  });

  it('an unauthenticated POST gets 401 with a challenge and starts no child', async () => {
    const before = children(stack);
    const res = await fetch(`${stack.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'X-Forwarded-User': 'root',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: {},
          clientInfo: { name: 'raw', version: '1' },
        },
      }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain(
      `resource_metadata="${stack.url}/.well-known/oauth-protected-resource/mcp"`,
    );
    expect(children(stack)).toBe(before);
    // Every child the proxy ever started here belongs to a user who logged in.
    const started = stack.proxy.logs.filter((l) => l.msg === 'stdio server started').map((l) => l.user);
    expect(new Set(started)).toEqual(new Set(['alice', 'bob']));
  });

  it('mcp-remote logs in and calls a tool on the stdio server', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'stdio-mcp-remote-'));
    const remote = await connectThroughMcpRemote(`${stack.url}/mcp`, tmp, alice);
    try {
      const { tools } = await remote.client.listTools();
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['whoami', 'echo', 'seen']));
      const echoed = await remote.client.callTool({ name: 'echo', arguments: { text: 'via mcp-remote' } });
      expect(echoed.content).toEqual([{ type: 'text', text: 'via mcp-remote' }]);
      expect((await whoami(remote.client)).env.MCP_USER).toBe('alice');
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- mcp-remote stderr ---\n${remote.stderr()}`, {
        cause: error,
      });
    } finally {
      await remote.close();
      await rm(tmp, { recursive: true, force: true });
    }
  }, 30_000);
});

describe('a stdio server behind the OIDC login (STDIO_ISOLATION=session)', () => {
  let stack: OidcStack;

  beforeAll(async () => {
    stack = await probeStack('session');
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("gives each of a user's sessions its own child", async () => {
    const first = await connectMcpClient(stack.url, alice);
    const second = await anotherSession(stack, first);
    const [a, b] = await Promise.all([whoami(first.client), whoami(second)]);
    expect(a.pid).not.toBe(b.pid);
    expect(a.env.MCP_USER).toBe('alice');
    expect(b.env.MCP_USER).toBe('alice');
    await first.client.close();
    await second.close();
  });
});
