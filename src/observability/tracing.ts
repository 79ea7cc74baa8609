// OpenTelemetry tracing (TRACING_ENABLED=true). Loaded on demand by spans.ts: nothing here is
// imported while tracing is off. Spans are placed by hand (no auto-instrumentation, no require
// hooks, which the single-executable bundle could not honour) and parents are passed explicitly,
// so no global tracer provider, context manager or propagator is registered.
import {
  type Context,
  defaultTextMapGetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapSetter,
  type Tracer,
  trace,
} from '@opentelemetry/api';
import {
  type ExportResult,
  ExportResultCode,
  parseKeyPairsIntoRecord,
  W3CTraceContextPropagator,
} from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import {
  ATTR_ERROR_TYPE,
  ATTR_SERVICE_NAME,
  ATTR_SERVICE_VERSION,
} from '@opentelemetry/semantic-conventions';
import { packageVersion } from '../cli/version.js';
import { type Config, ConfigError, type ConfigProblem } from '../config/types.js';
import type { Logger } from './logger.js';
import type { SpanAttributes, SpanKindName, TraceSpan, Tracing } from './spans.js';

export const SERVICE_NAME = 'mcp-oidc-proxy';
const DEFAULT_BASE_URL = 'http://localhost:4318';
const TRACES_PATH = 'v1/traces';
/** Export failures are logged at most this often (the first one at once). */
const EXPORT_FAILURE_LOG_INTERVAL_MS = 60_000;
/** Shutdown waits this long at most for buffered spans to reach the collector. */
const SHUTDOWN_FLUSH_TIMEOUT_MS = 3_000;

/** Everything the exporter and the tracer provider are built from. */
export interface TracingSettings {
  /** Where spans are POSTed (OTLP/HTTP, JSON encoding). */
  tracesUrl: URL;
  /** Sent with every export (collector credentials, tenant ids). */
  headers: Record<string, string>;
  /** Resource attributes: service.name, service.version and OTEL_RESOURCE_ATTRIBUTES. */
  resource: Record<string, string>;
  /** Fraction of new traces recorded; a sampled incoming parent is always followed. */
  sampleRate: number;
}

/** `base` + `/v1/traces`, keeping a path prefix (a collector behind `/otlp`). */
function tracesUrlUnder(base: URL): URL {
  const url = new URL(base.href);
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/${TRACES_PATH}`;
  return url;
}

function isExplicit(source: string | undefined): boolean {
  return source !== undefined && source !== 'default' && source !== 'unset';
}

/**
 * The exporter settings from the config and the standard OTEL_* variables
 * (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/).
 * A TRACING_* setting given explicitly wins over its OTEL_* counterpart:
 * - endpoint: TRACING_ENDPOINT + /v1/traces, else OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (as is),
 *   else OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, else http://localhost:4318/v1/traces;
 * - headers: OTEL_EXPORTER_OTLP_HEADERS, overridden per name by OTEL_EXPORTER_OTLP_TRACES_HEADERS;
 * - resource: service.name mcp-oidc-proxy and the package version, then OTEL_RESOURCE_ATTRIBUTES,
 *   then OTEL_SERVICE_NAME;
 * - sample rate: TRACING_SAMPLE_RATE when set, else what OTEL_TRACES_SAMPLER(_ARG) says, else 1.0.
 * Malformed OTEL_* values are a ConfigError, like any other bad setting.
 */
export function resolveTracingSettings(
  config: Pick<Config, 'tracing' | 'sources'>,
  env: NodeJS.ProcessEnv,
  version: string,
): TracingSettings {
  const problems: ConfigProblem[] = [];
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value ? value : undefined;
  };
  const envUrl = (name: string): URL | undefined => {
    const raw = read(name);
    if (raw === undefined) return undefined;
    try {
      const url = new URL(raw);
      if (url.protocol === 'http:' || url.protocol === 'https:') return url;
    } catch {}
    problems.push({ key: name, value: raw, source: 'env', message: 'must be an http:// or https:// URL' });
    return undefined;
  };

  let tracesUrl: URL;
  if (config.tracing.endpoint) tracesUrl = tracesUrlUnder(config.tracing.endpoint);
  else {
    const signal = envUrl('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
    const base = envUrl('OTEL_EXPORTER_OTLP_ENDPOINT');
    tracesUrl = signal ?? tracesUrlUnder(base ?? new URL(DEFAULT_BASE_URL));
  }

  const headers = {
    ...parseKeyPairsIntoRecord(read('OTEL_EXPORTER_OTLP_HEADERS')),
    ...parseKeyPairsIntoRecord(read('OTEL_EXPORTER_OTLP_TRACES_HEADERS')),
  };

  const resource: Record<string, string> = {
    [ATTR_SERVICE_NAME]: SERVICE_NAME,
    [ATTR_SERVICE_VERSION]: version,
    ...parseKeyPairsIntoRecord(read('OTEL_RESOURCE_ATTRIBUTES')),
  };
  const serviceName = read('OTEL_SERVICE_NAME');
  if (serviceName) resource[ATTR_SERVICE_NAME] = serviceName;

  let sampleRate = config.tracing.sampleRate;
  const sampler = read('OTEL_TRACES_SAMPLER')?.toLowerCase();
  if (!isExplicit(config.sources.TRACING_SAMPLE_RATE) && sampler !== undefined) {
    const fromEnv = sampleRateFromSampler(sampler, read('OTEL_TRACES_SAMPLER_ARG'));
    if (typeof fromEnv === 'number') sampleRate = fromEnv;
    else problems.push({ ...fromEnv, source: 'env' });
  }

  if (problems.length > 0) throw new ConfigError(problems);
  return { tracesUrl, headers, resource, sampleRate };
}

/**
 * The proxy's sampler is always parent-based with a ratio for new traces, so the standard
 * samplers map onto that ratio (`always_on` 1, `always_off` 0, `*traceidratio` the argument).
 */
function sampleRateFromSampler(
  sampler: string,
  arg: string | undefined,
): number | Omit<ConfigProblem, 'source'> {
  switch (sampler) {
    case 'always_on':
    case 'parentbased_always_on':
      return 1;
    case 'always_off':
    case 'parentbased_always_off':
      return 0;
    case 'traceidratio':
    case 'parentbased_traceidratio': {
      if (arg === undefined) return 1;
      const rate = Number(arg);
      return Number.isFinite(rate) && rate >= 0 && rate <= 1
        ? rate
        : { key: 'OTEL_TRACES_SAMPLER_ARG', value: arg, message: 'must be a number from 0 to 1' };
    }
    default:
      return {
        key: 'OTEL_TRACES_SAMPLER',
        value: sampler,
        message:
          'must be always_on, always_off, traceidratio or their parentbased_ forms (the proxy always follows a sampled parent)',
      };
  }
}

/** Writes propagation fields into undici's flat `[name, value, ...]` header list. */
const flatHeaderSetter: TextMapSetter<string[]> = {
  set(carrier, key, value) {
    carrier.push(key, value);
  },
};

const propagator = new W3CTraceContextPropagator();

const SPAN_KIND: Record<SpanKindName, SpanKind> = {
  internal: SpanKind.INTERNAL,
  client: SpanKind.CLIENT,
};

/** A machine-readable error type: the code or class name, never the message (it may quote a peer). */
function errorTypeOf(err: unknown): string {
  const { code, name } = (err ?? {}) as { code?: unknown; name?: unknown };
  if (typeof code === 'string' && code) return code;
  return typeof name === 'string' && name ? name : 'Error';
}

/** A recorded (or sampled-out) span; without one, the parent of new traces. */
class OtelSpan implements TraceSpan {
  readonly recording: boolean;
  private readonly context: Context;

  constructor(
    private readonly tracer: Tracer,
    private readonly span: Span | undefined,
  ) {
    this.recording = span?.isRecording() ?? false;
    this.context = span ? trace.setSpan(ROOT_CONTEXT, span) : ROOT_CONTEXT;
  }

  start(name: string, kind: SpanKindName = 'internal'): TraceSpan {
    return new OtelSpan(this.tracer, this.tracer.startSpan(name, { kind: SPAN_KIND[kind] }, this.context));
  }

  async child<T>(name: string, work: (span: TraceSpan) => Promise<T>, kind?: SpanKindName): Promise<T> {
    const span = this.start(name, kind);
    try {
      return await work(span);
    } catch (err) {
      span.fail(errorTypeOf(err));
      throw err;
    } finally {
      span.end();
    }
  }

  setAttributes(attributes: SpanAttributes): void {
    if (!this.span) return;
    for (const [key, value] of Object.entries(attributes)) {
      if (value !== undefined) this.span.setAttribute(key, value);
    }
  }

  updateName(name: string): void {
    this.span?.updateName(name);
  }

  fail(errorType: string): void {
    this.span?.setAttribute(ATTR_ERROR_TYPE, errorType);
    this.span?.setStatus({ code: SpanStatusCode.ERROR, message: errorType });
  }

  inject(headers: string[]): void {
    propagator.inject(this.context, headers, flatHeaderSetter);
  }

  end(): void {
    this.span?.end();
  }
}

/**
 * Tells the operator when spans cannot be delivered (collector down, refused credentials):
 * the first failure at once, then at most once a minute with how many exports failed since,
 * and once when delivery works again. Requests never wait on any of this: the batch processor
 * exports in the background and drops spans when its queue is full.
 */
class ReportingExporter implements SpanExporter {
  private failedSinceLog = 0;
  private droppedSinceLog = 0;
  private lastLogAt = Number.NEGATIVE_INFINITY;
  private failing = false;

  constructor(
    private readonly inner: SpanExporter,
    private readonly logger: Logger,
    private readonly endpoint: string,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) {
        if (this.failing) this.logger.info({ endpoint: this.endpoint }, 'trace export recovered');
        this.failing = false;
        this.failedSinceLog = 0;
        this.droppedSinceLog = 0;
      } else this.reportFailure(result.error, spans.length);
      done(result);
    });
  }

  private reportFailure(error: Error | undefined, spans: number): void {
    this.failing = true;
    this.failedSinceLog++;
    this.droppedSinceLog += spans;
    const now = Date.now();
    if (now - this.lastLogAt < EXPORT_FAILURE_LOG_INTERVAL_MS) return;
    this.lastLogAt = now;
    this.logger.warn(
      {
        endpoint: this.endpoint,
        err: error?.message.slice(0, 200),
        status: (error as { code?: unknown } | undefined)?.code,
        failed_exports: this.failedSinceLog,
        spans_dropped: this.droppedSinceLog,
      },
      'trace export failed; spans are dropped until the collector is reachable',
    );
    this.failedSinceLog = 0;
    this.droppedSinceLog = 0;
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

class OtelTracing implements Tracing {
  readonly enabled = true;
  readonly root: TraceSpan;

  constructor(
    private readonly provider: BasicTracerProvider,
    private readonly tracer: Tracer,
    private readonly logger: Logger,
  ) {
    this.root = new OtelSpan(tracer, undefined);
  }

  startServer(name: string, headers: Parameters<Tracing['startServer']>[1]): TraceSpan {
    const parent = propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
    return new OtelSpan(this.tracer, this.tracer.startSpan(name, { kind: SpanKind.SERVER }, parent));
  }

  async shutdown(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), SHUTDOWN_FLUSH_TIMEOUT_MS);
    });
    const outcome = await Promise.race([
      this.provider.shutdown().then(
        () => 'done' as const,
        () => 'done' as const,
      ),
      deadline,
    ]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      this.logger.warn(
        { timeout_ms: SHUTDOWN_FLUSH_TIMEOUT_MS },
        'trace export did not finish before shutdown; the remaining spans are dropped',
      );
    }
  }
}

/** The tracer provider (batching OTLP/HTTP exporter, parent-based ratio sampler) for the config. */
export function createOtelTracing(config: Config, logger: Logger, env: NodeJS.ProcessEnv): Tracing {
  const version = packageVersion();
  const settings = resolveTracingSettings(config, env, version);
  // Logged without credentials or query: only where spans go.
  const endpoint = settings.tracesUrl.origin + settings.tracesUrl.pathname;
  const exporter = new ReportingExporter(
    new OTLPTraceExporter({ url: settings.tracesUrl.href, headers: settings.headers }),
    logger,
    endpoint,
  );
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(resourceFromAttributes(settings.resource)),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(settings.sampleRate) }),
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  logger.info(
    {
      endpoint,
      sample_rate: settings.sampleRate,
      service_name: settings.resource[ATTR_SERVICE_NAME],
    },
    'tracing enabled: exporting spans over OTLP/HTTP',
  );
  return new OtelTracing(provider, provider.getTracer(SERVICE_NAME, version), logger);
}
