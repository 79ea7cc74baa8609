import {
  createServer,
  type IncomingMessage,
  type RequestListener,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { type RunningProxy, startProxy } from '../../src/server/app.js';
import { captureLogs } from './log-capture.js';

export { waitFor } from './wait.js';

export interface Listening {
  server: Server;
  port: number;
  url: string;
  close(): Promise<void>;
}

/** Listens on a free loopback port. */
export async function listen(server: Server): Promise<Listening> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A free loopback port, bound on port 0 and then released (also: a port nobody listens on). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function startBackend(handler: RequestListener): Promise<Listening> {
  return listen(createServer(handler));
}

/** A backend that answers every request with what it received, as JSON. */
export function startEchoBackend(): Promise<Listening> {
  return startBackend((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
  });
}

export interface TestProxy {
  url: string;
  proxy: RunningProxy;
  /** Every log line written, parsed. */
  logs: Array<Record<string, unknown>>;
  /** Raw log text, for "never contains" assertions. */
  logText(): string;
  close(): Promise<void>;
}

/** A test proxy's config from env-style settings (bypass mode unless told otherwise): a start's, or a reload's. */
export function testProxyConfig(env: Record<string, string>, configFile?: string): Config {
  return loadConfig({
    env: { AUTH_MODE: 'bypass', SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', LOG_LEVEL: 'debug', ...env },
    configFile,
  });
}

/**
 * Starts the proxy on a free port with env-style settings; bypass mode unless told otherwise.
 * `configFile` adds a YAML file's (`servers:`, which has no environment variable).
 */
export async function startTestProxy(env: Record<string, string>, configFile?: string): Promise<TestProxy> {
  const config = testProxyConfig(env, configFile);
  const log = captureLogs(config.log.level);
  const proxy = await startProxy({ config, logger: log.logger });
  return {
    url: proxy.url,
    proxy,
    get logs() {
      return log.lines();
    },
    logText: log.text,
    close: () => proxy.shutdown(),
  };
}
