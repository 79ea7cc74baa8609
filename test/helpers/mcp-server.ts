import { createSampleMcpServer, type SampleMcpServer } from '../../src/demo/sample-mcp-server.js';
import { type Listening, listen } from './servers.js';

export type McpTestServer = Listening & Pick<SampleMcpServer, 'sessions' | 'received'>;

/** The sample MCP server (official SDK, streamable HTTP) on a free port, `/mcp`. */
export async function startMcpServer(): Promise<McpTestServer> {
  const sample = createSampleMcpServer();
  const listening = await listen(sample.server);
  return { ...listening, sessions: sample.sessions, received: sample.received, close: sample.close };
}
