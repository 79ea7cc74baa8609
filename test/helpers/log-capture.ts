import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/observability/logger.js';

export interface LogCapture {
  /** A logger made as the proxy makes its own (level, redaction, format), writing here. */
  logger: Logger;
  /** Every line written so far, parsed, oldest first (a copy: later lines do not appear in it). */
  lines(): Array<Record<string, unknown>>;
  /** Every line as written, one a line: for "never contains" assertions. */
  text(): string;
}

/** A logger at `level` whose JSON lines are kept in memory. */
export function captureLogs(level = 'debug'): LogCapture {
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      raw.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  return {
    logger: createLogger(level, sink),
    lines: () => raw.map((l) => JSON.parse(l) as Record<string, unknown>),
    text: () => raw.join('\n'),
  };
}

/** A logger (errors only) that writes nowhere, for components that need one. */
export function quietLogger(): Logger {
  return createLogger('error', new Writable({ write: (_chunk, _enc, cb) => cb() }));
}
