import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectThroughMcpRemote } from '../helpers/mcp-remote.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';

const alice = { username: 'alice', password: 'alice-password' };

describe('mcp-remote (the stdio bridge of Claude Desktop and Cursor) logs in through the proxy', () => {
  let stack: OidcStack;
  let tmp: string;

  beforeAll(async () => {
    stack = await startOidcStack({}, {}, startMcpServer);
    tmp = await mkdtemp(join(tmpdir(), 'mcp-remote-test-'));
  });
  afterAll(async () => {
    await stack?.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('registers, opens the browser, receives the code on its loopback callback, and calls tools', async () => {
    const configDir = join(tmp, 'config');
    const remote = await connectThroughMcpRemote(`${stack.url}/mcp`, tmp, alice);
    try {
      const { authorizationUrl, login } = remote;
      expect(authorizationUrl.origin).toBe(stack.url);
      expect(authorizationUrl.pathname).toBe('/authorize');
      expect(authorizationUrl.searchParams.get('code_challenge_method')).toBe('S256');
      expect(authorizationUrl.searchParams.get('resource')).toBe(`${stack.url}/mcp`);
      const redirectUri = new URL(authorizationUrl.searchParams.get('redirect_uri') as string);
      expect(redirectUri.port).toBe(String(remote.callbackPort));
      expect(redirectUri.pathname).toBe('/oauth/callback');
      expect(new URL(login.finalUrl).origin).toBe(redirectUri.origin);
      expect(login.status).toBe(200);

      const { client } = remote;
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name).sort()).toEqual(['count', 'echo', 'whoami']);
      const echoed = await client.callTool({ name: 'echo', arguments: { text: 'via mcp-remote' } });
      expect(echoed.content).toEqual([{ type: 'text', text: 'via mcp-remote' }]);
      const whoami = await client.callTool({ name: 'whoami', arguments: {} });
      expect(JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}')).toMatchObject({
        user: 'alice',
        email: 'alice@example.com',
      });

      // mcp-remote kept its client registration and tokens in the given directory, not in ~/.mcp-auth.
      const stored = (await readdir(configDir, { recursive: true })).map(String);
      expect(stored.some((f) => f.endsWith('_tokens.json'))).toBe(true);
      expect(stored.some((f) => f.endsWith('_client_info.json'))).toBe(true);
    } catch (error) {
      throw new Error(`${(error as Error).message}\n--- mcp-remote stderr ---\n${remote.stderr()}`, {
        cause: error,
      });
    } finally {
      await remote.close();
    }
  }, 60_000);
});
