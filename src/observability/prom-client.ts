import type * as Library from 'prom-client';
import AggregatorRegistryModule from 'prom-client/lib/cluster.js';
import CounterModule from 'prom-client/lib/counter.js';
import collectDefaultMetricsModule from 'prom-client/lib/defaultMetrics.js';
import GaugeModule from 'prom-client/lib/gauge.js';
import HistogramModule from 'prom-client/lib/histogram.js';
import RegistryModule from 'prom-client/lib/registry.js';

/**
 * The parts of prom-client the proxy uses, each loaded by itself rather than through the package
 * index, which also loads the Pushgateway client and with it Node's `https` (TLS) and `zlib`
 * at start: ~16 ms of a start-up, for a client the proxy never uses. (The package publishes no
 * `exports` map, so these paths are part of its public layout; the types still come from the
 * package, see src/types/prom-client.d.ts.) The classes are the very ones the index exports.
 * Static imports, so that esbuild bundles them too.
 */
export const Registry: typeof Library.Registry = RegistryModule;
export type Registry = Library.Registry;
export const Counter: typeof Library.Counter = CounterModule;
export type Counter<T extends string = string> = Library.Counter<T>;
export const Gauge: typeof Library.Gauge = GaugeModule;
export type Gauge<T extends string = string> = Library.Gauge<T>;
export const Histogram: typeof Library.Histogram = HistogramModule;
export type Histogram<T extends string = string> = Library.Histogram<T>;
export const AggregatorRegistry: typeof Library.AggregatorRegistry = AggregatorRegistryModule;
export type AggregatorRegistry<T extends Library.RegistryContentType> = Library.AggregatorRegistry<T>;
export const collectDefaultMetrics: typeof Library.collectDefaultMetrics = collectDefaultMetricsModule;
