// Preloaded into a proxy by bench/latency.mjs (`node --import bench/gc-observer.mjs`): writes every
// garbage collection (perf_hooks 'gc' entries) and every event-loop stall of the process to the file
// BENCH_GC_LOG, one JSON line each, with wall-clock times, so the slowest requests of an open-loop run
// can be set against them. Not part of the proxy; does nothing without BENCH_GC_LOG.
import { openSync, writeSync } from 'node:fs';
import { constants, PerformanceObserver, performance } from 'node:perf_hooks';
import { startStallWatch } from './stall-watch.mjs';

const file = process.env.BENCH_GC_LOG;
if (file) {
  const fd = openSync(file, 'a');
  const write = (o) => writeSync(fd, `${JSON.stringify({ pid: process.pid, ...o })}\n`);
  const kinds = {
    [constants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
    [constants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
    [constants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental-marking',
    [constants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak-callbacks',
  };
  new PerformanceObserver((entries) => {
    for (const e of entries.getEntries())
      write({
        type: 'gc',
        at: Math.round((performance.timeOrigin + e.startTime) * 1000) / 1000,
        ms: Math.round(e.duration * 1000) / 1000,
        kind: kinds[e.detail?.kind] ?? String(e.detail?.kind),
      });
  }).observe({ entryTypes: ['gc'] });
  startStallWatch((stall) => write({ type: 'stall', ...stall }));
}
