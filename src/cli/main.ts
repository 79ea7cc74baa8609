#!/usr/bin/env node
import { commandLineArguments, isWorker, onOrder, shareMetrics, workerLogFields } from '../cluster/worker.js';
import {
  describeConfig,
  describeServers,
  describeWorkers,
  type LoadInput,
  loadConfig,
} from '../config/load.js';
import { ConfigReloader } from '../config/reload.js';
import { type Config, ConfigError } from '../config/types.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { type RunningProxy, startProxy } from '../server/app.js';
import { helpText, type ParsedArgs, parseArgs, UsageError } from './args.js';
import { packageVersion } from './version.js';

/**
 * SIGHUP reloads the --config file (and CONFIG_WATCH watches it) once the proxy runs. Installed
 * before the start, since SIGHUP's default action would end the process; the returned function
 * arms it with the running proxy. In a worker, the primary passes its SIGHUP on as an order.
 */
function reloadOnSignal(
  logger: () => Logger,
): (input: LoadInput, proxy: RunningProxy, watch: boolean) => ConfigReloader {
  let reloader: ConfigReloader | undefined;
  const reload = (): void => {
    if (reloader) reloader.reload('SIGHUP');
    else logger().warn('SIGHUP while starting: ignored; send it again once the proxy listens');
  };
  process.on('SIGHUP', reload);
  if (isWorker()) onOrder('mcp-oidc-proxy:reload', reload);
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

/** Sets the exit code, flushes the log, and exits (at the latest a second later). */
function exitAfterFlush(logger: Logger, code: number): void {
  process.exitCode = code;
  // Flush the log, but never wait on a stdout nobody reads any more.
  setTimeout(() => process.exit(code), 1000).unref();
  logger.flush(() => process.exit(code));
}

async function serve(args: ParsedArgs): Promise<void> {
  // A reload reads the --config file again; flags and the environment stay as they were.
  const input: LoadInput = { flags: args.flags, env: { ...process.env }, configFile: args.configFile };
  const config = loadConfig(input);
  if (config.server.workers > 1 && !isWorker()) return servePrimary(input, config);
  const worker = isWorker();
  const logger = worker
    ? createLogger(config.log.level).child(workerLogFields())
    : createLogger(config.log.level);
  const armReload = reloadOnSignal(() => logger);
  let proxy: RunningProxy;
  try {
    proxy = await startProxy({ config, logger, aggregateMetrics: worker ? shareMetrics : undefined });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { hostname?: string };
    // A name SERVER_HOST cannot resolve fails in getaddrinfo, like any other lookup would: only
    // this one is the listen address's fault.
    if (e.syscall === 'getaddrinfo' && e.hostname === config.server.host) e.syscall = 'listen';
    throw err;
  }
  const exit = (code: number): void => exitAfterFlush(logger, code);
  const configReloader = armReload(input, proxy, config.watchConfig);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
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
  if (!worker) {
    // Once: a second Ctrl-C ends a single process that takes too long to stop.
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    return;
  }
  // A worker stops on the primary's order. A terminal's Ctrl-C (or a service manager signalling
  // the whole group) reaches it directly too, before the order: both start the one shutdown,
  // and a repeated signal must not end the worker mid-way (the primary kills at its deadline).
  onOrder('mcp-oidc-proxy:shutdown', () => stop('SIGTERM (from the primary)'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

/**
 * SERVER_WORKERS > 1: this process only runs the workers (src/cluster/primary.ts); each of them
 * runs `serve` again and serves on the shared port.
 */
async function servePrimary(input: LoadInput, config: Config): Promise<void> {
  const logger = createLogger(config.log.level).child({ role: 'primary', pid: process.pid });
  const { runPrimary } = await import('../cluster/primary.js');
  let shutdownTimeoutMs = config.server.shutdownTimeoutMs;
  // SHUTDOWN_TIMEOUT reloads: the primary's deadline follows the file the workers reload. A
  // file that fails to load is reported by every worker; the running value stays here too.
  process.on('SIGHUP', () => {
    try {
      shutdownTimeoutMs = loadConfig(input).server.shutdownTimeoutMs;
    } catch {}
  });
  const code = await runPrimary({
    workers: config.server.workers,
    logger,
    sessionSecret: config.session.secret,
    shutdownTimeoutMs: () => shutdownTimeoutMs,
  });
  exitAfterFlush(logger, code);
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
    const config = loadConfig({ flags: args.flags, configFile: args.configFile });
    servers = [...describeServers(config), describeWorkers(config)];
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

main(commandLineArguments()).catch((err: NodeJS.ErrnoException) => {
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
  // A worker's channel to the primary would keep it alive: end it, and the primary hears the code.
  if (isWorker()) process.exit();
});
