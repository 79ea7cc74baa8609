/**
 * The admin status API with several servers behind one login: a stdio server (the probe, a
 * child per user) and an HTTP one (the sample MCP server). Real IdP, proxy, children and the
 * official SDK client; the figures are read while the children work.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ServerStatus, StatusReport } from '../../src/admin/status.js';
import { quoteCommand } from '../../src/stdio/command.js';
import { type ConnectedMcpClient, connectMcpClient } from '../helpers/mcp-oauth-client.js';
import { type McpTestServer, startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { probeCommand } from '../helpers/stdio-bridge.js';
import { waitFor } from '../helpers/wait.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
type Child = NonNullable<ServerStatus['children']>[number];

async function pidOf(client: Client): Promise<number> {
  const result = await client.callTool({ name: 'whoami', arguments: {} });
  return (JSON.parse((result.content as Array<{ text: string }>)[0]?.text ?? '{}') as { pid: number }).pid;
}

describe('admin status API: a stdio server and an HTTP server behind one login', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-admin-servers-'));
  let search: McpTestServer;
  let stack: OidcStack;
  let bob: ConnectedMcpClient;
  let alice: ConnectedMcpClient;
  const extraClients: Client[] = [];

  async function status(): Promise<StatusReport> {
    const res = await fetch(`${stack.url}/admin/api/status`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    return (await res.json()) as StatusReport;
  }
  async function childrenOf(user: string): Promise<Child[]> {
    const probe = (await status()).servers.find((s) => s.name === 'probe');
    return (probe?.children ?? []).filter((c) => c.user === user);
  }

  beforeAll(async () => {
    search = await startMcpServer();
    const file = join(dir, 'servers.yaml');
    writeFileSync(
      file,
      [
        'servers:',
        '  - name: probe',
        '    path: /mcp',
        `    command: ${JSON.stringify(probeCommand())}`,
        '    isolation: user',
        '  - name: search',
        '    path: /search/mcp',
        `    url: ${search.url}/mcp`,
        '',
      ].join('\n'),
    );
    stack = await startOidcStack(
      { ADMIN_ENABLED: 'true', ADMIN_TOKEN, PROXY_TARGET_URL: '' },
      {},
      async () => search,
      file,
    );
  });
  afterAll(async () => {
    for (const client of extraClients) await client.close();
    await bob?.client.close();
    await alice?.client.close();
    await stack?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists both servers, the stdio one with no children before any MCP session', async () => {
    const { servers, upstream } = await status();
    expect(servers).toEqual([
      {
        name: 'probe',
        path: '/mcp',
        target: quoteCommand(probeCommand()),
        status: 'healthy',
        breaker: 'closed',
        children: [],
      },
      {
        name: 'search',
        path: '/search/mcp',
        target: `${search.url}/mcp`,
        status: 'healthy',
        breaker: 'closed',
      },
    ]);
    // The upstream card is the first server.
    expect(upstream).toEqual({ target: quoteCommand(probeCommand()), status: 'healthy', breaker: 'closed' });
  });

  it('shows a child per user, its pid, its sessions, and a request in flight while it runs', async () => {
    bob = await connectMcpClient(stack.url, { username: 'bob', password: 'bob-password' });
    const bobPid = await pidOf(bob.client);
    alice = await connectMcpClient(stack.url);
    const alicePid = await pidOf(alice.client);
    expect(alicePid).not.toBe(bobPid);

    const [bobChild] = await childrenOf('bob');
    expect(bobChild).toMatchObject({ pid: bobPid, user: 'bob', in_flight: 0 });
    expect(bobChild?.sessions).toHaveLength(1);
    expect(bobChild?.age_seconds).toBeGreaterThanOrEqual(bobChild?.idle_seconds ?? 0);
    expect(await childrenOf('alice')).toMatchObject([{ pid: alicePid, user: 'alice' }]);
    // The SDK client's GET stream, open for the server's own messages.
    await waitFor(async () => (await childrenOf('alice'))[0]?.open_streams === 1, 3000, "alice's GET stream");

    // A second session of bob's shares his child (user isolation): one process, two sessions.
    const second = new Client({ name: 'second-session', version: '1' });
    extraClients.push(second);
    await second.connect(
      new StreamableHTTPClientTransport(new URL(`${stack.url}/mcp`), { authProvider: bob.provider }),
    );
    expect(await pidOf(second)).toBe(bobPid);
    const shared = await childrenOf('bob');
    expect(shared).toHaveLength(1);
    expect(shared[0]?.sessions).toHaveLength(2);

    // A call running in the child is in flight until it answers.
    const call = bob.client.callTool({ name: 'sleep', arguments: { ms: 1500 } });
    await waitFor(async () => (await childrenOf('bob'))[0]?.in_flight === 1, 3000, "bob's call in flight");
    expect((await childrenOf('alice'))[0]?.in_flight).toBe(0);
    expect(await call).toMatchObject({ content: [{ type: 'text', text: 'slept 1500 ms' }] });
    expect((await childrenOf('bob'))[0]?.in_flight).toBe(0);
  });
});
