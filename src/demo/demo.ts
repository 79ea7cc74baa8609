import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { type LoadInput, loadConfig } from '../config/load.js';
import type { Config } from '../config/types.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { type RunningProxy, startProxy } from '../server/app.js';
import { quoteCommand } from '../stdio/command.js';
import { DEFAULT_DEV_USERS, type DevIdp, startDevIdp } from './dev-idp.js';
import { createSampleMcpServer } from './sample-mcp-server.js';

export interface DemoOptions {
  /** CLI flags (`--port`, `--host`, `--public-url`, `--auth-mode`, ...), validated like `serve`'s. */
  flags: Record<string, string>;
  /**
   * `--config FILE`: settings of the user's own (`mcp_access` rules, say) on top of the demo's;
   * SIGHUP or CONFIG_WATCH reload it like `serve` does.
   */
  configFile?: string;
  /**
   * `--stdio "PROGRAM ARGS"`: a stdio MCP server the demo runs and fronts instead of its sample
   * HTTP server (PROXY_TARGET_COMMAND; already checked to split into words).
   */
  stdioCommand?: string;
}

/** The running demo: the proxy, what its config was loaded from (a reload loads it again), and stop. */
export interface RunningDemo {
  proxy: RunningProxy;
  /** The configuration it started with (CONFIG_WATCH from a --config file, say). */
  config: Config;
  input: LoadInput;
  logger: Logger;
  stop(): Promise<void>;
}

/** The MCP server the demo fronts: the setting that names it, and how to stop it. */
interface DemoTarget {
  env: Record<string, string>;
  close(): Promise<void>;
}

/** The sample HTTP MCP server on a loopback port, or a stdio command the proxy itself runs. */
async function startTarget(stdioCommand: string | undefined): Promise<DemoTarget> {
  if (stdioCommand !== undefined)
    return { env: { PROXY_TARGET_COMMAND: stdioCommand }, close: async () => {} };
  const sample = createSampleMcpServer();
  await new Promise<void>((resolve) => sample.server.listen(0, '127.0.0.1', resolve));
  const samplePort = (sample.server.address() as AddressInfo).port;
  return { env: { PROXY_TARGET_URL: `http://127.0.0.1:${samplePort}` }, close: () => sample.close() };
}

/** The banner's lines on what the demo serves. */
function servedLines(config: Config): string[] {
  const target = config.servers[0]?.target;
  if (target?.kind !== 'command')
    return ['  sample tools   : echo, count (streams progress), whoami (shows who you are)'];
  const per = target.isolation === 'user' ? 'user' : 'MCP session';
  return [
    `  stdio server   : ${quoteCommand(target.command)}`,
    `                   (run by the proxy: a child process per ${per}, its user in MCP_USER)`,
  ];
}

const DEMO_CLIENT_ID = 'mcp-oidc-proxy-demo';
const DEMO_ADMIN_GROUP = 'engineering';

/** A free port on `host`, so the IdP can register the proxy's exact callback before it listens. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * `mcp-oidc-proxy demo`: in one process, a development OIDC provider with test users, a
 * sample MCP server, and the proxy in front of it in oidc mode — the whole login flow with
 * nothing else installed. `--auth-mode bypass` leaves the login out; `--stdio` puts a stdio MCP
 * server of the user's in the sample server's place.
 */
export async function runDemo(options: DemoOptions): Promise<RunningDemo> {
  const host = options.flags.SERVER_HOST ?? '127.0.0.1';
  const requestedPort = Number(options.flags.SERVER_PORT ?? 8080);
  const port = Number.isInteger(requestedPort) && requestedPort > 0 ? requestedPort : await freePort(host);
  const publicUrl = new URL(options.flags.PUBLIC_URL ?? `http://localhost:${port}`);
  const bypass = options.flags.AUTH_MODE === 'bypass';

  let target: DemoTarget | undefined;
  let idp: DevIdp | undefined;
  let proxy: RunningProxy;
  let config: Config;
  let input: LoadInput;
  let logger: Logger;
  try {
    target = await startTarget(options.stdioCommand);
    const secret = randomBytes(24).toString('base64url');
    const env: Record<string, string> = {
      AUTH_MODE: 'oidc',
      SERVER_HOST: host,
      SERVER_PORT: String(port),
      PUBLIC_URL: publicUrl.origin,
      ...target.env,
      // MCP Inspector's web UI, which may call the server straight from the browser.
      ALLOWED_ORIGINS: 'http://localhost:6274,http://127.0.0.1:6274',
    };
    if (!bypass) {
      const idpPort = await freePort(host);
      idp = await startDevIdp({
        host,
        port: idpPort,
        issuerUrl: `${publicUrl.protocol}//${publicUrl.hostname}:${idpPort}`,
        clients: [
          {
            client_id: DEMO_CLIENT_ID,
            client_secret: secret,
            redirect_uris: [`${publicUrl.origin}/callback`],
            post_logout_redirect_uris: [`${publicUrl.origin}/logout`],
          },
        ],
      });
      Object.assign(env, {
        OIDC_DISCOVERY_URL: `${idp.issuer}/.well-known/openid-configuration`,
        OIDC_CLIENT_ID: DEMO_CLIENT_ID,
        OIDC_CLIENT_SECRET: secret,
        OIDC_SCOPES: 'openid email profile groups offline_access',
        // The monitoring page and admin API, for the test user in the engineering group (alice).
        ADMIN_ENABLED: 'true',
        ADMIN_GROUPS: DEMO_ADMIN_GROUP,
      });
    }
    // The demo's own settings are the environment here: a --config file adds to them (a file's
    // value yields to the environment's, so it cannot break the demo's login wiring).
    input = { flags: { ...options.flags, SERVER_PORT: String(port) }, env, configFile: options.configFile };
    config = loadConfig(input);
    logger = createLogger(config.log.level);
    proxy = await startProxy({ config, logger });
  } catch (err) {
    await idp?.close();
    await target?.close();
    throw err;
  }
  const mcpUrl = `${publicUrl.origin}${config.mcpPath}`;
  const users = idp
    ? DEFAULT_DEV_USERS.map(
        (u) => `${u.username} / ${u.password}  (${u.email}, groups: ${u.groups.join(', ')})`,
      )
    : [];
  process.stderr.write(
    [
      '',
      'mcp-oidc-proxy demo',
      `  MCP server URL : ${mcpUrl}`,
      `  browser        : ${publicUrl.origin}/  (any page behind the proxy; you are asked to log in)`,
      ...(idp
        ? [
            `  login at       : ${idp.issuer}  (a development OIDC provider)`,
            ...users.map((line, i) => `  ${i === 0 ? 'test users     :' : '               '} ${line}`),
          ]
        : ['  auth mode      : bypass (no login)']),
      ...(idp
        ? [
            `  monitoring     : ${publicUrl.origin}/admin  (the admin page: log in as alice, of the ${DEMO_ADMIN_GROUP} group)`,
          ]
        : []),
      `  health         : ${publicUrl.origin}/health     metrics: ${publicUrl.origin}${config.metrics.path}`,
      ...servedLines(config),
      '',
      `  try it         : npx @modelcontextprotocol/inspector   (Streamable HTTP, URL ${mcpUrl})`,
      `                   npx mcp-remote ${mcpUrl}`,
      '',
      'Press Ctrl+C to stop.',
      '',
    ].join('\n'),
  );
  return {
    proxy,
    config,
    input,
    logger,
    stop: async () => {
      await proxy.shutdown();
      await target?.close();
      await idp?.close();
    },
  };
}
