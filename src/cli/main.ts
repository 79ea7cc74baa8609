#!/usr/bin/env node
import { describeConfig, describeServers, type LoadInput, loadConfig } from '../config/load.js';
import { ConfigReloader } from '../config/reload.js';
import { ConfigError } from '../config/types.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { type RunningProxy, startProxy } from '../server/app.js';
import { helpText, type ParsedArgs, parseArgs, UsageError } from './args.js';
import { packageVersion } from './version.js';

/**
 * SIGHUP reloads the --config file (and CONFIG_WATCH watches it) once the proxy runs. Installed
 * before the start, since SIGHUP's default action would end the process; the returned function
 * arms it with the running proxy.
 */
function reloadOnSignal(
  logger: () => Logger,
): (input: LoadInput, proxy: RunningProxy, watch: boolean) => ConfigReloader {
  let reloader: ConfigReloader | undefined;
  process.on('SIGHUP', () => {
    if (reloader) reloader.reload('SIGHUP');
    else logger().warn('SIGHUP while starting: ignored; send it again once the proxy listens');
  });
  return (input, proxy, watch) => {
    reloader = new ConfigReloader({
      input,
      logger: logger(),
      apply: (next, trigger) => proxy.reload(next, trigger),
      onRejected: () => proxy.metrics.configReloads.inc({ result: 'rejected' }),
    });
    reloader.watch(watch);
    return reloader;
  };
}

async function serve(args: ParsedArgs): Promise<void> {
  // A reload reads the --config file again; flags and the environment stay as they were.
  const input: LoadInput = { flags: args.flags, env: { ...process.env }, configFile: args.configFile };
  const config = loadConfig(input);
  const logger = createLogger(config.log.level);
  const armReload = reloadOnSignal(() => logger);
  let proxy: RunningProxy;
  try {
    proxy = await startProxy({ config, logger });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { hostname?: string };
    // A name SERVER_HOST cannot resolve fails in getaddrinfo, like any other lookup would: only
    // this one is the listen address's fault.
    if (e.syscall === 'getaddrinfo' && e.hostname === config.server.host) e.syscall = 'listen';
    throw err;
  }
  const exit = (code: number): void => {
    process.exitCode = code;
    // Flush the log, but never wait on a stdout nobody reads any more.
    setTimeout(() => process.exit(code), 1000).unref();
    logger.flush(() => process.exit(code));
  };
  const configReloader = armReload(input, proxy, config.watchConfig);
  const stop = (signal: string): void => {
    logger.info({ signal }, 'signal received');
    configReloader.close();
    proxy.shutdown().then(
      () => exit(0),
      (err: Error) => {
        logger.error({ err: err.message }, 'shutdown failed');
        exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

async function demo(args: ParsedArgs): Promise<void> {
  // Loaded on demand: the sample MCP server (and the SDK) is no weight for `serve`.
  const { runDemo } = await import('../demo/demo.js');
  let logger: Logger | undefined;
  const armReload = reloadOnSignal(() => logger ?? createLogger('info'));
  const running = await runDemo({
    flags: args.flags,
    configFile: args.configFile,
    stdioCommand: args.demoStdio,
  });
  logger = running.logger;
  const reloader = armReload(running.input, running.proxy, running.config.watchConfig);
  const onSignal = (): void => {
    reloader.close();
    running.stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

function checkConfig(args: ParsedArgs): void {
  let problems = '';
  let servers: string[] = [];
  try {
    servers = describeServers(loadConfig({ flags: args.flags, configFile: args.configFile }));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = err.message;
  }
  const rows = describeConfig({ flags: args.flags, configFile: args.configFile });
  const keyWidth = Math.max(...rows.map((r) => r.key.length));
  // Long values (the CSP) push their own source out rather than the whole column.
  const valueWidth = Math.min(40, Math.max(...rows.map((r) => r.value.length)));
  const out = [
    '# effective configuration (secrets masked)',
    '# precedence: flags > environment > YAML file > defaults',
    ...(args.configFile ? [`# config file: ${args.configFile}`] : []),
    '',
    ...rows.map((r) => `${r.key.padEnd(keyWidth)} = ${r.value.padEnd(valueWidth)}  # ${r.source}`),
    '',
    ...(servers.length > 0 ? [...servers, ''] : []),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
  if (problems) {
    process.stderr.write(`mcp-oidc-proxy: ${problems}\n`);
    process.exitCode = 2;
  } else process.stdout.write('configuration OK\n');
}

/** A message for a listen failure that names the setting to change. */
function listenFailure(
  err: NodeJS.ErrnoException & { address?: string; port?: number; setting?: string },
): string {
  const where = err.address === undefined ? '' : ` on ${err.address}${err.port ? `:${err.port}` : ''}`;
  if (err.setting === 'ADMIN_LISTEN') {
    return `cannot listen${where} for the admin surface (${err.code}): ${err.message}; set ADMIN_LISTEN to a free host:port on this machine`;
  }
  switch (err.code) {
    case 'EADDRINUSE':
      return `cannot listen${where}: the port is already in use (EADDRINUSE); set SERVER_PORT (--port) to a free port or stop the process using it`;
    case 'EACCES':
      return `cannot listen${where}: permission denied (EACCES); ports below 1024 need privileges, so set SERVER_PORT (--port) to 1024 or above`;
    case 'EADDRNOTAVAIL':
      return `cannot listen${where}: the address is not on this machine (EADDRNOTAVAIL); set SERVER_HOST (--host) to one of its addresses, or 0.0.0.0 for all`;
    default:
      return `cannot listen (${err.code}): ${err.message}; check SERVER_HOST (--host) and SERVER_PORT (--port): 0.0.0.0 listens on every address`;
  }
}

async function main(argv: string[]): Promise<void> {
  const args = parseArgs(argv);
  switch (args.command) {
    case 'version':
      process.stdout.write(`${packageVersion()}\n`);
      return;
    case 'help':
      process.stdout.write(helpText(packageVersion()));
      return;
    case 'check-config':
      return checkConfig(args);
    case 'demo':
      return demo(args);
    case 'serve':
      return serve(args);
  }
}

main(process.argv.slice(2)).catch((err: NodeJS.ErrnoException) => {
  if (err instanceof UsageError) {
    process.stderr.write(`mcp-oidc-proxy: ${err.message}\n`);
    process.exitCode = 64;
  } else if (err instanceof ConfigError) {
    process.stderr.write(
      `mcp-oidc-proxy: ${err.message}\nFix the settings above; \`mcp-oidc-proxy check-config\` shows the effective configuration.\n`,
    );
    process.exitCode = 2;
  } else if (err.syscall === 'listen') {
    process.stderr.write(`mcp-oidc-proxy: ${listenFailure(err)}\n`);
    process.exitCode = 1;
  } else {
    process.stderr.write(`mcp-oidc-proxy: unexpected error: ${err.message}\n`);
    process.exitCode = 1;
  }
});
