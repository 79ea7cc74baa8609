import type { IncomingHttpHeaders } from 'node:http';
import type { Config } from '../config/types.js';
import type { Logger } from './logger.js';

/** Span attribute values (OpenTelemetry's primitive ones); `undefined` entries are left out. */
export type SpanAttributes = Record<string, string | number | boolean | undefined>;

/** INTERNAL for a step inside the proxy, CLIENT for a call to another service. */
export type SpanKindName = 'internal' | 'client';

/**
 * One span of a request's trace, and the parent of the spans started through it. The request
 * path only ever talks to this interface: with tracing off it is `NOOP_SPAN`, whose methods do
 * nothing, and the OpenTelemetry SDK is never loaded.
 */
export interface TraceSpan {
  /** False when nothing is recorded (tracing off, or a trace not sampled): skip building attributes. */
  readonly recording: boolean;
  /**
   * Runs `work` inside a child span, ended when the promise settles; a rejection marks the span
   * failed (with the error's code or name, never its message) and is passed on unchanged.
   */
  child<T>(name: string, work: (span: TraceSpan) => Promise<T>, kind?: SpanKindName): Promise<T>;
  /** A child span the caller ends itself (one that outlives a single promise). */
  start(name: string, kind?: SpanKindName): TraceSpan;
  setAttributes(attributes: SpanAttributes): void;
  updateName(name: string): void;
  /** Error status, with a short machine-readable type (`error.type`). */
  fail(errorType: string): void;
  /**
   * Appends the W3C `traceparent` (and `tracestate`) naming this span to a flat
   * `[name, value, ...]` header list, for the request it makes.
   */
  inject(headers: string[]): void;
  end(): void;
}

function noop(): void {}

/** The span of a request when tracing is off: every method is free. */
export const NOOP_SPAN: TraceSpan = Object.freeze({
  recording: false,
  child: <T>(_name: string, work: (span: TraceSpan) => Promise<T>): Promise<T> => work(NOOP_SPAN),
  start: (): TraceSpan => NOOP_SPAN,
  setAttributes: noop,
  updateName: noop,
  fail: noop,
  inject: noop,
  end: noop,
});

/** `server.address` and `server.port` of a URL a span calls (an IPv6 address without brackets). */
export function serverAttributes(url: URL | string): SpanAttributes {
  const target = typeof url === 'string' ? new URL(url) : url;
  return {
    'server.address': target.hostname.replace(/^\[(.*)\]$/, '$1'),
    'server.port': Number(target.port) || (target.protocol === 'https:' ? 443 : 80),
  };
}

/** Runs `work` (a call to `target`, another service) as a CLIENT span under `trace`. */
export function traceCall<T>(
  trace: TraceSpan,
  name: string,
  target: URL | string | undefined,
  work: () => Promise<T>,
  attributes?: SpanAttributes,
): Promise<T> {
  return trace.child(
    name,
    (span) => {
      if (span.recording) span.setAttributes({ ...(target ? serverAttributes(target) : {}), ...attributes });
      return work();
    },
    'client',
  );
}

export interface Tracing {
  readonly enabled: boolean;
  /** The SERVER span of an incoming request, continuing the W3C trace context its headers carry. */
  startServer(name: string, headers: IncomingHttpHeaders): TraceSpan;
  /** Parent of the spans no request started (identity provider discovery): each begins a trace. */
  readonly root: TraceSpan;
  /** Exports what is still buffered (bounded in time) and stops. */
  shutdown(): Promise<void>;
}

export const NO_TRACING: Tracing = Object.freeze({
  enabled: false,
  startServer: (): TraceSpan => NOOP_SPAN,
  root: NOOP_SPAN,
  shutdown: (): Promise<void> => Promise.resolve(),
});

/**
 * TRACING_ENABLED=true: the OpenTelemetry SDK, loaded on demand so that it costs nothing
 * (not even its module loading) when tracing is off. The standard OTEL_* variables are read
 * from `env`.
 */
export async function startTracing(
  config: Config,
  logger: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Promise<Tracing> {
  if (!config.tracing.enabled) return NO_TRACING;
  const { createOtelTracing } = await import('./tracing.js');
  return createOtelTracing(config, logger, env);
}
