import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/types.js';
import { resolveTracingSettings } from '../../src/observability/tracing.js';

/** The settings for TRACING_* values (as the proxy's env) and OTEL_* values (the standard ones). */
function settings(tracing: Record<string, string>, otel: Record<string, string> = {}) {
  const config = loadConfig({ env: { AUTH_MODE: 'bypass', TRACING_ENABLED: 'true', ...tracing } });
  return resolveTracingSettings(config, otel, '1.2.3');
}

function problemKeys(run: () => unknown): string[] {
  try {
    run();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map((p) => p.key);
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('tracing settings: TRACING_* and the standard OTEL_* variables', () => {
  it('defaults to the local collector, the proxy as service, and every new trace', () => {
    expect(settings({})).toEqual({
      tracesUrl: new URL('http://localhost:4318/v1/traces'),
      headers: {},
      resource: { 'service.name': 'mcp-oidc-proxy', 'service.version': '1.2.3' },
      sampleRate: 1,
    });
  });

  it('posts to TRACING_ENDPOINT + /v1/traces, keeping a path prefix, over any OTEL_* endpoint', () => {
    const otel = {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://generic:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://signal:4318/custom',
    };
    expect(settings({ TRACING_ENDPOINT: 'http://collector:4318' }, otel).tracesUrl.href).toBe(
      'http://collector:4318/v1/traces',
    );
    expect(settings({ TRACING_ENDPOINT: 'https://gw.example.com/otlp/' }).tracesUrl.href).toBe(
      'https://gw.example.com/otlp/v1/traces',
    );
  });

  it('without TRACING_ENDPOINT: the traces endpoint as is, else the base endpoint + /v1/traces', () => {
    expect(
      settings(
        {},
        {
          OTEL_EXPORTER_OTLP_ENDPOINT: 'http://generic:4318',
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://signal:4318/custom',
        },
      ).tracesUrl.href,
    ).toBe('http://signal:4318/custom');
    expect(settings({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://generic:4318/' }).tracesUrl.href).toBe(
      'http://generic:4318/v1/traces',
    );
  });

  it('sends OTEL_EXPORTER_OTLP_HEADERS, the traces-specific ones winning per name', () => {
    expect(
      settings(
        {},
        {
          OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc, x-tenant=a',
          OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-tenant=b',
        },
      ).headers,
    ).toEqual({ authorization: 'Bearer abc', 'x-tenant': 'b' });
  });

  it('adds OTEL_RESOURCE_ATTRIBUTES; OTEL_SERVICE_NAME names the service above all', () => {
    const attributes = 'deployment.environment=prod,service.name=from-attributes';
    expect(settings({}, { OTEL_RESOURCE_ATTRIBUTES: attributes }).resource).toEqual({
      'service.name': 'from-attributes',
      'service.version': '1.2.3',
      'deployment.environment': 'prod',
    });
    expect(
      settings({}, { OTEL_RESOURCE_ATTRIBUTES: attributes, OTEL_SERVICE_NAME: 'edge-proxy' }).resource[
        'service.name'
      ],
    ).toBe('edge-proxy');
  });

  it('takes the sample rate from OTEL_TRACES_SAMPLER(_ARG) unless TRACING_SAMPLE_RATE is set', () => {
    const ratio = { OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' };
    expect(settings({}, ratio).sampleRate).toBe(0.25);
    expect(settings({ TRACING_SAMPLE_RATE: '0.5' }, ratio).sampleRate).toBe(0.5);
    expect(settings({ TRACING_SAMPLE_RATE: '1.0' }, { OTEL_TRACES_SAMPLER: 'always_off' }).sampleRate).toBe(
      1,
    );
    expect(settings({}, { OTEL_TRACES_SAMPLER: 'always_off' }).sampleRate).toBe(0);
    expect(settings({}, { OTEL_TRACES_SAMPLER: 'ParentBased_Always_On' }).sampleRate).toBe(1);
    expect(settings({}, { OTEL_TRACES_SAMPLER: 'traceidratio' }).sampleRate).toBe(1);
  });

  it('refuses malformed OTEL_* values with a ConfigError naming each of them', () => {
    expect(
      problemKeys(() =>
        settings(
          {},
          {
            OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318',
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'not a url',
            OTEL_TRACES_SAMPLER: 'traceidratio',
            OTEL_TRACES_SAMPLER_ARG: '2',
          },
        ),
      ),
    ).toEqual([
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
      'OTEL_EXPORTER_OTLP_ENDPOINT',
      'OTEL_TRACES_SAMPLER_ARG',
    ]);
    expect(problemKeys(() => settings({}, { OTEL_TRACES_SAMPLER: 'jaeger_remote' }))).toEqual([
      'OTEL_TRACES_SAMPLER',
    ]);
    // An explicit TRACING_ENDPOINT makes the OTEL_* endpoints irrelevant, so they are not checked.
    expect(
      settings({ TRACING_ENDPOINT: 'http://collector:4318' }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'nonsense' })
        .tracesUrl.host,
    ).toBe('collector:4318');
  });
});
