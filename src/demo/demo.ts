import type { AddressInfo } from 'node:net';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../observability/logger.js';
import { startProxy } from '../server/app.js';
import { createSampleMcpServer } from './sample-mcp-server.js';

export interface DemoOptions {
  /** CLI flags (`--port`, `--host`, `--log-level`, ...), validated like `serve`'s. */
  flags: Record<string, string>;
}

/**
 * `mcp-oidc-proxy demo`: a sample MCP server and the proxy in front of it, in one process,
 * so a new user can point an MCP client at it with nothing else installed.
 */
export async function runDemo(options: DemoOptions): Promise<() => Promise<void>> {
  const sample = createSampleMcpServer();
  await new Promise<void>((resolve) => sample.server.listen(0, '127.0.0.1', resolve));
  const samplePort = (sample.server.address() as AddressInfo).port;
  let config: ReturnType<typeof loadConfig>;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  try {
    config = loadConfig({
      flags: options.flags,
      env: {
        AUTH_MODE: 'bypass',
        SERVER_HOST: '127.0.0.1',
        SERVER_PORT: '8080',
        PROXY_TARGET_URL: `http://127.0.0.1:${samplePort}`,
        // MCP Inspector's web UI, which may call the server straight from the browser.
        ALLOWED_ORIGINS: 'http://localhost:6274,http://127.0.0.1:6274',
      },
    });
    proxy = await startProxy({ config, logger: createLogger(config.log.level) });
  } catch (err) {
    await sample.close();
    throw err;
  }
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
