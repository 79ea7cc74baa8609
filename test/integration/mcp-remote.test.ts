import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LoginResult, loginThroughBrowserless } from '../helpers/headless-login.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { freePort } from '../helpers/servers.js';

const alice = { username: 'alice', password: 'alice-password' };
/** mcp-remote's CLI, run with this process's Node (so a CI run on Node 24 uses Node 24). */
const MCP_REMOTE_BIN = createRequire(import.meta.url).resolve('mcp-remote/dist/proxy.js');

/**
 * A tiny endpoint standing in for the desktop: the BROWSER script POSTs the URL mcp-remote asked
 * to open, and `next()` resolves with it.
 */
async function startBrowserInbox(): Promise<{ url: string; next: Promise<string>; close(): Promise<void> }> {
  let deliver: (url: string) => void = () => {};
  const next = new Promise<string>((resolve) => {
    deliver = resolve;
  });
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      res.writeHead(204).end();
      deliver(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/open`,
    next,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Logs alice in at the IdP, approves the proxy's consent page, and follows the final redirect. */
function loginAndConsent(authorizationUrl: string): Promise<LoginResult> {
  return loginThroughBrowserless(authorizationUrl, alice, {
    onPage: ({ forms }) => {
      const consent = forms.find((f) => new URL(f.action).pathname === '/authorize');
      return consent
        ? { action: consent.action, fields: { ...consent.fields, decision: 'approve' } }
        : undefined;
    },
  });
}

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
    const inbox = await startBrowserInbox();
    const browser = join(tmp, 'browser.mjs');
    await writeFile(
      browser,
      [
        `#!${process.execPath}`,
        '// BROWSER for mcp-remote (via xdg-open): hands the URL to the test, which plays the user.',
        `await fetch(${JSON.stringify(inbox.url)}, { method: 'POST', body: process.argv[2] });`,
        '',
      ].join('\n'),
    );
    await chmod(browser, 0o755);
    const configDir = join(tmp, 'config');
    const callbackPort = await freePort();

    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [MCP_REMOTE_BIN, `${stack.url}/mcp`, String(callbackPort)],
      // Merged over the SDK's minimal default environment (PATH, HOME, ...): no desktop session,
      // so xdg-open falls back to $BROWSER.
      env: { BROWSER: browser, MCP_REMOTE_CONFIG_DIR: configDir },
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const client = new Client({ name: 'mcp-remote-test', version: '1.0.0' });

    try {
      // connect() waits for mcp-remote, which waits for the login; the test plays the user meanwhile.
      const connected = client.connect(transport, { timeout: 45_000 });
      connected.catch(() => {}); // awaited below; a failure before then must not go unhandled
      const opened = await Promise.race([
        inbox.next,
        connected.then(() => {
          throw new Error('mcp-remote connected without asking the user to log in');
        }),
      ]);
      const authorizationUrl = new URL(opened);
      expect(authorizationUrl.origin).toBe(stack.url);
      expect(authorizationUrl.pathname).toBe('/authorize');
      expect(authorizationUrl.searchParams.get('code_challenge_method')).toBe('S256');
      expect(authorizationUrl.searchParams.get('resource')).toBe(`${stack.url}/mcp`);
      const redirectUri = new URL(authorizationUrl.searchParams.get('redirect_uri') as string);
      expect(redirectUri.port).toBe(String(callbackPort));
      expect(redirectUri.pathname).toBe('/oauth/callback');

      // No stopAt: the last redirect lands on mcp-remote's own callback listener.
      const login = await loginAndConsent(authorizationUrl.href);
      expect(new URL(login.finalUrl).origin).toBe(redirectUri.origin);
      expect(login.status).toBe(200);
      await connected;

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
      throw new Error(`${(error as Error).message}\n--- mcp-remote stderr ---\n${stderr}`, { cause: error });
    } finally {
      await client.close(); // closes stdin and ends the child (SIGTERM, then SIGKILL)
      await inbox.close();
    }
  }, 60_000);
});
