// What the soak observed, judged against the invariants, and the report (console, JSON, Markdown).

const STORE_DOWN = 'Redis restart';
const BACKEND_DOWN = 'backend flap';
const KILL = 'kill -9 instance B';

/** The faults of the run: when each began, ended and recovered; what may be seen during one and after it. */
export class Faults {
  constructor(recoveryMs) {
    this.recoveryMs = recoveryMs;
    this.list = [];
  }

  begin(name, t, details) {
    const fault = {
      name,
      start: t,
      end: undefined,
      recoveredAt: undefined,
      recoveryMs: undefined,
      ...details,
    };
    this.list.push(fault);
    return fault;
  }

  end(fault, t) {
    fault.end = t;
  }

  /** Recovery is counted from the end of the fault (the component back), or from its start when it has none. */
  recovered(fault, t, note) {
    fault.recoveredAt = t;
    fault.recoveryMs = t - (fault.name === KILL ? fault.start : (fault.end ?? fault.start));
    fault.note = note;
  }

  /** Whether `t` falls in the fault named `name`, or in the recovery bound after it ended. */
  within(name, t) {
    return this.list.some(
      (f) => f.name === name && t >= f.start && t <= (f.end ?? Number.POSITIVE_INFINITY) + this.recoveryMs,
    );
  }

  /** Whether instance `instance` was down (killed and not yet started again) at `t`. */
  instanceDown(instance, t) {
    return this.list.some(
      (f) => f.instance === instance && t >= f.start && t <= (f.end ?? Number.POSITIVE_INFINITY) + 1000,
    );
  }
}

const REFUSED_PROBES = new Set(['unauthenticated', 'forged token']);

/** Every answer and break seen, counted per kind and status, and the ones no fault explains. */
export class Ledger {
  constructor(faults) {
    this.faults = faults;
    this.counts = {};
    this.violations = [];
    this.violationCount = 0;
    this.durations = { login: [], refresh: [], call: [] };
  }

  record(e) {
    const key = String(e.kind === 'break' ? e.reason : e.status);
    this.counts[e.kind] ??= {};
    this.counts[e.kind][key] = (this.counts[e.kind][key] ?? 0) + 1;
    if (e.ms !== undefined && e.status === 200) this.durations[e.kind]?.push([e.t - e.ms, e.ms]);
    if (e.status !== 200)
      for (const f of this.faults.list)
        if (e.t >= f.start && e.t <= (f.recoveredAt ?? Number.POSITIVE_INFINITY)) {
          f.seen ??= {};
          f.seen[`${e.kind} ${key}`] = (f.seen[`${e.kind} ${key}`] ?? 0) + 1;
        }
    if (!this.allowed(e)) {
      this.violationCount++;
      if (this.violations.length < 50) this.violations.push(e);
    }
  }

  allowed({ kind, instance, status, t }) {
    const f = this.faults;
    const storeOrBackend = f.within(STORE_DOWN, t) || f.within(BACKEND_DOWN, t);
    const instanceDown = f.instanceDown(instance, t);
    if (kind === 'break') return f.within(BACKEND_DOWN, t) || (instance === 1 && f.within(KILL, t));
    // Connections to a killed instance are refused or cut; that is the fault, not an answer.
    if (instanceDown && typeof status === 'string') return true;
    if (REFUSED_PROBES.has(kind)) return status === 401 || (status === 503 && f.within(STORE_DOWN, t));
    if (status === 200) return true;
    if (status === 503) return storeOrBackend;
    if (status === 502) return f.within(BACKEND_DOWN, t);
    // A login whose page said 503 while the store was down is the proxy failing closed.
    if (kind === 'login' && status === 'failed') return f.within(STORE_DOWN, t);
    return false;
  }

  result({ cfg, plan, samples, conns, backendStats, drained, streamsTarget, durationMs }) {
    const sent = backendStats?.sent ?? {};
    const stayedOpen = conns.filter((c) => c.open);
    const broken = conns.filter((c) => c.status === 200 && !c.open);
    const lostOnOpen = stayedOpen.reduce((n, c) => n + Math.max(0, (sent[c.id] ?? 0) - c.lastSeq), 0);
    const gaps = conns.reduce((n, c) => n + c.gaps, 0);
    const brokenKnown = broken.filter((c) => sent[c.id] !== undefined);
    const inFlight = brokenKnown.reduce((n, c) => n + Math.max(0, sent[c.id] - c.lastSeq), 0);
    const events = {
      delivered: conns.reduce((n, c) => n + c.received, 0),
      connections: conns.filter((c) => c.status === 200).length,
      stayed_open: stayedOpen.length,
      lost_on_open_streams: lostOnOpen,
      gaps_or_reorders: gaps,
      broken_connections: broken.length,
      in_flight_at_break: inFlight,
      drained,
    };
    const memory = growth(samples, plan, streamsTarget);
    const faults = this.faults.list.map((f) => ({
      name: f.name,
      start_s: round(f.start / 1000),
      end_s: f.end === undefined ? null : round(f.end / 1000),
      recovery_ms: f.recoveryMs ?? null,
      note: f.note ?? 'did not recover',
      seen: f.seen ?? {},
    }));
    const loginMs = splitDurations(
      this.durations.login,
      this.faults.list.find((f) => f.name.startsWith('IdP')),
    );
    const checks = [
      ['events lost on streams that stayed open', lostOnOpen === 0 && drained, `${lostOnOpen}`],
      ['gaps or reorderings on any connection', gaps === 0, `${gaps}`],
      [
        'streams open at the end',
        stayedOpen.length === streamsTarget,
        `${stayedOpen.length}/${streamsTarget}`,
      ],
      [
        'refused requests that reached the backend',
        (backendStats?.probes ?? 0) === 0,
        `${backendStats?.probes}`,
      ],
      ['answers or breaks no fault explains', this.violationCount === 0, `${this.violationCount}`],
      [
        `every fault recovered within ${cfg.recoveryS} s`,
        faults.length === 4 &&
          faults.every((f) => f.recovery_ms !== null && f.recovery_ms <= cfg.recoveryS * 1000),
        faults.map((f) => `${f.recovery_ms ?? '-'} ms`).join(', '),
      ],
      [
        `instance A RSS growth <= ${cfg.maxRssGrowthMb} MiB (warm-up -> end)`,
        memory.ok && memory.rssGrowthMb <= cfg.maxRssGrowthMb,
        memory.ok ? `${memory.rssGrowthMb} MiB` : memory.why,
      ],
      [
        `instance A fd growth <= ${cfg.maxFdGrowth} (fds less 2 per stream)`,
        memory.ok && memory.fdGrowth <= cfg.maxFdGrowth,
        memory.ok ? `${memory.fdGrowth}` : memory.why,
      ],
    ].map(([name, ok, value]) => ({ name, ok: Boolean(ok), value }));
    return {
      passed: checks.every((c) => c.ok),
      when: new Date().toISOString(),
      node: process.version,
      config: cfg,
      duration_ms: durationMs,
      checks,
      events,
      faults,
      memory,
      statuses: this.counts,
      violations: this.violations,
      login_ms: loginMs,
      refresh_ms: stats(this.durations.refresh.map(([, ms]) => ms)),
      call_ms: stats(this.durations.call.map(([, ms]) => ms)),
      backend: { calls: backendStats?.calls, probes: backendStats?.probes },
      samples,
    };
  }
}

function round(x, digits = 1) {
  const p = 10 ** digits;
  return Math.round(x * p) / p;
}

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : undefined;
}

function stats(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  return { n: s.length, median: s[s.length >> 1], p95: s[Math.floor(s.length * 0.95)], max: s.at(-1) };
}

function splitDurations(list, slow) {
  if (!slow) return { normal: stats(list.map(([, ms]) => ms)) };
  const inSlow = ([t]) => t >= slow.start && t <= (slow.end ?? Number.POSITIVE_INFINITY);
  return {
    normal: stats(list.filter((d) => !inSlow(d)).map(([, ms]) => ms)),
    idp_slow: stats(list.filter(inSlow).map(([, ms]) => ms)),
  };
}

/**
 * Instance A (never killed) after the warm-up against the end, both with every stream open: RSS, and fds
 * less two per stream it holds (its client socket and its backend socket), so a different spread of the
 * streams over the instances does not read as a leak.
 */
function growth(samples, plan, streamsTarget) {
  const full = (s) =>
    s.instances.reduce((n, i) => n + (i.streams ?? 0), 0) === streamsTarget && s.instances[0].rssMb;
  const base = samples.filter((s) => full(s) && s.t >= plan.warmUpEnd && s.t < plan.killB);
  const end = samples.filter((s) => full(s) && s.t >= plan.finalWindow);
  if (!base.length || !end.length)
    return { ok: false, why: `no settled samples (${base.length} after warm-up, ${end.length} at the end)` };
  const a = (list, f) => median(list.map((s) => f(s.instances[0])));
  const excess = (i) => i.fds - 2 * i.streams;
  const m = {
    ok: true,
    baseline: {
      samples: base.length,
      rssMb: a(base, (i) => i.rssMb),
      fds: a(base, (i) => i.fds),
      excessFds: a(base, excess),
      streams: a(base, (i) => i.streams),
    },
    end: {
      samples: end.length,
      rssMb: a(end, (i) => i.rssMb),
      fds: a(end, (i) => i.fds),
      excessFds: a(end, excess),
      streams: a(end, (i) => i.streams),
    },
  };
  m.rssGrowthMb = round(m.end.rssMb - m.baseline.rssMb);
  m.fdGrowth = m.end.excessFds - m.baseline.excessFds;
  return m;
}

// ---------------------------------------------------------------- output

function table(header, rows) {
  const widths = header.map((h, i) =>
    Math.max(String(h).length, ...rows.map((r) => String(r[i] ?? '').length)),
  );
  const line = (r) => `| ${r.map((c, i) => String(c ?? '').padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** At most `max` rows, evenly spaced, the first and the last kept. */
function thin(rows, max) {
  if (rows.length <= max) return rows;
  const step = (rows.length - 1) / (max - 1);
  return Array.from({ length: max }, (_, i) => rows[Math.round(i * step)]);
}

function sampleRows(result) {
  const faultAt = (t) =>
    result.faults
      .filter((f) => t >= f.start_s * 1000 && t <= (f.end_s ?? f.start_s) * 1000 + 1)
      .map((f) => f.name)
      .join(', ');
  return thin(result.samples, 40).map((s) => {
    const [a, b] = s.instances;
    return [
      round(s.t / 1000, 0),
      a.rssMb ?? 'down',
      a.fds ?? '',
      a.streams,
      b.rssMb ?? 'down',
      b.fds ?? '',
      b.streams,
      s.redis?.rssMb ?? 'down',
      faultAt(s.t),
    ];
  });
}

const SAMPLE_HEADER = [
  't (s)',
  'A RSS MiB',
  'A fds',
  'A streams',
  'B RSS MiB',
  'B fds',
  'B streams',
  'Redis MiB',
  'fault',
];

function statusRows(result) {
  return Object.entries(result.statuses).map(([kind, byStatus]) => [
    kind,
    Object.entries(byStatus)
      .sort((x, y) => y[1] - x[1])
      .map(([s, n]) => `${s}: ${n}`)
      .join(', '),
  ]);
}

function seenText(seen) {
  const entries = Object.entries(seen).sort((x, y) => y[1] - x[1]);
  return entries.length ? entries.map(([k, n]) => `${k}: ${n}`).join(', ') : 'none';
}

function fmtStats(s) {
  return s ? `median ${s.median} ms, p95 ${s.p95} ms, max ${s.max} ms (n=${s.n})` : '-';
}

export function markdownReport(r) {
  const c = r.config;
  const e = r.events;
  const m = r.memory;
  return `# Soak report

${r.passed ? 'PASSED' : 'FAILED'} — ${r.when}, Node ${r.node}, ${Math.round(r.duration_ms / 1000)} s of load:
${c.streams} SSE streams (one event every ${c.eventIntervalMs} ms each) over two proxy instances on one Redis, ${c.callsPerSecond} tools/call per second, a login every ${c.loginIntervalS} s and a token refresh every ${c.refreshIntervalS} s, probes every 0.5 s.

## Invariants

${table(
  ['check', 'result', 'value'],
  r.checks.map((k) => [k.name, k.ok ? 'pass' : 'FAIL', k.value]),
)}

## Events

${table(
  ['', 'value'],
  [
    ['events delivered', e.delivered],
    ['stream connections answered 200', e.connections],
    ['streams open at the end', e.stayed_open],
    ['events lost on streams that stayed open', e.lost_on_open_streams],
    ['gaps or reorderings', e.gaps_or_reorders],
    ['connections broken by faults', e.broken_connections],
    [
      'events in flight when a connection broke (written by the backend, not delivered)',
      e.in_flight_at_break,
    ],
  ],
)}

## Faults

${table(
  ['fault', 'start (s)', 'end (s)', 'recovery', 'what happened', 'other than 200 until recovered'],
  r.faults.map((f) => [
    f.name,
    f.start_s,
    f.end_s ?? '-',
    f.recovery_ms === null ? '-' : `${f.recovery_ms} ms`,
    f.note,
    seenText(f.seen),
  ]),
)}

Recovery: kill — from the kill until every stream was open again (on A); Redis and backend — from the
component being back until both instances answered 200 (and, for the backend, every stream was open again);
IdP — the slow window itself (no recovery needed).

Logins: ${fmtStats(r.login_ms.normal)}; while the IdP was slow: ${fmtStats(r.login_ms.idp_slow)}.
Refreshes: ${fmtStats(r.refresh_ms)}. Calls: ${fmtStats(r.call_ms)}.

## Answers seen

${table(['kind', 'status: count'], statusRows(r))}

${r.violations.length ? `Not explained by a fault (first ${r.violations.length}):\n\n\`\`\`\n${r.violations.map((v) => JSON.stringify(v)).join('\n')}\n\`\`\`\n` : 'Every answer and break was an allowed one.'}

## RSS and open file descriptors

${m.ok ? `Instance A after the warm-up: ${m.baseline.rssMb} MiB, ${m.baseline.fds} fds with ${m.baseline.streams} streams; at the end: ${m.end.rssMb} MiB, ${m.end.fds} fds with ${m.end.streams} streams (growth ${m.rssGrowthMb} MiB, ${m.fdGrowth} fds beyond two per stream).` : m.why}

${table(SAMPLE_HEADER, sampleRows(r))}
`;
}

export function printSummary(r, log) {
  log('');
  process.stdout.write(`${table(SAMPLE_HEADER, sampleRows(r))}\n\n`);
  process.stdout.write(
    `${table(
      ['fault', 'start (s)', 'recovery', 'what happened'],
      r.faults.map((f) => [f.name, f.start_s, f.recovery_ms === null ? '-' : `${f.recovery_ms} ms`, f.note]),
    )}\n\n`,
  );
  process.stdout.write(`${table(['kind', 'status: count'], statusRows(r))}\n\n`);
  for (const v of r.violations.slice(0, 10)) process.stdout.write(`unexplained: ${JSON.stringify(v)}\n`);
  process.stdout.write(
    `${table(
      ['check', 'result', 'value'],
      r.checks.map((k) => [k.name, k.ok ? 'pass' : 'FAIL', k.value]),
    )}\n\n`,
  );
  log(
    `soak ${r.passed ? 'PASSED' : 'FAILED'}: ${r.events.delivered} events delivered, ${r.events.lost_on_open_streams} lost; report in .soak/latest.md`,
  );
}
