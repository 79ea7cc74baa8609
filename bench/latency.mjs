// Open-loop latency section of bench/run.mjs (BENCH_OPEN_LOOP): p50/p99 at a fixed rate
// (bench/open-loop.mjs, 1,000 req/s by default) for the backend directly, nginx, the proxy in bypass
// mode and the proxy in oidc mode with a bearer token, in interleaved rounds; "added" is the median of
// the per-round differences to the direct run of the same round.
//
// Then the tail hunt (BENCH_TAIL seconds, needs oidc): the oidc bearer path at the same rate for longer,
// through a proxy started with bench/gc-observer.mjs preloaded, which logs every GC and event-loop stall
// of the proxy with wall-clock times. Each of the slowest requests is set against what overlapped it: a
// GC in the proxy, a stall of the proxy's event loop (busy: the proxy ran; descheduled: it did not get the
// CPU), a stall of the generator itself, or none of these (the backend, the network stack, the machine).
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
  h.say(
    `  ${'target'.padEnd(w)}  p50 ms  p99 ms   max ms  p50 added  p99 added (median of per-round, vs direct)  errors`,
  );
  for (const r of rows)
    h.say(
      `  ${r.label.padEnd(w)}  ${h.fmt(r.p50_ms).padStart(6)}  ${h.fmt(r.p99_ms).padStart(6)}  ${h.fmt(r.max_ms, 1).padStart(7)}  ${h.fmt(r.p50_added_ms).padStart(9)}  ${h.fmt(r.p99_added_ms).padStart(9)}  ${String(r.errors).padStart(44)}`,
    );
}

// ---------------------------------------------------------------- tail hunt

const overlap = (a0, a1, b0, b1) => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));

/**
 * The slowest requests of one long open-loop run through `proxy` (started with the GC observer writing
 * to gcLog), each with what overlapped it, and the proxy's GC and stall totals over the run.
 */
export async function tailHunt(h, ocfg, { url, headers, gcLog, label }) {
  h.say(
    `tail hunt: ${label} at ${ocfg.rate} req/s for ${ocfg.tail}s, the proxy's GC and event-loop stalls logged`,
  );
  const r = await openLoop(h, label, url, {
    rate: ocfg.rate,
    seconds: ocfg.tail,
    warmup: ocfg.warmup,
    headers,
    slowest: 30,
  });
  const end = r.measure_start + ocfg.tail * 1000 + 10_000;
  const events = readFileSync(gcLog, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.at >= r.measure_start && e.at <= end);
  const gcs = events.filter((e) => e.type === 'gc');
  const stalls = events.filter((e) => e.type === 'stall');
  const byKind = {};
  for (const g of gcs) {
    byKind[g.kind] ??= { count: 0, total_ms: 0, max_ms: 0 };
    const k = byKind[g.kind];
    k.count++;
    k.total_ms = Math.round((k.total_ms + g.ms) * 1000) / 1000;
    k.max_ms = Math.max(k.max_ms, g.ms);
  }
  const slowest = r.slowest.map((s) => {
    const a0 = s.at;
    const a1 = s.at + s.latency_ms;
    const gcMs = gcs.reduce((acc, g) => acc + overlap(a0, a1, g.at, g.at + g.ms), 0);
    const st = stalls.filter((x) => overlap(a0, a1, x.at, x.at + x.ms) > 0);
    const stallMs = st.reduce((acc, x) => acc + overlap(a0, a1, x.at, x.at + x.ms), 0);
    const stallCpu = st.reduce((acc, x) => acc + x.cpu_ms, 0);
    const stallWall = st.reduce((acc, x) => acc + x.ms, 0);
    const genMs = r.generator_stalls.reduce((acc, x) => acc + overlap(a0, a1, x.at, x.at + x.ms), 0);
    return {
      ...s,
      proxy_gc_ms: round(gcMs),
      proxy_stall_ms: round(stallMs),
      proxy_cpu_share_in_stalls: stallWall ? round(stallCpu / stallWall) : undefined,
      generator_stall_ms: round(genMs),
      cause: cause(s, { gcMs, stallMs, stallCpu, stallWall, genMs }),
    };
  });
  const causes = {};
  for (const s of slowest) causes[s.cause] = (causes[s.cause] ?? 0) + 1;
  return {
    label,
    run: { ...r, slowest: undefined, generator_stalls: undefined },
    gc: { count: gcs.length, by_kind: byKind, max_ms: Math.max(0, ...gcs.map((g) => g.ms)) },
    proxy_stalls: summariseStalls(stalls),
    generator_stalls: summariseStalls(r.generator_stalls),
    slowest,
    causes,
  };
}

/** The main reason a slow request was slow, from what overlapped it (half its latency or more). */
function cause(s, { gcMs, stallMs, stallCpu, stallWall, genMs }) {
  const half = s.latency_ms / 2;
  if (genMs >= half) return 'generator stalled';
  if (gcMs >= half) return 'GC in the proxy';
  if (stallMs >= half)
    return stallCpu >= stallWall / 2 ? 'proxy busy (JavaScript)' : 'proxy not scheduled (machine)';
  if (s.offset_s < 1) return 'first second of the run';
  return 'none of these (backend, network stack, machine)';
}

function summariseStalls(list) {
  const over = (ms) => list.filter((s) => s.ms > ms);
  const worst = [...list].sort((a, b) => b.ms - a.ms).slice(0, 5);
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

export function printTail(h, t) {
  const r = t.run;
  h.say(
    `  ${t.label}: ${r.completed}/${r.scheduled} answered, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms, p99.9 ${r.p999_ms} ms, max ${r.max_ms} ms; generator send lag p99 ${r.send_lag_p99_ms} ms`,
  );
  const kinds = Object.entries(t.gc.by_kind)
    .map(([k, v]) => `${k} ${v.count}× (${round(v.total_ms)} ms, max ${v.max_ms} ms)`)
    .join(', ');
  h.say(`  proxy GC in the run: ${t.gc.count} (${kinds || 'none'})`);
  const st = (s) =>
    `${s.count_over_5ms} over 5 ms, ${s.count_over_20ms} over 20 ms, ${s.count_over_100ms} over 100 ms; worst ${s.worst.map((w) => `${w.ms} ms (CPU ${w.cpu_ms} ms)`).join(', ') || 'none'}`;
  h.say(`  proxy event-loop stalls: ${st(t.proxy_stalls)}`);
  h.say(`  generator event-loop stalls: ${st(t.generator_stalls)}`);
  h.say(
    '  slowest requests (latency; at s into the run; overlapping proxy GC / proxy stall / generator stall):',
  );
  for (const s of t.slowest.slice(0, 10))
    h.say(
      `    ${h.fmt(s.latency_ms, 1).padStart(7)} ms at ${h.fmt(s.offset_s, 3).padStart(7)} s: GC ${h.fmt(s.proxy_gc_ms, 1)} / stall ${h.fmt(s.proxy_stall_ms, 1)}${s.proxy_cpu_share_in_stalls !== undefined ? ` (proxy on CPU ${Math.round(s.proxy_cpu_share_in_stalls * 100)} %)` : ''} / generator ${h.fmt(s.generator_stall_ms, 1)} ms -> ${s.cause}`,
    );
  h.say(
    `  the ${t.slowest.length} slowest by cause: ${Object.entries(t.causes)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
}
