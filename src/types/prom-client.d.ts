/** prom-client's modules on their own (CommonJS, `module.exports = …`); see src/observability/prom-client.ts. */
declare module 'prom-client/lib/registry.js' {
  import type { Registry } from 'prom-client';

  const RegistryModule: typeof Registry;
  export default RegistryModule;
}

declare module 'prom-client/lib/counter.js' {
  import type { Counter } from 'prom-client';

  const CounterModule: typeof Counter;
  export default CounterModule;
}

declare module 'prom-client/lib/gauge.js' {
  import type { Gauge } from 'prom-client';

  const GaugeModule: typeof Gauge;
  export default GaugeModule;
}

declare module 'prom-client/lib/histogram.js' {
  import type { Histogram } from 'prom-client';

  const HistogramModule: typeof Histogram;
  export default HistogramModule;
}

declare module 'prom-client/lib/cluster.js' {
  import type { AggregatorRegistry } from 'prom-client';

  const AggregatorRegistryModule: typeof AggregatorRegistry;
  export default AggregatorRegistryModule;
}

declare module 'prom-client/lib/defaultMetrics.js' {
  import type { collectDefaultMetrics } from 'prom-client';

  const collectDefaultMetricsModule: typeof collectDefaultMetrics;
  export default collectDefaultMetricsModule;
}
