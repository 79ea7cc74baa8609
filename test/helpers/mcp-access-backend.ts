import { createServer } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { type Listening, listen, startTestProxy, type TestProxy } from './servers.js';

/** What the backend actually did: the proof that a refused call never reached it. */
export interface AccessBackend extends Listening {
  /** `tool:NAME`, `prompt:NAME`, `resource:URI`, in the order they ran. */
  ran: string[];
}

export const BACKEND_TOOLS = ['echo', 'read_file', 'delete_file', 'secret_report'] as const;

/**
 * A real MCP server (official SDK, stateless streamable HTTP) with tools, prompts and resources
 * whose handlers record that they ran. `json` selects `enableJsonResponse` (JSON bodies instead
 * of an SSE stream per POST).
 */
export async function startAccessBackend(json: boolean): Promise<AccessBackend> {
  const ran: string[] = [];
  const build = (): McpServer => {
    const server = new McpServer({ name: 'access-test-backend', version: '1.0.0' });
    for (const name of BACKEND_TOOLS) {
      server.registerTool(
        name,
        { description: `the ${name} tool`, inputSchema: { text: z.string() } },
        async ({ text }) => {
          ran.push(`tool:${name}`);
          return { content: [{ type: 'text', text: `${name}: ${text}` }] };
        },
      );
    }
    server.registerPrompt('greeting', { description: 'a greeting' }, () => {
      ran.push('prompt:greeting');
      return { messages: [{ role: 'user', content: { type: 'text', text: 'hello' } }] };
    });
    for (const uri of ['file:///public/readme', 'file:///private/keys']) {
      server.registerResource(uri, uri, { mimeType: 'text/plain' }, async () => {
        ran.push(`resource:${uri}`);
        return { contents: [{ uri, text: `contents of ${uri}` }] };
      });
    }
    server.registerResource(
      'private-notes',
      new ResourceTemplate('file:///private/notes/{id}', { list: undefined }),
      { mimeType: 'text/plain' },
      async (uri) => {
        ran.push(`resource:${uri.href}`);
        return { contents: [{ uri: uri.href, text: 'note' }] };
      },
    );
    return server;
  };
  const http = createServer(async (req, res) => {
    // Stateless: a server and a transport per request (the SDK's stateless pattern).
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: json,
    });
    res.on('close', () => {
      void transport.close();
    });
    await build().connect(transport);
    await transport.handleRequest(req, res);
  });
  const listening = await listen(http);
  return { ...listening, ran };
}

/** A bypass-mode proxy (admin API on) with `mcp_access` rules in front of the backend, and an SDK client through it. */
export interface AccessProxy {
  backend: AccessBackend;
  proxy: TestProxy;
  client: Client;
  close(): Promise<void>;
}

export async function startAccessProxy(rules: unknown, adminToken: string): Promise<AccessProxy> {
  const backend = await startAccessBackend(true);
  const proxy = await startTestProxy({
    ADMIN_ENABLED: 'true',
    ADMIN_TOKEN: adminToken,
    PROXY_TARGET_URL: backend.url,
    MCP_ACCESS: JSON.stringify(rules),
  });
  const client = new Client({ name: 'access-test-client', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${proxy.url}/mcp`)));
  return {
    backend,
    proxy,
    client,
    close: async () => {
      await client.close();
      await proxy.close();
      await backend.close();
    },
  };
}
