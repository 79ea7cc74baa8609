// Open-loop load generator, run in its own process by bench/latency.mjs.
//
// Requests are scheduled at fixed times (OL_RATE per second) whatever the answers do, and each one's
// latency runs from its scheduled time to the end of its answer's body: a stalled target is charged
// for every request that should have gone out meanwhile (no coordinated omission, as in wrk2). A
// closed-loop tool at saturation (wrk) measures throughput; this measures latency at a given load.
//
//   OL_URL          the URL to GET
//   OL_RATE=1000    requests per second          OL_SECONDS=10  measured seconds
//   OL_WARMUP=2     seconds at the same rate first, not counted
//   OL_CONNECTIONS=32  keep-alive connections at most (undici Pool; a request waits for a free one,
//                      and that wait counts)
//   OL_HEADERS      JSON object of request headers (e.g. the bearer token)
//   OL_SLOWEST=20   how many of the slowest requests to list, with their scheduled wall-clock time
//
// Prints one JSON line {"phase":"result",...} on stdout: latency percentiles (ms), errors, the
// slowest requests, and this process's own event-loop stalls (a late generator shows up in every
// target alike; its stalls are listed so a slow request can be told apart from a slow generator).
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';
import { startStallWatch } from './stall-watch.mjs';

const env = (name, def) => {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got ${v}`);
  return n;
};

const url = new URL(process.env.OL_URL ?? '');
const rate = env('OL_RATE', 1000);
const seconds = env('OL_SECONDS', 10);
const warmup = process.env.OL_WARMUP === '0' ? 0 : env('OL_WARMUP', 2);
const connections = env('OL_CONNECTIONS', 32);
const slowestCount = env('OL_SLOWEST', 20);
const headers = process.env.OL_HEADERS ? JSON.parse(process.env.OL_HEADERS) : {};

const pool = new Pool(url.origin, {
  connections,
  pipelining: 1,
  headersTimeout: 10_000,
  bodyTimeout: 10_000,
});
const interval = 1000 / rate;
const warmupCount = Math.round(rate * warmup);
const total = warmupCount + Math.round(rate * seconds);
const latency = new Float64Array(total).fill(Number.NaN);
/** Scheduled time to the moment the request was handed to undici: the generator's own lateness. */
const sendLag = new Float64Array(total);
let errors = 0;
let non2xx = 0;
let done = 0;
const stalls = startStallWatch();
// A little ahead, so the first requests are not already late.
const start = performance.now() + 20;

const finished = new Promise((resolve) => {
  const settle = () => {
    if (++done === total) resolve();
  };
  const fire = (i) => {
    const scheduled = start + i * interval;
    sendLag[i] = performance.now() - scheduled;
    pool
      .request({ path: url.pathname + url.search, method: 'GET', headers })
      .then(async ({ statusCode, body }) => {
        await body.dump();
        latency[i] = performance.now() - scheduled;
        if (statusCode < 200 || statusCode > 299) non2xx++;
      })
      .catch(() => {
        errors++;
      })
      .finally(settle);
  };
  let next = 0;
  // Timers fire at 1 ms granularity at best: each tick sends every request whose time has come.
  const tick = () => {
    const now = performance.now();
    while (next < total && start + next * interval <= now) fire(next++);
    if (next < total) setTimeout(tick, Math.max(0, start + next * interval - performance.now()));
  };
  setTimeout(tick, Math.max(0, start - performance.now()));
});

await finished;
stalls.stop();
await pool.close();

const measured = [];
for (let i = warmupCount; i < total; i++) if (!Number.isNaN(latency[i])) measured.push(i);
const sorted = measured.map((i) => latency[i]).sort((a, b) => a - b);
const pct = (p) =>
  sorted.length
    ? round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)])
    : undefined;
const lags = measured.map((i) => sendLag[i]).sort((a, b) => a - b);
const over10ms = measured.reduce((n, i) => n + (latency[i] > 10 ? 1 : 0), 0);
const slowest = measured
  .sort((a, b) => latency[b] - latency[a])
  .slice(0, slowestCount)
  .map((i) => ({
    at: round(performance.timeOrigin + start + i * interval),
    offset_s: round((i - warmupCount) / rate),
    latency_ms: round(latency[i]),
    send_lag_ms: round(sendLag[i]),
  }));
const measureStart = performance.timeOrigin + start + warmupCount * interval;
process.stdout.write(
  `${JSON.stringify({
    phase: 'result',
    rate,
    seconds,
    scheduled: total - warmupCount,
    completed: sorted.length,
    errors,
    non2xx,
    p50_ms: pct(50),
    p90_ms: pct(90),
    p99_ms: pct(99),
    p999_ms: pct(99.9),
    max_ms: sorted.length ? round(sorted[sorted.length - 1]) : undefined,
    mean_ms: sorted.length ? round(sorted.reduce((a, b) => a + b, 0) / sorted.length) : undefined,
    over_10ms: over10ms,
    send_lag_p99_ms: lags.length ? round(lags[Math.ceil(0.99 * lags.length) - 1]) : undefined,
    measure_start: round(measureStart),
    slowest,
    generator_stalls: stalls.list.filter((s) => s.at >= measureStart),
  })}\n`,
);

function round(x) {
  return Math.round(x * 1000) / 1000;
}
