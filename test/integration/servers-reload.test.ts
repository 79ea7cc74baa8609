import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, type ElicitResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CookieJar, signInThroughProxy } from '../helpers/headless-login.js';
import { alice } from '../helpers/mcp-oauth-client.js';
import { type McpTestServer, startMcpServer } from '../helpers/mcp-server.js';
import { startRecordingEcho } from '../helpers/raw-http.js';
import { type Listening, waitFor } from '../helpers/servers.js';
import {
  PROBE_COMMAND,
  type ServersOidcStack,
  type ServerYaml,
  startServersOidcStack,
} from '../helpers/servers-config.js';

type Recording = Listening & { seen: string[] };

function textOf(result: Record<string, unknown>): string {
  return (result.content as Array<{ text: string }>)[0]?.text ?? '';
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('reloading servers: (added, removed, moved) while a stream to another one stays open', () => {
  let search: McpTestServer;
  let echoA: Recording;
  let echoB: Recording;
  let notes: Recording;
  let stack: ServersOidcStack;
  let jar: CookieJar;
  const clients: Client[] = [];

  const files: ServerYaml = { name: 'files', path: '/files/mcp', command: PROBE_COMMAND };
  const metadataUrl = (path: string): string => `${stack.url}/.well-known/oauth-protected-resource${path}`;
  /** A request with alice's browser session (the proxy's own login). */
  const get = (path: string): Promise<Response> =>
    fetch(`${stack.url}${path}`, { headers: { cookie: jar.get(stack.url), accept: 'application/json' } });

  beforeAll(async () => {
    [search, echoA, echoB, notes] = await Promise.all([
      startMcpServer(),
      startRecordingEcho(),
      startRecordingEcho(),
      startRecordingEcho(),
    ]);
    stack = await startServersOidcStack([
      { name: 'search', path: '/search/mcp', url: `${search.url}/mcp` },
      files,
      { name: 'echo', path: '/echo/mcp', url: `${echoA.url}/mcp` },
    ]);
    jar = await signInThroughProxy(stack.url, alice);
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await stack?.close();
    await Promise.all([search, echoA, echoB, notes].map((backend) => backend?.close()));
  });

  /** An SDK client on `path` with alice's browser session; it can be asked questions (elicitation). */
  async function connect(path: string): Promise<Client> {
    const client = new Client(
      { name: 'reload-test', version: '1.0.0' },
      { capabilities: { elicitation: {} } },
    );
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${stack.url}${path}`), {
        requestInit: { headers: { cookie: jar.get(stack.url) } },
      }),
    );
    clients.push(client);
    return client;
  }

  it('the changes apply without a restart; the call streaming from the untouched server runs on to its answer', async () => {
    const resourceOf = async (path: string): Promise<unknown> =>
      ((await (await fetch(metadataUrl(path))).json()) as { resource?: unknown }).resource;
    expect(await resourceOf('')).toBe(`${stack.url}/search/mcp`);
    expect((await fetch(metadataUrl('/notes/mcp'))).status).toBe(404);
    expect(((await (await get('/echo/mcp/who')).json()) as { url: string }).url).toBe('/mcp/who');
    expect(echoA.seen).toEqual(['/mcp/who']);

    // A tool call on the stdio server that waits for the client's answer: its SSE stream stays
    // open across the reload, the question arrives before it and the result after it.
    let answer!: (result: ElicitResult) => void;
    let asked!: () => void;
    const question = new Promise<void>((resolve) => {
      asked = resolve;
    });
    const atFiles = await connect('/files/mcp');
    atFiles.setRequestHandler(ElicitRequestSchema, () => {
      asked();
      return new Promise<ElicitResult>((resolve) => {
        answer = resolve;
      });
    });
    const { pid } = JSON.parse(textOf(await atFiles.callTool({ name: 'whoami', arguments: {} }))) as {
      pid: number;
    };
    const call = atFiles.callTool({ name: 'ask', arguments: { question: 'still there?' } });
    await question;

    stack.reload([
      files,
      { name: 'echo', path: '/echo/mcp', url: `${echoB.url}/mcp` },
      { name: 'notes', path: '/notes/mcp', url: `${notes.url}/mcp` },
    ]);

    // Removed: its path is no server's, its metadata gone; the first server is now files.
    await waitFor(async () => (await get('/search/mcp')).status === 404, 5000, '/search/mcp to 404');
    expect(await (await get('/search/mcp')).json()).toMatchObject({ error: 'not_found' });
    expect((await fetch(metadataUrl('/search/mcp'))).status).toBe(404);
    expect(await resourceOf('')).toBe(`${stack.url}/files/mcp`);
    // Added: its own metadata and challenge, and it serves.
    expect(await resourceOf('/notes/mcp')).toBe(`${stack.url}/notes/mcp`);
    const challenged = await fetch(`${stack.url}/notes/mcp`, { method: 'POST' });
    expect(challenged.status).toBe(401);
    expect(challenged.headers.get('www-authenticate')).toContain(
      `resource_metadata="${metadataUrl('/notes/mcp')}"`,
    );
    expect((await get('/notes/mcp/ping')).status).toBe(200);
    expect(notes.seen).toEqual(['/mcp/ping']);
    // Moved: the same path now reaches the new url.
    expect(((await (await get('/echo/mcp/who')).json()) as { url: string }).url).toBe('/mcp/who');
    expect(echoB.seen).toEqual(['/mcp/who']);
    expect(echoA.seen).toEqual(['/mcp/who']);

    // Untouched: the same child, and the open call gets its answer on the stream it started.
    answer({ action: 'accept', content: { answer: 'yes' } });
    expect(JSON.parse(textOf(await call))).toEqual({ via: 'elicitation', action: 'accept', answer: 'yes' });
    const after = JSON.parse(textOf(await atFiles.callTool({ name: 'whoami', arguments: {} }))) as {
      pid: number;
    };
    expect(after.pid).toBe(pid);
    expect(isAlive(pid)).toBe(true);

    const health = (await (await fetch(`${stack.url}/health`)).json()) as {
      checks: { servers: Record<string, unknown> };
    };
    expect(Object.keys(health.checks.servers)).toEqual(['files', 'echo', 'notes']);
  });

  it("a removed stdio server's children end with it", async () => {
    const atFiles = await connect('/files/mcp');
    const { pid } = JSON.parse(textOf(await atFiles.callTool({ name: 'whoami', arguments: {} }))) as {
      pid: number;
    };
    stack.reload([{ name: 'notes', path: '/notes/mcp', url: `${notes.url}/mcp` }]);
    await waitFor(async () => (await get('/files/mcp')).status === 404, 5000, '/files/mcp to 404');
    await waitFor(() => !isAlive(pid), 5000, 'the removed server’s child to end');
    expect(await (await fetch(metadataUrl(''))).json()).toMatchObject({ resource: `${stack.url}/notes/mcp` });
  });
});
