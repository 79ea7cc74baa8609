// The HTTP MCP server of the bench's stdio section, in its own process: the project's sample MCP
// server (official SDK, Streamable HTTP, stateful sessions, tool `echo`) from dist/, so the HTTP
// backend and the stdio probe server answer `echo` with the same SDK code.
// Prints {"port":N} on stdout once listening. Answers SIGTERM by closing everything.
import { createSampleMcpServer } from '../dist/demo/sample-mcp-server.js';

const sample = createSampleMcpServer();
sample.server.keepAliveTimeout = 65_000;
sample.server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: sample.server.address().port })}\n`);
});

const stop = () => {
  sample.close().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
