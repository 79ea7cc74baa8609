import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoProcess, startDemo } from '../helpers/demo.js';
import { CookieJar, signInThroughProxy } from '../helpers/headless-login.js';
import { authorizeInBrowser, HeadlessOAuthProvider } from '../helpers/mcp-oauth-client.js';
import { connectThroughMcpRemote } from '../helpers/mcp-remote.js';

describe('mcp-oidc-proxy demo (the built CLI)', () => {
  let demo: DemoProcess;
  let banner: string;
  let mcpUrl: string;

  beforeAll(async () => {
    demo = await startDemo();
    ({ banner, mcpUrl } = demo);
  });
  afterAll(async () => {
    await demo?.stop();
  });

  it('prints the MCP URL and the test users', () => {
    expect(mcpUrl).toMatch(/^http:\/\/localhost:\d+\/mcp$/);
    expect(banner).toContain('alice / alice-password');
    expect(banner).toContain('bob / bob-password');
  });

  it('lets the SDK client log in through the development provider and call the sample tools', async () => {
    const provider = new HeadlessOAuthProvider();
    const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
    await expect(new Client({ name: 'demo-test', version: '1' }).connect(first)).rejects.toThrow(
      /Unauthorized/i,
    );
    const callback = await authorizeInBrowser(provider.authorizationUrl as URL, new CookieJar());
    await first.finishAuth(callback.searchParams.get('code') as string);

    const client = new Client({ name: 'demo-test', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider }));
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['count', 'echo', 'whoami']);
    const whoami = await client.callTool({ name: 'whoami', arguments: {} });
    expect(JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}')).toMatchObject({
      user: 'alice',
      email: 'alice@example.com',
    });
    await client.close();
  });

  it('lets mcp-remote (Claude Desktop, Cursor) log in as bob and call a streaming tool', async () => {
    const tmp = await mkdtemp(join(tmpdir(), 'demo-mcp-remote-'));
    const remote = await connectThroughMcpRemote(mcpUrl, tmp, { username: 'bob', password: 'bob-password' });
    try {
      expect(remote.authorizationUrl.origin).toBe(new URL(mcpUrl).origin);
      const progress: number[] = [];
      const counted = await remote.client.callTool(
        { name: 'count', arguments: { n: 3, delayMs: 10 } },
        undefined,
        { onprogress: (p) => progress.push(p.progress) },
      );
      expect(counted.content).toEqual([{ type: 'text', text: 'counted to 3' }]);
      // Progress streamed through the proxy and mcp-remote, in order. (On a loaded machine the
      // last notifications can reach the client after the result, which the SDK then drops.)
      expect(progress[0]).toBe(1);
      expect(progress).toEqual([1, 2, 3].slice(0, progress.length));
      const whoami = await remote.client.callTool({ name: 'whoami', arguments: {} });
      expect(JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}')).toMatchObject({
        user: 'bob',
      });
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- mcp-remote stderr ---\n${remote.stderr()}`, {
        cause: error,
      });
    } finally {
      await remote.close();
      await rm(tmp, { recursive: true, force: true });
    }
  }, 60_000);

  it('serves the monitoring page and admin API to alice (engineering) and refuses bob', async () => {
    const origin = new URL(mcpUrl).origin;
    expect(banner).toContain(`monitoring     : ${origin}/admin`);
    expect((await fetch(`${origin}/admin/api/status`)).status).toBe(401);
    const alice = await signInThroughProxy(origin, { username: 'alice', password: 'alice-password' });
    const status = await fetch(`${origin}/admin/api/status`, { headers: { cookie: alice.get(origin) } });
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ auth_mode: 'oidc' });
    const page = await fetch(`${origin}/admin`, { headers: { cookie: alice.get(origin) } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const bob = await signInThroughProxy(origin, { username: 'bob', password: 'bob-password' });
    expect((await fetch(`${origin}/admin/api/status`, { headers: { cookie: bob.get(origin) } })).status).toBe(
      403,
    );
  });

  it('stops cleanly on SIGTERM', async () => {
    expect(await demo.stop()).toBe(0);
  });
});
