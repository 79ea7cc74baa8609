#!/usr/bin/env node
import { describeConfig, loadConfig } from '../config/load.js';
import { ConfigError } from '../config/types.js';
import { runDemo } from '../demo/demo.js';
import { createLogger } from '../observability/logger.js';
import { startProxy } from '../server/app.js';
import { helpText, type ParsedArgs, parseArgs, UsageError } from './args.js';
import { packageVersion } from './version.js';

async function serve(args: ParsedArgs): Promise<void> {
  const config = loadConfig({ flags: args.flags, configFile: args.configFile });
  const logger = createLogger(config.log.level);
  const proxy = await startProxy({ config, logger });
  const stop = (signal: string): void => {
    logger.info({ signal }, 'signal received');
    proxy.shutdown().then(
      () => logger.flush(() => process.exit(0)),
      (err: Error) => {
        logger.error({ err: err.message }, 'shutdown failed');
        logger.flush(() => process.exit(1));
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

async function demo(args: ParsedArgs): Promise<void> {
  const stop = await runDemo({
    host: args.flags.SERVER_HOST ?? '127.0.0.1',
    port: Number(args.flags.SERVER_PORT ?? 8080),
    logLevel: args.flags.LOG_LEVEL ?? 'info',
  });
  const onSignal = (): void => {
    stop().then(() => process.exit(0));
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
}

function checkConfig(args: ParsedArgs): void {
  let problems = '';
  try {
    loadConfig({ flags: args.flags, configFile: args.configFile });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = err.message;
  }
  const rows = describeConfig({ flags: args.flags, configFile: args.configFile });
  const width = Math.max(...rows.map((r) => r.key.length));
  process.stdout.write('# effective configuration (secrets masked)\n');
  for (const row of rows)
    process.stdout.write(`${row.key.padEnd(width)} = ${row.value}    # ${row.source}\n`);
  if (problems) {
    process.stderr.write(`\n${problems}\n`);
    process.exitCode = 2;
  } else process.stdout.write('\nconfiguration OK\n');
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

main(process.argv.slice(2)).catch((err: Error & { code?: string }) => {
  if (err instanceof UsageError) {
    process.stderr.write(`mcp-oidc-proxy: ${err.message}\n`);
    process.exitCode = 64;
  } else if (err instanceof ConfigError) {
    process.stderr.write(`mcp-oidc-proxy: ${err.message}\n`);
    process.exitCode = 2;
  } else if (err.code === 'EADDRINUSE' || err.code === 'EACCES') {
    process.stderr.write(
      `mcp-oidc-proxy: cannot listen (${err.code}): ${err.message}; choose another SERVER_PORT / --port\n`,
    );
    process.exitCode = 1;
  } else if (err.code === 'AUTH_MODE_UNAVAILABLE') {
    process.stderr.write(`mcp-oidc-proxy: ${err.message}\n`);
    process.exitCode = 2;
  } else {
    process.stderr.write(`mcp-oidc-proxy: unexpected error: ${err.message}\n`);
    process.exitCode = 1;
  }
});
