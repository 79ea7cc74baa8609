import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/** The sample server's tools: `echo`, `count` (streams progress) and `whoami` (shows identity headers). */
function buildMcpServer(req: IncomingMessage): McpServer {
  const server = new McpServer({ name: 'mcp-oidc-proxy-sample', version: '1.0.0' });
  server.registerTool(
    'echo',
    { description: 'Echoes its input', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
  server.registerTool(
    'count',
    {
      description: 'Counts to n, sending a progress notification per step',
      inputSchema: {
        n: z.number().int().min(1).max(100),
        delayMs: z.number().int().min(0).max(5000).default(200),
      },
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
  server.registerTool('whoami', { description: 'Shows the identity headers the proxy sent' }, async () => ({
    content: [
      {
        type: 'text',
        text: JSON.stringify({
          user: req.headers['x-forwarded-user'] ?? null,
          email: req.headers['x-forwarded-email'] ?? null,
          groups: req.headers['x-forwarded-groups'] ?? null,
        }),
      },
    ],
  }));
  return server;
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', reject);
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined);
      } catch (err) {
        reject(err);
      }
    });
  });
}

export interface SampleMcpServer {
  server: Server;
  /** Session ids the server currently holds. */
  sessions(): string[];
  /** Headers of the requests received, most recent last (bounded). */
  received: IncomingMessage['headers'][];
  close(): Promise<void>;
}

/**
 * A real MCP server (official SDK, streamable HTTP, stateful sessions) at `/mcp`: the
 * backend of the `demo` command and of the tests.
 */
export function createSampleMcpServer(): SampleMcpServer {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const received: IncomingMessage['headers'][] = [];
  const reply = (res: ServerResponse, status: number, message: string): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
  };
  const server = createServer(async (req, res) => {
    received.push(req.headers);
    if (received.length > 1000) received.shift();
    if (!req.url?.startsWith('/mcp')) return reply(res, 404, 'Not found: the MCP endpoint is /mcp');
    try {
      const sessionId = req.headers['mcp-session-id'] as string | undefined;
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      let transport = sessionId ? transports.get(sessionId) : undefined;
      if (!transport) {
        if (sessionId) return reply(res, 404, 'Session not found');
        if (req.method !== 'POST' || !isInitializeRequest(body)) return reply(res, 400, 'No valid session');
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => {
            transports.set(id, created);
          },
        });
        created.onclose = () => {
          if (created.sessionId) transports.delete(created.sessionId);
        };
        await buildMcpServer(req).connect(created);
        transport = created;
      }
      await transport.handleRequest(req, res, body);
    } catch {
      if (!res.headersSent) reply(res, 400, 'Invalid request');
    }
  });
  return {
    server,
    received,
    sessions: () => [...transports.keys()],
    close: async () => {
      for (const t of transports.values()) await t.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
