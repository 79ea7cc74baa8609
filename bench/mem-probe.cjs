// Loaded into the proxy by bench/streams.mjs (STREAMS_MEMORY=1, with --expose-gc): on SIGUSR2, a full
// garbage collection, then process.memoryUsage() written as JSON to MEM_PROBE_FILE, and with
// MEM_PROBE_SNAPSHOT_DIR set, a heap snapshot written there too. Benchmark use only.
const { writeFileSync } = require('node:fs');
const path = require('node:path');
const v8 = require('node:v8');

let taken = 0;
process.on('SIGUSR2', () => {
  globalThis.gc?.();
  const dir = process.env.MEM_PROBE_SNAPSHOT_DIR;
  if (dir) v8.writeHeapSnapshot(path.join(dir, `proxy-${++taken}.heapsnapshot`));
  writeFileSync(process.env.MEM_PROBE_FILE, JSON.stringify(process.memoryUsage()));
});
