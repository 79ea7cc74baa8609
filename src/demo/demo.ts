import type { AddressInfo } from 'node:net';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../observability/logger.js';
import { startProxy } from '../server/app.js';
import { createSampleMcpServer } from './sample-mcp-server.js';

export interface DemoOptions {
  host: string;
  port: number;
  logLevel: string;
}

/**
 * `mcp-oidc-proxy demo`: a sample MCP server and the proxy in front of it, in one process,
 * so a new user can point an MCP client at it with nothing else installed.
 */
export async function runDemo(options: DemoOptions): Promise<() => Promise<void>> {
  const sample = createSampleMcpServer();
  await new Promise<void>((resolve) => sample.server.listen(0, '127.0.0.1', resolve));
  const samplePort = (sample.server.address() as AddressInfo).port;
  const config = loadConfig({
    env: {
      AUTH_MODE: 'bypass',
      SERVER_HOST: options.host,
      SERVER_PORT: String(options.port),
      PROXY_TARGET_URL: `http://127.0.0.1:${samplePort}`,
      LOG_LEVEL: options.logLevel,
      // MCP Inspector's web UI, which may call the server straight from the browser.
      ALLOWED_ORIGINS: 'http://localhost:6274,http://127.0.0.1:6274',
    },
  });
  const proxy = await startProxy({ config, logger: createLogger(config.log.level) });
  const port = new URL(proxy.url).port;
  const mcpUrl = `http://localhost:${port}${config.mcpPath}`;
  process.stderr.write(
    [
      '',
      'mcp-oidc-proxy demo',
      `  MCP server URL : ${mcpUrl}`,
      `  health         : http://localhost:${port}/health`,
      `  metrics        : http://localhost:${port}${config.metrics.path}`,
      '  sample tools   : echo, count (streams progress), whoami',
      '  auth mode      : bypass (no login in this version of the demo)',
      '',
      `  try it         : npx @modelcontextprotocol/inspector  (transport "Streamable HTTP", URL ${mcpUrl})`,
      '',
      'Press Ctrl+C to stop.',
      '',
    ].join('\n'),
  );
  return async () => {
    await proxy.shutdown();
    await sample.close();
  };
}
