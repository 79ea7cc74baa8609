#!/usr/bin/env node
// SSE streams at scale: how many streams one proxy process holds, what each costs in memory, how fast
// they open, and whether every keepalive comes on time. Loopback only, bounded by its settings.
//
//   node bench/streams.mjs                 (9,900 streams, held 60 s)
//
// Starts the benchmark backend (bench/backend.mjs: one event per STREAMS_EVENT_S on every stream)
// and the proxy (dist/cli/main.js, bypass mode, LOG_LEVEL=warn, SSE_KEEPALIVE_INTERVAL=STREAMS_KEEPALIVE_S),
// each in a shell that raises its open-files limit first. The proxy's RSS is read after a first request
// and a settle ("idle"). Then STREAMS_CLIENTS client processes (this file with STREAMS_WORKER=1) open
// STREAMS_N streams together, as fast as the proxy answers (at most STREAMS_INFLIGHT opening per client),
// and hold them for STREAMS_HOLD_S. A stream counts as dropped when it did not answer 200, closed or
// errored before the end of the hold, or went silent longer than the keepalive interval plus
// STREAMS_KEEPALIVE_SLACK_MS (a late keepalive). RSS per stream = (RSS while holding - idle RSS) / streams.
// With STREAMS_MEMORY=1 the proxy runs with bench/mem-probe.cjs, which writes process.memoryUsage()
// after a full GC on SIGUSR2: the same per-stream figures for the JS heap, external and array buffers.
// Prints one JSON object on stdout (and a summary on stderr). Exit status 0 when the harness ran.
//
// Settings (environment):
//   STREAMS_N=9900  STREAMS_HOLD_S=60  STREAMS_CLIENTS=2  STREAMS_INFLIGHT=64
//   STREAMS_KEEPALIVE_S=5  STREAMS_EVENT_S=30  STREAMS_KEEPALIVE_SLACK_MS=1000  STREAMS_NOFILE=20000
//   STREAMS_MEMORY=0  STREAMS_BUILD=DIR (another checkout with dist/ built; default this one)
//   STREAMS_TARGET=floor  the bare node:http + undici proxy (bench/floor-proxy.mjs, uncapped pool) instead
//                         of the proxy: what any Node proxy costs per stream on this machine
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(benchDir, '..');
const num = (name, def) => {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got ${v}`);
  return n;
};
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- client worker

async function worker() {
  const url = new URL(process.env.STREAMS_URL);
  const total = num('STREAMS_COUNT', 1000);
  const inflight = num('STREAMS_INFLIGHT', 64);
  const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
  const streams = [];
  let answered = 0;
  let settled = 0;
  let holdStart = Number.POSITIVE_INFINITY;
  let holdEnd = Number.POSITIVE_INFINITY;
  const startedAt = Date.now();
  let openedAt = 0;
  let wake;

  const open = () => {
    const s = { status: 0, last: 0, maxGap: 0, closedAt: 0, error: '', events: 0, keepalives: 0 };
    streams.push(s);
    const req = http.get(url, { agent, headers: { accept: 'text/event-stream' } }, (res) => {
      s.status = res.statusCode ?? 0;
      s.last = Date.now();
      answered++;
      settled++;
      if (answered === total) openedAt = s.last;
      wake?.();
      res.on('data', (chunk) => {
        const now = Date.now();
        // Gaps count inside the hold only (its start is the first boundary).
        if (now > holdStart && now <= holdEnd)
          s.maxGap = Math.max(s.maxGap, now - Math.max(s.last, holdStart));
        s.last = now;
        const text = chunk.toString('latin1');
        if (text.includes(': keepalive')) s.keepalives++;
        if (text.includes('data:')) s.events++;
      });
      res.on('error', (err) => {
        s.error ||= err.code ?? err.message;
      });
    });
    req.on('error', (err) => {
      s.error ||= err.code ?? err.message;
      if (!s.status) {
        settled++;
        wake?.();
      }
    });
    req.on('close', () => {
      s.closedAt ||= Date.now();
    });
    s.req = req;
  };

  for (let i = 0; i < total; i++) {
    while (streams.length - settled >= inflight) await new Promise((r) => (wake = r));
    open();
  }
  while (settled < total) await new Promise((r) => (wake = r));
  wake = undefined;
  emit({ phase: 'opened', started_at: startedAt, opened_at: openedAt || Date.now(), answered });

  // The parent says when the hold starts and how long it lasts (all clients hold the same window).
  const { hold_start, hold_end } = await new Promise((resolve) => {
    process.stdin.setEncoding('utf8');
    process.stdin.once('data', (line) => resolve(JSON.parse(line)));
  });
  holdStart = hold_start;
  holdEnd = hold_end;
  await sleep(Math.max(0, holdEnd - Date.now()));
  const gaps = [];
  const failures = { non_200: 0, closed_early: 0, error: 0, late: 0 };
  let events = 0;
  let keepalives = 0;
  for (const s of streams) {
    const gap = Math.max(s.maxGap, holdEnd - Math.max(s.last, holdStart));
    if (s.status === 200) gaps.push(gap);
    events += s.events;
    keepalives += s.keepalives;
    if (s.status !== 200) failures.non_200++;
    else if (s.closedAt && s.closedAt <= holdEnd) failures.closed_early++;
    else if (s.error) failures.error++;
    else if (gap > Number(process.env.STREAMS_MAX_GAP_MS)) failures.late++;
  }
  emit({ phase: 'result', streams: total, gaps, failures, events, keepalives });
  for (const s of streams) s.req.destroy();
  agent.destroy();
  setTimeout(() => process.exit(0), 100);
}

// ---------------------------------------------------------------- parent

function rssKb(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

const children = new Set();
function spawnLimited(cmd, args, env, nofile) {
  const child = spawn('/bin/sh', ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, cmd, ...args], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  const lines = [];
  const waiters = new Set();
  let buf = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk) => {
    buf += chunk;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      try {
        lines.push(JSON.parse(buf.slice(0, i)));
      } catch {}
      buf = buf.slice(i + 1);
      for (const w of waiters) w();
    }
  });
  child.line = (pred, timeoutMs) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${cmd}: no expected output in ${timeoutMs} ms`)),
        timeoutMs,
      );
      const check = () => {
        const hit = lines.find(pred);
        if (!hit) return;
        clearTimeout(timer);
        waiters.delete(check);
        resolve(hit);
      };
      waiters.add(check);
      check();
    });
  return child;
}

function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function freePort() {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** The proxy's process.memoryUsage() after a full GC (bench/mem-probe.cjs answers SIGUSR2). */
async function memoryUsage(proxy, file) {
  rmSync(file, { force: true });
  process.kill(proxy.pid, 'SIGUSR2');
  for (let i = 0; i < 600 && !existsSync(file); i++) await sleep(100);
  await sleep(100);
  return JSON.parse(readFileSync(file, 'utf8'));
}

async function main() {
  const n = num('STREAMS_N', 9900);
  const holdS = num('STREAMS_HOLD_S', 60);
  const clients = Math.max(1, num('STREAMS_CLIENTS', 2));
  const keepaliveS = num('STREAMS_KEEPALIVE_S', 5);
  const slackMs = num('STREAMS_KEEPALIVE_SLACK_MS', 1000);
  const nofile = num('STREAMS_NOFILE', 20000);
  const memory = process.env.STREAMS_MEMORY === '1';
  const build = path.resolve(process.env.STREAMS_BUILD ?? root);
  const floor = process.env.STREAMS_TARGET === 'floor';
  if (n > 20000 || holdS > 600) throw new Error('STREAMS_N is at most 20000 and STREAMS_HOLD_S at most 600');
  if (n * 2 + 200 > nofile)
    console.error(
      `note: ${n} streams need ~${n * 2 + 200} open files in the proxy; STREAMS_NOFILE is ${nofile}`,
    );
  const memFile = path.join(os.tmpdir(), `streams-mem-${process.pid}.json`);
  const stopAll = () => {
    for (const c of children) c.kill('SIGTERM');
  };
  process.on('SIGINT', () => {
    stopAll();
    process.exit(130);
  });

  try {
    const backend = spawnLimited(
      process.execPath,
      [path.join(benchDir, 'backend.mjs')],
      { SSE_INTERVAL_MS: String(num('STREAMS_EVENT_S', 30) * 1000) },
      nofile,
    );
    const { port: backendPort } = await backend.line((o) => o.port, 10_000);
    const port = await freePort();
    const proxy = floor
      ? spawnLimited(
          process.execPath,
          [
            ...(memory ? ['--expose-gc', '--require', path.join(benchDir, 'mem-probe.cjs')] : []),
            path.join(benchDir, 'floor-proxy.mjs'),
          ],
          {
            FLOOR_PORT: String(port),
            FLOOR_TARGET: `http://127.0.0.1:${backendPort}`,
            FLOOR_CONNECTIONS: '0',
            MEM_PROBE_FILE: memFile,
          },
          nofile,
        )
      : spawnLimited(
          process.execPath,
          [
            ...(memory ? ['--expose-gc', '--require', path.join(benchDir, 'mem-probe.cjs')] : []),
            path.join(build, 'dist/cli/main.js'),
          ],
          {
            AUTH_MODE: 'bypass',
            SERVER_HOST: '127.0.0.1',
            SERVER_PORT: String(port),
            PROXY_TARGET_URL: `http://127.0.0.1:${backendPort}`,
            LOG_LEVEL: 'warn',
            SSE_KEEPALIVE_INTERVAL: String(keepaliveS),
            MEM_PROBE_FILE: memFile,
          },
          nofile,
        );
    for (let i = 0; ; i++) {
      if ((await get(`http://127.0.0.1:${port}${floor ? '/' : '/health'}`).catch(() => 0)) === 200) break;
      if (i > 200) throw new Error('proxy not healthy in 20 s');
      await sleep(100);
    }
    // One proxied request first (it compiles the upstream parser), then a settle: "idle".
    await get(`http://127.0.0.1:${port}/mcp`);
    await sleep(3000);
    const idleRss = rssKb(proxy.pid);
    const idleMem = memory ? await memoryUsage(proxy, memFile) : undefined;

    const per = Math.ceil(n / clients);
    const workers = [];
    for (let i = 0; i < clients; i++) {
      const count = Math.min(per, n - i * per);
      if (count <= 0) break;
      workers.push(
        spawnLimited(
          process.execPath,
          [fileURLToPath(import.meta.url)],
          {
            STREAMS_WORKER: '1',
            STREAMS_URL: `http://127.0.0.1:${port}/sse`,
            STREAMS_COUNT: String(count),
            // The floor writes no keepalives: only the backend's events break its silence.
            STREAMS_MAX_GAP_MS: String((floor ? num('STREAMS_EVENT_S', 30) : keepaliveS) * 1000 + slackMs),
          },
          count + 200,
        ),
      );
    }
    const opened = await Promise.all(workers.map((w) => w.line((o) => o.phase === 'opened', 120_000)));
    const openMs = Math.max(...opened.map((o) => o.opened_at)) - Math.min(...opened.map((o) => o.started_at));
    const answered = opened.reduce((a, o) => a + o.answered, 0);
    const holdStart = Date.now();
    const holdEnd = holdStart + holdS * 1000;
    for (const w of workers)
      w.stdin.write(`${JSON.stringify({ hold_start: holdStart, hold_end: holdEnd })}\n`);
    console.error(
      `${answered}/${n} answered in ${openMs} ms (${Math.round((n / openMs) * 1000)}/s); holding ${holdS} s`,
    );
    const samples = [];
    const sampler = setInterval(() => samples.push(rssKb(proxy.pid)), 1000);
    await sleep(Math.min(holdS * 500, 10_000));
    const holdRss = rssKb(proxy.pid);
    const holdMem = memory ? await memoryUsage(proxy, memFile) : undefined;
    const results = await Promise.all(
      workers.map((w) => w.line((o) => o.phase === 'result', holdS * 1000 + 60_000)),
    );
    clearInterval(sampler);
    const gaps = results.flatMap((r) => r.gaps).sort((a, b) => a - b);
    const failures = {};
    for (const r of results)
      for (const [k, v] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + v;
    const dropped = Object.values(failures).reduce((a, b) => a + b, 0);
    const kb = (x) => Math.round(x / 1024);
    const perStream = (a, b) =>
      a === undefined || b === undefined ? undefined : Math.round(((a - b) / n) * 100) / 100;
    const out = {
      streams: n,
      answered,
      open_ms: openMs,
      open_per_s: Math.round((n / openMs) * 1000),
      hold_s: holdS,
      held: n - dropped,
      dropped,
      failures,
      keepalive_s: keepaliveS,
      silence_ms: {
        median: gaps[gaps.length >> 1],
        p99: gaps[Math.floor(gaps.length * 0.99)],
        max: gaps.at(-1),
      },
      keepalives: results.reduce((a, r) => a + r.keepalives, 0),
      events: results.reduce((a, r) => a + r.events, 0),
      rss_mb: {
        idle: idleRss / 1024,
        holding: holdRss / 1024,
        max: Math.max(...samples.filter(Boolean)) / 1024,
      },
      rss_kb_per_stream: perStream(holdRss, idleRss),
      ...(memory
        ? {
            memory_idle_kb: Object.fromEntries(Object.entries(idleMem).map(([k, v]) => [k, kb(v)])),
            memory_holding_kb: Object.fromEntries(Object.entries(holdMem).map(([k, v]) => [k, kb(v)])),
            kb_per_stream: Object.fromEntries(
              Object.keys(holdMem).map((k) => [k, perStream(holdMem[k] / 1024, idleMem[k] / 1024)]),
            ),
          }
        : {}),
    };
    emit(out);
    console.error(
      `held ${out.held}/${n}, dropped ${dropped} ${JSON.stringify(failures)}; silence median/p99/max ${out.silence_ms.median}/${out.silence_ms.p99}/${out.silence_ms.max} ms (keepalive ${keepaliveS} s); RSS idle ${out.rss_mb.idle.toFixed(1)} MB, holding ${out.rss_mb.holding.toFixed(1)} MB: ${out.rss_kb_per_stream} KB per stream`,
    );
  } finally {
    stopAll();
    rmSync(memFile, { force: true });
  }
}

if (process.env.STREAMS_WORKER === '1') await worker();
else await main();
