import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { type Listening, listen } from './servers.js';

function buildServer(): McpServer {
  const server = new McpServer({ name: 'test-mcp-server', version: '1.0.0' });
  server.registerTool(
    'echo',
    { description: 'Echoes its input', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  server.registerTool(
    'count',
    {
      description: 'Counts to n, sending a progress notification per step',
      inputSchema: { n: z.number().int().min(1).max(50), delayMs: z.number().int().min(0).max(2000) },
    },
    async ({ n, delayMs }, extra) => {
      const token = extra._meta?.progressToken;
      for (let i = 1; i <= n; i++) {
        if (token !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress: i, total: n, message: `step ${i}` },
          });
        }
        await new Promise((r) => setTimeout(r, delayMs));
      }
      return { content: [{ type: 'text', text: `counted to ${n}` }] };
    },
  );
  return server;
}

export interface McpTestServer extends Listening {
  /** Session ids the server currently holds. */
  sessions(): string[];
  /** Headers of the requests received, most recent last. */
  received: IncomingMessage['headers'][];
}

/** A real MCP server (official SDK, streamable HTTP, stateful sessions) at `/mcp`. */
export async function startMcpServer(): Promise<McpTestServer> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const received: IncomingMessage['headers'][] = [];
  const readJson = (req: IncomingMessage): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        try {
          resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined);
        } catch (err) {
          reject(err);
        }
      });
    });
  const http = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    received.push(req.headers);
    if (!req.url?.startsWith('/mcp')) {
      res.writeHead(404).end();
      return;
    }
    const sessionId = req.headers['mcp-session-id'] as string | undefined;
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    let transport = sessionId ? transports.get(sessionId) : undefined;
    if (!transport) {
      if (req.method !== 'POST' || !isInitializeRequest(body)) {
        res.writeHead(sessionId ? 404 : 400, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'No valid session' }, id: null }),
        );
        return;
      }
      const created = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          transports.set(id, created);
        },
      });
      created.onclose = () => {
        if (created.sessionId) transports.delete(created.sessionId);
      };
      await buildServer().connect(created);
      transport = created;
    }
    await transport.handleRequest(req, res, body);
  });
  const listening = await listen(http);
  return {
    ...listening,
    received,
    sessions: () => [...transports.keys()],
    close: async () => {
      for (const t of transports.values()) await t.close();
      await listening.close();
    },
  };
}
