// Open-loop latency section of bench/run.mjs (BENCH_OPEN_LOOP): p50/p99 at a fixed rate
// (bench/open-loop.mjs, 1,000 req/s by default) for the backend directly, nginx, the proxy in bypass
// mode and the proxy in oidc mode with a bearer token, in interleaved rounds; "added" is the median of
// the per-round differences to the direct run of the same round.
//
// Then the tail hunt (BENCH_TAIL seconds, needs oidc): the oidc bearer path at the same rate, through a
// proxy started with bench/gc-observer.mjs preloaded, which logs every GC and event-loop stall of the
// proxy with wall-clock times (the backend runs with it too). First cold, 3 s (the proxy has only done
// the OAuth flow that made the token), then warm, BENCH_TAIL s. Slow requests come in runs (they are
// 1 ms apart; one hold-up delays many): each run, an episode, is set against what overlapped it: GC in
// the proxy, a stall of its event loop (busy: it ran; not running: the machine gave the CPU to others),
// a stall of the backend or of the generator itself, or none of these.
import { readFileSync } from 'node:fs';
import path from 'node:path';

export function openLoopConfig(num, HarnessError) {
  const c = {
    rate: num('BENCH_RATE', 1000),
    duration: num('BENCH_OPEN_DURATION', 10),
    warmup: num('BENCH_OPEN_WARMUP', 2),
    rounds: num('BENCH_OPEN_ROUNDS', 2),
    tail: num('BENCH_TAIL', 30),
  };
  if (c.rate < 10 || c.rate > 20_000) throw new HarnessError('BENCH_RATE must be between 10 and 20000 req/s');
  if (c.duration < 1 || c.duration > 60)
    throw new HarnessError('BENCH_OPEN_DURATION must be between 1 and 60 seconds');
  if (c.rounds < 1 || c.rounds > 10) throw new HarnessError('BENCH_OPEN_ROUNDS must be between 1 and 10');
  if (c.tail > 120) throw new HarnessError('BENCH_TAIL must be at most 120 seconds (0 = skip)');
  return c;
}

/** Two seconds of wrk at 10 connections, not counted. */
function warm(h, url, headers) {
  const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
  return h.wrk(h.wrkBin, url, { seconds: 2, connections: 10, threads: 1, headers: lines });
}

/** One open-loop run against url: the generator's result line. */
async function openLoop(h, label, url, { rate, seconds, warmup, headers = {}, slowest = 20 }) {
  process.stdout.write(`  ${label.padEnd(26)} ${rate} req/s, warm-up ${warmup}s, measure ${seconds}s ... `);
  const entry = h.spawnChild('open-loop', process.execPath, [path.join(h.benchDir, 'open-loop.mjs')], {
    env: {
      OL_URL: url,
      OL_RATE: String(rate),
      OL_SECONDS: String(seconds),
      OL_WARMUP: String(warmup),
      OL_HEADERS: JSON.stringify(headers),
      OL_SLOWEST: String(slowest),
    },
  });
  entry.child.stderr.pipe(h.logFile('open-loop'));
  const r = await h.jsonLine(entry, (o) => o.phase === 'result', (seconds + warmup + 30) * 1000);
  await entry.exit;
  h.say(
    `p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, max ${r.max_ms} ms${r.errors || r.non2xx ? `, ${r.errors} errors, ${r.non2xx} non-2xx` : ''}`,
  );
  return r;
}

const median = (xs) => {
  const s = xs.filter((x) => x !== undefined).sort((a, b) => a - b);
  if (!s.length) return undefined;
  const m = s.length >> 1;
  return Math.round((s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2) * 1000) / 1000;
};

/** targets: [{ key, label, url, headers }]; the first must be `direct`. */
export async function openLoopBench(h, ocfg, targets) {
  h.say(
    `open-loop latency: GET /mcp at a fixed ${ocfg.rate} req/s (bench/open-loop.mjs, latency from each request's scheduled time), ${ocfg.rounds} round(s)`,
  );
  const rounds = Object.fromEntries(targets.map((t) => [t.key, []]));
  // Compiled and connected first (closed loop, uncounted), as a server that has been serving is: the
  // open-loop warm-up alone would let a cold start's queue spill into the measured seconds.
  for (const t of targets) await warm(h, t.url, t.headers);
  for (let round = 1; round <= ocfg.rounds; round++) {
    if (ocfg.rounds > 1) h.say(` round ${round}/${ocfg.rounds}`);
    for (const t of round % 2 === 0 ? [...targets].reverse() : targets) {
      await h.expectOk(t.label, t.url, t.headers);
      const r = await openLoop(h, t.label, t.url, {
        rate: ocfg.rate,
        seconds: ocfg.duration,
        warmup: ocfg.warmup,
        headers: t.headers,
        slowest: 5,
      });
      rounds[t.key].push(r);
    }
  }
  const summary = {};
  for (const t of targets) {
    const runs = rounds[t.key];
    summary[t.key] = {
      label: t.label,
      p50_ms: median(runs.map((r) => r.p50_ms)),
      p99_ms: median(runs.map((r) => r.p99_ms)),
      max_ms: Math.max(...runs.map((r) => r.max_ms)),
      errors: runs.reduce((a, r) => a + r.errors + r.non2xx, 0),
      // Paired with the direct run of the same round.
      p50_added_ms: median(runs.map((r, i) => r.p50_ms - rounds.direct[i].p50_ms)),
      p99_added_ms: median(runs.map((r, i) => r.p99_ms - rounds.direct[i].p99_ms)),
      runs: runs.map(({ slowest, generator_stalls, ...rest }) => ({
        ...rest,
        generator_stalls_over_20ms: generator_stalls.filter((s) => s.ms > 20).length,
      })),
    };
  }
  return { settings: ocfg, summary };
}

export function printOpenLoop(h, o) {
  const rows = Object.values(o.summary);
  const w = Math.max(...rows.map((r) => r.label.length));
  h.say(`  ${'target'.padEnd(w)}  p50 ms  p99 ms   max ms  p50 added  p99 added  errors`);
  for (const r of rows)
    h.say(
      `  ${r.label.padEnd(w)}  ${h.fmt(r.p50_ms).padStart(6)}  ${h.fmt(r.p99_ms).padStart(6)}  ${h.fmt(r.max_ms, 1).padStart(7)}  ${h.fmt(r.p50_added_ms).padStart(9)}  ${h.fmt(r.p99_added_ms).padStart(9)}  ${String(r.errors).padStart(6)}`,
    );
  h.say('  (added: over the direct run of the same round, median over the rounds)');
}

// ---------------------------------------------------------------- tail hunt

const overlap = (a0, a1, b0, b1) => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));

/** A request slower than this is part of the tail looked at. */
const SLOW_MS = 10;

/** The GC and stall lines a process with bench/gc-observer.mjs wrote, between t0 and t1 (wall clock). */
function observed(file, t0, t1) {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {}
  const events = text
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.at + e.ms >= t0 && e.at <= t1);
  return { gcs: events.filter((e) => e.type === 'gc'), stalls: events.filter((e) => e.type === 'stall') };
}

/**
 * The tail of the oidc bearer path, through `url` (a proxy started with the GC observer writing to
 * proxyLog; the backend writes to backendLog): first cold (the proxy has answered one request), then
 * warm, BENCH_TAIL seconds.
 */
export async function tailHunt(h, ocfg, { url, headers, proxyLog, backendLog, label, bypass }) {
  h.say(`tail hunt: ${label}, at ${ocfg.rate} req/s: cold for 3 s, then warm for ${ocfg.tail} s`);
  const logs = { proxyLog, backendLog };
  const run = { rate: ocfg.rate, headers, slowest: 5000 };
  // A fresh bypass proxy, cold too: what a cold start costs without any token check.
  const coldBypass =
    bypass &&
    (await huntRun(h, { proxyLog: bypass.proxyLog, backendLog }, `${bypass.label}, cold`, bypass.url, {
      ...run,
      headers: {},
      seconds: 3,
      warmup: 0,
    }));
  const cold = await huntRun(h, logs, `${label}, cold`, url, { ...run, seconds: 3, warmup: 0 });
  await warm(h, url, headers);
  const warmRun = await huntRun(h, logs, `${label}, warm`, url, {
    ...run,
    seconds: ocfg.tail,
    warmup: ocfg.warmup,
  });
  return { coldBypass, cold, warm: warmRun };
}

async function huntRun(h, { proxyLog, backendLog }, label, url, run) {
  const r = await openLoop(h, label, url, run);
  const t0 = r.measure_start;
  const t1 = t0 + run.seconds * 1000 + 10_000;
  const proxy = observed(proxyLog, t0, t1);
  const backend = observed(backendLog, t0, t1);
  const generator = r.generator_stalls;
  // Requests are 1 ms apart: one hold-up delays a run of them. Consecutive slow requests whose
  // intervals overlap make one episode; each is set against what overlapped it.
  const slow = r.slowest.filter((s) => s.latency_ms > SLOW_MS).sort((a, b) => a.at - b.at);
  const episodes = [];
  for (const s of slow) {
    const last = episodes.at(-1);
    if (last && s.at <= last.end) {
      last.end = Math.max(last.end, s.at + s.latency_ms);
      last.requests++;
      last.worst_ms = Math.max(last.worst_ms, s.latency_ms);
    } else
      episodes.push({
        start: s.at,
        end: s.at + s.latency_ms,
        requests: 1,
        worst_ms: s.latency_ms,
        offset_s: s.offset_s,
      });
  }
  const within = (list, e) => list.reduce((acc, x) => acc + overlap(e.start, e.end, x.at, x.at + x.ms), 0);
  const cpuShare = (list, e) => {
    const hit = list.filter((x) => overlap(e.start, e.end, x.at, x.at + x.ms) > 0);
    const wall = hit.reduce((a, x) => a + x.ms, 0);
    return wall ? round(hit.reduce((a, x) => a + x.cpu_ms, 0) / wall) : undefined;
  };
  const described = episodes.map((e) => {
    const d = {
      offset_s: e.offset_s,
      requests: e.requests,
      worst_ms: round(e.worst_ms),
      span_ms: round(e.end - e.start),
      proxy_gc_ms: round(within(proxy.gcs, e)),
      proxy_stall_ms: round(within(proxy.stalls, e)),
      proxy_on_cpu_in_stalls: cpuShare(proxy.stalls, e),
      backend_gc_ms: round(within(backend.gcs, e)),
      backend_stall_ms: round(within(backend.stalls, e)),
      generator_stall_ms: round(within(generator, e)),
    };
    return { ...d, cause: cause(d, run.warmup === 0) };
  });
  const causes = {};
  for (const e of described) {
    causes[e.cause] ??= { episodes: 0, requests: 0 };
    causes[e.cause].episodes++;
    causes[e.cause].requests += e.requests;
  }
  return {
    label,
    run: { ...r, slowest: undefined, generator_stalls: undefined },
    slow_requests: r.over_10ms,
    proxy_gc: gcSummary(proxy.gcs),
    proxy_stalls: summariseStalls(proxy.stalls),
    backend_stalls: summariseStalls(backend.stalls),
    generator_stalls: summariseStalls(generator),
    episodes: described.sort((a, b) => b.worst_ms - a.worst_ms),
    causes,
  };
}

/**
 * The main reason for an episode: whatever overlapped at least half of its worst request's latency.
 * A stall in which a process got less than half a CPU is the machine's (other work ran), not the
 * process's own: when the proxy was on the CPU through its stall, the proxy is the cause (its GC if
 * that was the larger part); when it and another process were off the CPU together, the machine.
 */
function cause(e, cold) {
  const half = e.worst_ms / 2;
  const proxyBusy = e.proxy_on_cpu_in_stalls !== undefined && e.proxy_on_cpu_in_stalls >= 0.5;
  if (e.proxy_gc_ms >= half) return 'GC in the proxy';
  if (e.proxy_stall_ms >= half && proxyBusy)
    return cold && e.offset_s < 1.5 ? 'the proxy busy, cold (first requests)' : 'the proxy busy (not GC)';
  const stalled = [e.proxy_stall_ms, e.backend_stall_ms, e.generator_stall_ms].filter((ms) => ms >= half);
  if (stalled.length >= 2) return 'the machine: processes off the CPU together';
  if (e.generator_stall_ms >= half) return 'the generator stalled';
  if (e.backend_stall_ms >= half) return 'the backend stalled';
  if (e.proxy_stall_ms >= half) return 'the proxy was not running (machine)';
  if (cold && e.offset_s < 1.5) return 'cold start, unexplained';
  return 'none of these (network stack, machine)';
}

function gcSummary(gcs) {
  const byKind = {};
  for (const g of gcs) {
    byKind[g.kind] ??= { count: 0, total_ms: 0, max_ms: 0 };
    const k = byKind[g.kind];
    k.count++;
    k.total_ms = round(k.total_ms + g.ms);
    k.max_ms = Math.max(k.max_ms, g.ms);
  }
  return { count: gcs.length, by_kind: byKind, max_ms: Math.max(0, ...gcs.map((g) => g.ms)) };
}

function summariseStalls(list) {
  const over = (ms) => list.filter((s) => s.ms > ms);
  const worst = [...list].sort((a, b) => b.ms - a.ms).slice(0, 3);
  return {
    count_over_5ms: list.length,
    count_over_20ms: over(20).length,
    count_over_100ms: over(100).length,
    worst: worst.map((s) => ({ ms: s.ms, cpu_ms: s.cpu_ms })),
  };
}

function round(x) {
  return Math.round(x * 1000) / 1000;
}

export function printTail(h, hunt) {
  if (hunt.coldBypass) {
    printHuntRun(h, hunt.coldBypass);
    h.say();
  }
  printHuntRun(h, hunt.cold);
  h.say();
  printHuntRun(h, hunt.warm);
}

function printHuntRun(h, t) {
  const r = t.run;
  h.say(
    `  ${t.label}: ${r.completed}/${r.scheduled} answered, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, p99.9 ${r.p999_ms} ms, max ${r.max_ms} ms; ${t.slow_requests} requests over ${SLOW_MS} ms`,
  );
  const kinds = Object.entries(t.proxy_gc.by_kind)
    .map(([k, v]) => `${k} ${v.count}× (${round(v.total_ms)} ms in all, max ${v.max_ms} ms)`)
    .join(', ');
  h.say(`    proxy GC: ${kinds || 'none'}`);
  const st = (s) =>
    `${s.count_over_5ms} over 5 ms, ${s.count_over_20ms} over 20 ms, ${s.count_over_100ms} over 100 ms${s.worst.length ? `; worst ${s.worst.map((w) => `${w.ms} ms (own CPU ${w.cpu_ms} ms)`).join(', ')}` : ''}`;
  h.say(`    event-loop stalls: proxy ${st(t.proxy_stalls)}`);
  h.say(`                       backend ${st(t.backend_stalls)}`);
  h.say(`                       generator ${st(t.generator_stalls)}`);
  h.say(
    `    episodes of requests over ${SLOW_MS} ms (worst first; what overlapped: proxy GC / proxy stall / backend stall / generator stall):`,
  );
  for (const e of t.episodes.slice(0, 8))
    h.say(
      `      ${h.fmt(e.worst_ms, 1).padStart(7)} ms worst, ${String(e.requests).padStart(4)} requests, at ${h.fmt(e.offset_s, 2)} s: ${h.fmt(e.proxy_gc_ms, 1)} / ${h.fmt(e.proxy_stall_ms, 1)}${e.proxy_on_cpu_in_stalls !== undefined ? ` (proxy on CPU ${Math.round(e.proxy_on_cpu_in_stalls * 100)} %)` : ''} / ${h.fmt(e.backend_stall_ms, 1)} / ${h.fmt(e.generator_stall_ms, 1)} ms -> ${e.cause}`,
    );
  const c = Object.entries(t.causes).map(([k, v]) => `${k}: ${v.episodes} (${v.requests} requests)`);
  h.say(`    episodes by cause: ${c.join('; ') || 'none'}`);
}
