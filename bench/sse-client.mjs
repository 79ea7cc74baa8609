// SSE hold client, run in its own process by bench/run.mjs.
// Opens SSE_CONNECTIONS concurrent GETs to SSE_URL (no pooling limit), waits until all have
// answered (or SSE_OPEN_TIMEOUT_MS passes), then holds them for SSE_HOLD_MS and checks that
// every stream stayed open and kept receiving events with consecutive ids for the whole hold.
// Prints JSON lines on stdout: {"phase":"holding",...} when the hold starts, then the result.
import http from 'node:http';

const url = new URL(process.env.SSE_URL ?? 'http://127.0.0.1:8080/sse');
const total = Number(process.env.SSE_CONNECTIONS ?? 1000);
const holdMs = Number(process.env.SSE_HOLD_MS ?? 15_000);
const openTimeoutMs = Number(process.env.SSE_OPEN_TIMEOUT_MS ?? 15_000);
const intervalMs = Number(process.env.SSE_INTERVAL_MS ?? 1000);
/** A stream counts as starved when no event arrived for this long during the hold. */
const maxGapAllowedMs = Number(process.env.SSE_MAX_GAP_MS ?? intervalMs * 2.5);
const batch = 100;

const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
const conns = [];
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

function open(i) {
  const c = {
    i,
    status: 0,
    headersAt: 0,
    events: [], // [receivedAt, id]
    closedAt: 0,
    error: '',
    buf: '',
    ended: false,
    seqBreaks: 0,
    lastId: -1,
    req: undefined,
  };
  conns.push(c);
  const req = http.get(
    url,
    { agent, headers: { accept: 'text/event-stream', 'cache-control': 'no-cache' } },
    (res) => {
      c.status = res.statusCode ?? 0;
      c.headersAt = Date.now();
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        c.buf += chunk;
        let idx = c.buf.indexOf('\n\n');
        while (idx >= 0) {
          const block = c.buf.slice(0, idx);
          c.buf = c.buf.slice(idx + 2);
          idx = c.buf.indexOf('\n\n');
          const m = /^id: (\d+)$/m.exec(block);
          if (!m || !/^data:/m.test(block)) continue; // keepalive comment etc.
          const id = Number(m[1]);
          if (c.lastId >= 0 && id !== c.lastId + 1) c.seqBreaks++;
          c.lastId = id;
          c.events.push([Date.now(), id]);
        }
      });
      res.on('end', () => {
        c.ended = true;
        if (!c.closedAt) c.closedAt = Date.now();
      });
      res.on('error', (err) => {
        c.error ||= err.code ?? err.message;
      });
    },
  );
  req.on('error', (err) => {
    c.error ||= err.code ?? err.message;
    if (!c.closedAt) c.closedAt = Date.now();
  });
  req.on('close', () => {
    if (!c.closedAt && !stopping) c.closedAt = Date.now();
  });
  c.req = req;
}

let stopping = false;
const t0 = Date.now();
for (let i = 0; i < total; i += batch) {
  for (let j = i; j < Math.min(total, i + batch); j++) open(j);
  await new Promise((r) => setTimeout(r, 20));
}

// Wait for every stream to have answered with headers (or failed), bounded.
while (Date.now() - t0 < openTimeoutMs) {
  const pending = conns.filter((c) => !c.status && !c.closedAt).length;
  if (pending === 0) break;
  await new Promise((r) => setTimeout(r, 100));
}
const openedMs = Date.now() - t0;
const holdStart = Date.now();
emit({
  phase: 'holding',
  open_ms: openedMs,
  answered: conns.filter((c) => c.status).length,
  status_200: conns.filter((c) => c.status === 200).length,
});
await new Promise((r) => setTimeout(r, holdMs));
const holdEnd = Date.now();
stopping = true;

let held = 0;
let eventsInHold = 0;
let worstGap = 0;
const failures = { never_answered: 0, non_200: 0, closed_early: 0, error: 0, starved: 0, id_gaps: 0 };
const perConn = [];
for (const c of conns) {
  const inHold = c.events.filter(([t]) => t >= holdStart && t <= holdEnd);
  eventsInHold += inHold.length;
  // Largest silence inside the hold window, counting its start and end as boundaries.
  let prev = holdStart;
  let gap = 0;
  for (const [t] of inHold) {
    gap = Math.max(gap, t - prev);
    prev = t;
  }
  gap = Math.max(gap, holdEnd - prev);
  if (c.status === 200) worstGap = Math.max(worstGap, gap);
  perConn.push(inHold.length);
  let ok = true;
  if (!c.status) {
    failures.never_answered++;
    ok = false;
  } else if (c.status !== 200) {
    failures.non_200++;
    ok = false;
  }
  if (c.status && c.closedAt && c.closedAt <= holdEnd) {
    failures.closed_early++;
    ok = false;
  }
  if (c.error) {
    failures.error++;
    ok = false;
  }
  if (c.status === 200 && gap > maxGapAllowedMs) {
    failures.starved++;
    ok = false;
  }
  if (c.seqBreaks > 0) {
    failures.id_gaps++;
    ok = false;
  }
  if (ok) held++;
}
perConn.sort((a, b) => a - b);
const errors = {};
for (const c of conns) if (c.error) errors[c.error] = (errors[c.error] ?? 0) + 1;

emit({
  phase: 'result',
  connections: total,
  answered: conns.filter((c) => c.status).length,
  status_200: conns.filter((c) => c.status === 200).length,
  held,
  dropped: total - held,
  hold_ms: holdEnd - holdStart,
  open_ms: openedMs,
  events_total: conns.reduce((n, c) => n + c.events.length, 0),
  events_in_hold: eventsInHold,
  events_per_conn_in_hold: {
    min: perConn[0] ?? 0,
    median: perConn[perConn.length >> 1] ?? 0,
    max: perConn.at(-1) ?? 0,
  },
  expected_per_conn: Math.floor(holdMs / intervalMs),
  worst_gap_ms: worstGap,
  max_gap_allowed_ms: maxGapAllowedMs,
  failures,
  errors,
});

for (const c of conns) c.req?.destroy();
agent.destroy();
setTimeout(() => process.exit(0), 200);
