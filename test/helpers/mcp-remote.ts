import { chmod, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { approveConsent, type LoginResult, loginThroughBrowserless } from './headless-login.js';
import { freePort } from './servers.js';

/** mcp-remote's CLI, run with this process's Node (so a CI run on Node 24 uses Node 24). */
const MCP_REMOTE_BIN = createRequire(import.meta.url).resolve('mcp-remote/dist/proxy.js');

/**
 * A tiny endpoint standing in for the desktop: the BROWSER script POSTs the URL mcp-remote asked
 * to open, and `next` resolves with it.
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

/** Logs the user in at the IdP, approves the proxy's consent page, and follows the final redirect. */
function loginAndConsent(
  authorizationUrl: string,
  user: { username: string; password: string },
): Promise<LoginResult> {
  return loginThroughBrowserless(authorizationUrl, user, {
    onPage: approveConsent,
  });
}

export interface McpRemoteSession {
  /** An MCP client talking to mcp-remote over stdio, connected once the login finished. */
  client: Client;
  /** The URL mcp-remote asked the "browser" to open. */
  authorizationUrl: URL;
  /** Where the login's last redirect landed (mcp-remote's loopback callback). */
  login: LoginResult;
  callbackPort: number;
  /** Everything mcp-remote wrote to stderr so far, for failure messages. */
  stderr(): string;
  close(): Promise<void>;
}

/**
 * Runs mcp-remote (the stdio bridge of Claude Desktop and Cursor) against `mcpUrl` as a user
 * would: it registers, "opens the browser" (a $BROWSER script handing the URL to the test), the
 * test logs `user` in and approves the consent, and mcp-remote receives the code on its loopback
 * callback. `workDir` holds the BROWSER script and mcp-remote's config directory (`config/`).
 */
export async function connectThroughMcpRemote(
  mcpUrl: string,
  workDir: string,
  user: { username: string; password: string },
): Promise<McpRemoteSession> {
  const inbox = await startBrowserInbox();
  const browser = join(workDir, 'browser.mjs');
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
  const callbackPort = await freePort();
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [MCP_REMOTE_BIN, mcpUrl, String(callbackPort)],
    // Merged over the SDK's minimal default environment (PATH, HOME, ...): no desktop session,
    // so xdg-open falls back to $BROWSER.
    env: { BROWSER: browser, MCP_REMOTE_CONFIG_DIR: join(workDir, 'config') },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const client = new Client({ name: 'mcp-remote-test', version: '1.0.0' });
  const close = async (): Promise<void> => {
    await client.close(); // closes stdin and ends the child (SIGTERM, then SIGKILL)
    await inbox.close();
  };
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
    // No stopAt: the last redirect lands on mcp-remote's own callback listener.
    const login = await loginAndConsent(authorizationUrl.href, user);
    await connected;
    return { client, authorizationUrl, login, callbackPort, stderr: () => stderr, close };
  } catch (error) {
    await close();
    throw new Error(`${(error as Error).message}\n--- mcp-remote stderr ---\n${stderr}`, { cause: error });
  }
}
