#!/usr/bin/env node
// Load benchmark: the proxy against a direct and an nginx baseline, all on loopback.
//
//   npm run bench                    (BENCH_DURATION=10 by default)
//
// One run starts a backend (bench/backend.mjs, own process), nginx with a generated config in a
// temp dir, and the proxy (dist/cli/main.js, AUTH_MODE=bypass); drives each target with wrk
// (warm-up, then the measured run, --latency, a Lua `done` hook printing JSON); measures the
// proxy's idle RSS; holds 1,000 SSE streams through the proxy; prints a table with PASS/FAIL per
// target and writes .bench/latest.json. Every child and nginx is stopped on exit, error or signal.
// The proxy is also measured in AUTH_MODE=oidc with a bearer token, the path MCP clients take:
// the dev IdP (dist/demo/dev-idp.js) runs in this process, and the token is obtained through the
// proxy's own OAuth flow (scripts/oauth-token.mjs), so every request pays the token check.
// For each proxy the table gives its CPU time per request (utime+stime / requests): on a shared
// machine that moves much less than req/s. BENCH_BASELINE measures a second build of the proxy
// in the same rounds, right after this one, for before/after comparisons on a noisy machine.
// BENCH_MCP adds the cost of the MCP inspection stage (docs/mcp-access.md): two more oidc proxies of
// this build, one without rules and one with MCP_ACCESS set to a small rule set (BENCH_MCP_ACCESS below),
// each driven with POST /mcp carrying one small tools/call (bench/mcp-call.lua; the backend answers
// with its JSON-RPC result). With rules, every such request has its body read, parsed and judged,
// and its response parsed for the call's outcome; without, the stage is skipped. The two run back to
// back in every round, and `mcp inspection: rules on / rules off` is the median of the per-round
// ratios (throughput and CPU per request; the aim: rules on keeps >= 0.9x the throughput of rules
// off); POST is also set against the GET bearer target. Only this build (BENCH_BASELINE adds none).
// Exit status: 0 when the harness ran (even if a target is missed), 1 on a harness error,
// 2 when nginx or wrk is missing.
//
// Settings (environment):
//   BENCH_DURATION=10        seconds of each measured wrk run
//   BENCH_WARMUP=3           seconds of warm-up per target (not measured)
//   BENCH_CONNECTIONS=50     wrk connections          BENCH_THREADS=2  wrk threads
//   BENCH_SSE_CONNECTIONS=1000  BENCH_SSE_HOLD=15    SSE hold test size / seconds (0 connections = skip)
//   BENCH_ROUNDS=1           repeat direct/nginx/proxy this many times, report the median run (1-10)
//   BENCH_FLOOR=1            also measure bench/floor-proxy.mjs, a bare node:http+undici proxy (0 = skip)
//   BENCH_INFO=1             also measure the proxy with LOG_LEVEL=info, access log on (0 = skip)
//   BENCH_PROFILE=1          extra proxy run under `node --cpu-prof`, summarised (default off)
//   BENCH_OIDC=1             also measure the proxy in oidc mode with a bearer token (0 = skip)
//   BENCH_MCP=1              also measure POST tools/call through oidc proxies with mcp_access rules off and on
//                            (default: on when BENCH_OIDC is; 0 = skip; needs BENCH_OIDC)
//   BENCH_REDIS_URL=         oidc mode with SESSION_STORE=redis at this URL (default: memory store); give it a
//                            Redis or db of its own: the proxies keep their keys there, under a fixed bench secret
//   BENCH_BASELINE=DIR       also measure the proxy built in DIR (its dist/cli/main.js), interleaved
//   BENCH_STDIO=1            also measure stdio MCP servers through the proxy's bridge (bench/stdio.mjs):
//                            time to first tool call (new child / running child) and tools/call per request
//                            against an HTTP MCP server (this build only); 0 = skip, `only` = this section alone (no nginx)
//   BENCH_STDIO_SPAWNS=20    fresh clients per first-tool-call target (1-100)
//   BENCH_STDIO_DURATION=5   BENCH_STDIO_WARMUP=2   seconds per per-request target (BENCH_ROUNDS rounds)
//   BENCH_STDIO_CONNECTIONS=10  wrk connections of the per-request targets (all in one MCP session)
//   BENCH_WORKERS=1          multi-core section (bench/workers.mjs): the bypass proxy with SERVER_WORKERS=1 and 2
//                            against nginx with worker_processes 1 and 2, interleaved; 0 = skip, `only` = this
//                            section (and BENCH_OPEN_LOOP=only's, when both say so) without the main targets
//   BENCH_WORKERS_DURATION=5  BENCH_WORKERS_WARMUP=2  BENCH_WORKERS_ROUNDS=2   (about 1 minute in all)
//   BENCH_WORKERS_REDIS_URL=redis://127.0.0.1:6379/15   SESSION_STORE=redis that SERVER_WORKERS=2 requires
//                            (bypass mode never connects to it)
//   BENCH_OPEN_LOOP=1        open-loop latency section (bench/latency.mjs): p50/p99 at a fixed rate for direct,
//                            nginx, bypass and the oidc bearer path, then the tail hunt; 0 = skip, `only` as above
//   BENCH_RATE=1000          requests per second     BENCH_OPEN_DURATION=10  BENCH_OPEN_WARMUP=2  BENCH_OPEN_ROUNDS=2
//   BENCH_TAIL=30            seconds of the tail hunt: the oidc bearer path at BENCH_RATE through a proxy with
//                            bench/gc-observer.mjs preloaded, its slowest requests set against GC and stalls
//                            (0 = skip; needs BENCH_OIDC)
//   NGINX_BIN, WRK_BIN       tool paths (default: /usr/sbin/nginx or PATH, wrk from PATH)
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  constants,
  createWriteStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { obtainAccessToken } from '../scripts/oauth-token.mjs';
import { openLoopBench, openLoopConfig, printOpenLoop, printTail, tailHunt } from './latency.mjs';
import { printStdio, stdioBench } from './stdio.mjs';
import { printWorkers, workersBench, workersConfig } from './workers.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(benchDir, '..');
const outDir = path.join(root, '.bench');
const logDir = path.join(outDir, 'logs');

const num = (name, def) => {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new HarnessError(`${name} must be a non-negative number, got ${v}`);
  return n;
};
class HarnessError extends Error {}

/**
 * The SESSION_SECRET of the oidc proxies on a Redis store: one for all of them, like instances sharing a
 * store, and fixed, so a later run can read the signing key an earlier run left there. Bench data only.
 */
const BENCH_SESSION_SECRET = 'mcp-oidc-proxy-bench-only-not-a-real-secret';

/**
 * The mcp_access rules of the `rules on` proxy: a small, realistic set. The bench token's user (alice of
 * the dev IdP, group engineering) may call the benchmark's `echo` (no rule names it: default allow).
 */
const BENCH_MCP_ACCESS = {
  default: 'allow',
  rules: [
    { tools: ['delete_*'], allow: { groups: ['admins'] } },
    { tools: ['secret_*'], allow: { groups: ['engineering'] } },
  ],
};

/** The wrk scripts: GET with the `done` hook printing BENCH_JSON; POST of one tools/call with the same hook. */
const GET_SCRIPT = path.join(benchDir, 'latency.lua');
const MCP_CALL_SCRIPT = path.join(benchDir, 'mcp-call.lua');
/** POST of one tools/call in an open MCP session, a JSON-RPC id of its own per request (stdio section). */
const MCP_SESSION_SCRIPT = path.join(benchDir, 'mcp-session-call.lua');

const TARGETS = { throughputVsNginx: 0.5, p99AddedMs: 5, idleRssMb: 60, sseStreams: 1000 };

// ---------------------------------------------------------------- process bookkeeping

/** Every child we started: stopped in reverse order at the end, SIGKILLed on process exit. */
const children = new Set();
let cleaningUp = false;
/** Servers running in this process (the dev IdP): closed at the end. */
const inProcess = [];

function track(name, child) {
  const entry = { name, child, exited: false, code: null, signal: null };
  let resolveExit;
  entry.exit = new Promise((resolve) => {
    resolveExit = resolve;
    child.once('exit', (code, signal) => {
      entry.exited = true;
      entry.code = code;
      entry.signal = signal;
      children.delete(entry);
      resolve();
    });
  });
  child.once('error', (err) => {
    entry.error = err;
    // A child that could not be spawned never emits 'exit'.
    if (child.pid === undefined) {
      entry.exited = true;
      children.delete(entry);
      resolveExit();
    }
  });
  children.add(entry);
  return entry;
}

async function stop(entry, timeoutMs = 4000) {
  if (!entry || entry.exited) return;
  try {
    entry.child.kill('SIGTERM');
  } catch {}
  const timer = setTimeout(() => {
    try {
      entry.child.kill('SIGKILL');
    } catch {}
  }, timeoutMs);
  await entry.exit;
  clearTimeout(timer);
}

async function cleanup() {
  if (cleaningUp) return;
  cleaningUp = true;
  // Bounded: whatever is still alive after this is SIGKILLed by the 'exit' handler.
  const all = Promise.all([
    ...[...children].reverse().map((entry) => stop(entry)),
    ...inProcess.map((close) => close().catch(() => {})),
  ]);
  await Promise.race([all, sleep(12_000)]);
  if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
}

process.on('exit', () => {
  for (const entry of children)
    try {
      entry.child.kill('SIGKILL');
    } catch {}
  if (tmpDir)
    try {
      rmSync(tmpDir, { recursive: true, force: true });
    } catch {}
});
let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    interrupted = true;
    process.stderr.write(`\nbench: ${sig} received, stopping children...\n`);
    cleanup().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const say = (s = '') => process.stdout.write(`${s}\n`);

function findBin(name, envName, preferred) {
  const candidates = process.env[envName]
    ? [process.env[envName]]
    : [preferred, ...(process.env.PATH ?? '').split(':').map((d) => path.join(d, name))];
  for (const p of candidates) {
    if (!p) continue;
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {}
  }
  return undefined;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function httpGet(url, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function waitFor(what, fn, timeoutMs, entry) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < timeoutMs) {
    if (entry?.exited)
      throw new HarnessError(`${what}: process exited (code ${entry.code}, signal ${entry.signal})`);
    try {
      if (await fn()) return;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  throw new HarnessError(`${what}: not ready after ${timeoutMs} ms${last ? ` (${last.message})` : ''}`);
}

function rssKb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
const mb = (kb) => (kb === undefined ? undefined : Math.round((kb / 1024) * 10) / 10);

/** utime+stime of a process in seconds (CLK_TCK is 100 on Linux). */
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return undefined;
  }
}

/** Machine-wide busy and total jiffies from /proc/stat (to see load from other processes on the box). */
function machineJiffies() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3] + (f[4] ?? 0);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    // irq + softirq: loopback TCP work is mostly accounted here, not to any process.
    return { busy: total - idle, total, irq: f[5] + f[6] };
  } catch {
    return undefined;
  }
}

function nofileLimits() {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(
    readFileSync('/proc/self/limits', 'utf8'),
  );
  const v = (s) => (s === 'unlimited' ? Number.POSITIVE_INFINITY : Number(s));
  return m ? { soft: v(m[1]), hard: v(m[2]) } : { soft: 1024, hard: 1024 };
}

/** Spawns cmd; when `nofile` is set, through sh so the child's soft fd limit is raised first (same pid after exec). */
function spawnChild(name, cmd, args, { env, stdio, nofile } = {}) {
  const [c, a] = nofile
    ? ['/bin/sh', ['-c', `ulimit -n ${nofile} && exec "$0" "$@"`, cmd, ...args]]
    : [cmd, args];
  const child = spawn(c, a, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: stdio ?? ['ignore', 'pipe', 'pipe'],
  });
  return track(name, child);
}

function logFile(name) {
  return createWriteStream(path.join(logDir, `${name}.log`));
}

/** Waits for a JSON line on a child's stdout matching pred (lines are kept, none is lost between calls). */
function jsonLine(entry, pred, timeoutMs) {
  if (!entry.lines) {
    entry.lines = [];
    entry.waiters = new Set();
    let buf = '';
    entry.child.stdout.setEncoding('utf8');
    entry.child.stdout.on('data', (chunk) => {
      buf += chunk;
      let i = buf.indexOf('\n');
      while (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
        try {
          entry.lines.push(JSON.parse(line));
        } catch {
          continue;
        }
        for (const w of entry.waiters) w();
      }
    });
  }
  return new Promise((resolve, reject) => {
    const check = () => {
      const found = entry.lines.find(pred);
      if (!found) return;
      done();
      resolve(found);
    };
    const timer = setTimeout(() => {
      done();
      reject(new HarnessError(`${entry.name}: no expected output in ${timeoutMs} ms`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      entry.waiters.delete(check);
    };
    entry.waiters.add(check);
    check();
    entry.exit.then(() =>
      setImmediate(() => {
        check();
        if (entry.waiters.has(check)) {
          done();
          reject(new HarnessError(`${entry.name} exited (code ${entry.code}) before the expected output`));
        }
      }),
    );
  });
}

// ---------------------------------------------------------------- components

let tmpDir;
/** GC and event-loop stalls of the backend (bench/gc-observer.mjs), for the tail hunt. */
const backendGcLog = path.join(logDir, 'backend-gc.jsonl');

async function startBackend(nofile) {
  // With the GC observer: the tail hunt tells the backend's hold-ups from the proxy's.
  const entry = spawnChild(
    'backend',
    process.execPath,
    [
      '--import',
      pathToFileURL(path.join(benchDir, 'gc-observer.mjs')).href,
      path.join(benchDir, 'backend.mjs'),
    ],
    { nofile, env: { BENCH_GC_LOG: backendGcLog } },
  );
  entry.child.stderr.pipe(logFile('backend'));
  const { port } = await jsonLine(entry, (o) => typeof o.port === 'number', 10_000);
  entry.port = port;
  return entry;
}

function nginxConfig(dir, listenPort, backendPort, workers, name) {
  const t = (p) => path.join(dir, p);
  // Several workers need the master process; as root it would hand them to nobody, who cannot
  // read this temp dir: they keep this user.
  const user = process.getuid?.() === 0 ? `user ${os.userInfo().username};\n` : '';
  return `# generated by bench/run.mjs
daemon off;
${workers > 1 ? `master_process on;\n${user}` : 'master_process off;\n'}worker_processes ${workers};
pid ${t(`${name}.pid`)};
error_log ${t('error.log')} warn;
worker_rlimit_nofile 8192;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path ${t('client_body')};
    proxy_temp_path ${t('proxy')};
    fastcgi_temp_path ${t('fastcgi')};
    uwsgi_temp_path ${t('uwsgi')};
    scgi_temp_path ${t('scgi')};
    keepalive_requests 1000000;
    upstream backend {
        server 127.0.0.1:${backendPort};
        keepalive 64;
    }
    server {
        listen 127.0.0.1:${listenPort};
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_buffering off;
        }
    }
}
`;
}

/** nginx in front of the backend: one worker process (no master) unless `workers` says more. */
async function startNginx(nginxBin, backendPort, { workers = 1, name = 'nginx' } = {}) {
  const port = await freePort();
  const conf = path.join(tmpDir, `${name}.conf`);
  writeFileSync(conf, nginxConfig(tmpDir, port, backendPort, workers, name));
  const test = spawnSync(
    nginxBin,
    ['-t', '-q', '-p', tmpDir, '-e', path.join(tmpDir, 'error.log'), '-c', conf],
    { encoding: 'utf8' },
  );
  if (test.status !== 0)
    throw new HarnessError(`nginx -t failed:\n${test.stderr}${readIf(path.join(tmpDir, 'error.log'))}`);
  const entry = spawnChild(name, nginxBin, ['-p', tmpDir, '-e', path.join(tmpDir, 'error.log'), '-c', conf]);
  entry.child.stdout.pipe(logFile(name));
  entry.child.stderr.pipe(logFile(`${name}-stderr`));
  entry.port = port;
  await waitFor(
    name,
    async () => (await httpGet(`http://127.0.0.1:${port}/warm`)).status === 200,
    10_000,
    entry,
  );
  return entry;
}

function readIf(p) {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

/**
 * A proxy child from `build` (a checkout with dist/). `oidc`, when given, is the dev IdP's client
 * ({ issuer, clientId, secret }): AUTH_MODE=oidc, else bypass; `port` is then chosen in advance.
 * Without `backendPort` the target comes from `env` (PROXY_TARGET_COMMAND: a stdio server).
 */
async function startProxy(
  name,
  backendPort,
  { logLevel = 'warn', nofile, nodeArgs = [], build = root, oidc, port: givenPort, env = {} } = {},
) {
  const port = givenPort ?? (await freePort());
  const log = path.join(logDir, `${name}.log`);
  const out = createWriteStream(log);
  await new Promise((r) => out.once('open', r));
  const auth = oidc
    ? {
        AUTH_MODE: 'oidc',
        PUBLIC_URL: `http://127.0.0.1:${port}`,
        OIDC_DISCOVERY_URL: `${oidc.issuer}/.well-known/openid-configuration`,
        OIDC_CLIENT_ID: oidc.clientId,
        OIDC_CLIENT_SECRET: oidc.secret,
        OIDC_SCOPES: 'openid email profile groups',
        ...(oidc.redisUrl
          ? { SESSION_STORE: 'redis', REDIS_URL: oidc.redisUrl, SESSION_SECRET: BENCH_SESSION_SECRET }
          : {}),
      }
    : { AUTH_MODE: 'bypass' };
  const entry = spawnChild(name, process.execPath, [...nodeArgs, path.join(build, 'dist/cli/main.js')], {
    nofile,
    env: {
      ...auth,
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: String(port),
      ...(backendPort === undefined ? {} : { PROXY_TARGET_URL: `http://127.0.0.1:${backendPort}` }),
      LOG_LEVEL: logLevel,
      ...env,
    },
    // The access log goes to a file, as it would to a log collector; the proxy writes it itself.
    stdio: ['ignore', out, out],
  });
  entry.port = port;
  entry.log = log;
  await waitFor(
    `proxy (${name})`,
    async () => (await httpGet(`http://127.0.0.1:${port}/health`)).status === 200,
    20_000,
    entry,
  );
  return entry;
}

// ---------------------------------------------------------------- wrk

async function wrk(
  wrkBin,
  url,
  { seconds, connections, threads, watch = [], headers = [], script = GET_SCRIPT },
) {
  const args = [
    `-t${threads}`,
    `-c${connections}`,
    `-d${seconds}s`,
    ...headers.flatMap((h) => ['-H', h]),
    '--latency',
    '--timeout',
    '5s',
    '-s',
    script,
    url,
  ];
  const before = watch.map((e) => cpuSeconds(e.child.pid));
  const m0 = machineJiffies();
  const entry = spawnChild('wrk', wrkBin, args);
  // wrk's own CPU: polled while it runs (the last reading before it exits).
  let wrkCpu;
  const poll = setInterval(() => {
    wrkCpu = cpuSeconds(entry.child.pid) ?? wrkCpu;
  }, 200);
  let stdout = '';
  let stderr = '';
  entry.child.stdout.setEncoding('utf8').on('data', (c) => {
    stdout += c;
  });
  entry.child.stderr.setEncoding('utf8').on('data', (c) => {
    stderr += c;
  });
  const killer = setTimeout(() => entry.child.kill('SIGKILL'), (seconds + 20) * 1000);
  await entry.exit;
  clearTimeout(killer);
  clearInterval(poll);
  const m1 = machineJiffies();
  const cpu = {};
  const cpuSecondsUsed = {};
  let ours = 0;
  watch.forEach((e, i) => {
    const a = cpuSeconds(e.child.pid);
    if (a !== undefined && before[i] !== undefined) {
      cpuSecondsUsed[e.name] = a - before[i];
      cpu[e.name] = Math.round(((a - before[i]) / seconds) * 100);
      ours += cpu[e.name];
    }
  });
  if (watch.length && wrkCpu !== undefined) {
    cpu.wrk = Math.round((wrkCpu / seconds) * 100);
    ours += cpu.wrk;
  }
  if (watch.length && m0 && m1) {
    // Percent of one CPU, like the per-process figures (200 = both cores of a 2-CPU box).
    const busyPct = Math.round(((m1.busy - m0.busy) / (m1.total - m0.total)) * os.cpus().length * 100);
    const irqPct = Math.round(((m1.irq - m0.irq) / (m1.total - m0.total)) * os.cpus().length * 100);
    cpu.machine = busyPct;
    cpu.softirq = irqPct;
    // Everything else on the box (other users' processes, this harness): noise in the figures.
    cpu.other = Math.max(0, busyPct - ours - irqPct);
  }
  if (entry.error) throw new HarnessError(`wrk failed to start: ${entry.error.message}`);
  const line = stdout.split('\n').find((l) => l.startsWith('BENCH_JSON '));
  if (entry.code !== 0 || !line)
    throw new HarnessError(`wrk ${url} failed (code ${entry.code}):\n${stdout}${stderr}`);
  const r = JSON.parse(line.slice('BENCH_JSON '.length));
  const errors = Object.values(r.errors).reduce((a, b) => a + b, 0);
  return {
    rps: Math.round(r.rps),
    p50_ms: r.lat_us.p50 / 1000,
    p75_ms: r.lat_us.p75 / 1000,
    p90_ms: r.lat_us.p90 / 1000,
    p99_ms: r.lat_us.p99 / 1000,
    p999_ms: r.lat_us.p999 / 1000,
    max_ms: r.lat_us.max / 1000,
    mean_ms: Math.round(r.lat_us.mean) / 1000,
    requests: r.requests,
    errors,
    error_detail: r.errors,
    cpu_pct: cpu,
    /** CPU seconds of each watched process during the measured run (per request: see measure). */
    cpu_seconds: cpuSecondsUsed,
    wrk_text: stdout
      .split('\n')
      .filter((l) => !l.startsWith('BENCH_JSON '))
      .join('\n')
      .trim(),
  };
}

/**
 * One target: warm-up, then the measured run. `server` is the process answering (when it is one
 * of ours): its CPU time per request is reported, in microseconds.
 */
async function measure(wrkBin, label, url, cfg, watch, { server, headers = [], script } = {}) {
  process.stdout.write(`  ${label.padEnd(22)} warm-up ${cfg.warmup}s, measure ${cfg.duration}s ... `);
  const load = { connections: cfg.connections, threads: cfg.threads, headers, script };
  if (cfg.warmup > 0) await wrk(wrkBin, url, { ...load, seconds: cfg.warmup });
  const r = await wrk(wrkBin, url, { ...load, seconds: cfg.duration, watch });
  const used = server ? r.cpu_seconds[server.name] : undefined;
  if (used !== undefined && r.requests > 0) r.cpu_us_per_request = Math.round((used / r.requests) * 1e7) / 10;
  say(
    `${r.rps} req/s, p50 ${r.p50_ms} ms, p99 ${r.p99_ms} ms${r.cpu_us_per_request !== undefined ? `, ${r.cpu_us_per_request} µs CPU/request` : ''}${r.errors ? `, ${r.errors} errors` : ''}`,
  );
  return r;
}

/** The target's answer to one request with these headers must be 200 before it is measured. */
async function expectOk(label, url, headers = {}) {
  const r = await new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: 5000, headers }, (res) => {
      res.resume();
      res.on('end', () => resolve(res));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
  if (r.statusCode !== 200) throw new HarnessError(`${label} answered ${r.statusCode} to GET ${url}`);
}

/** POST of one tools/call as bench/mcp-call.lua sends it (the tool's name aside): status and parsed body. */
async function mcpCall(url, token, tool = 'echo') {
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: tool, arguments: { text: 'hello' } },
  });
  const r = await new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method: 'POST',
        agent: false,
        timeout: 5000,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode, text }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
  let json;
  try {
    json = JSON.parse(r.text);
  } catch {}
  return { status: r.status, json, text: r.text };
}

/**
 * Before an MCP target is measured: the call the load sends must come back as the backend's result,
 * and a call to `delete_bench` must be refused by the rules (rules on) or reach the backend (rules off),
 * so the two targets differ by exactly the inspection stage.
 */
async function expectMcpTarget(label, url, token, rulesOn) {
  const ok = await mcpCall(url, token);
  if (ok.status !== 200 || ok.json?.result?.content?.[0]?.text !== 'hello')
    throw new HarnessError(`${label} answered ${ok.status} ${ok.text.slice(0, 200)} to POST tools/call echo`);
  const refused = await mcpCall(url, token, 'delete_bench');
  const wasRefused = refused.status === 200 && refused.json?.error?.code === -32003;
  const wasForwarded = refused.status === 200 && refused.json?.result !== undefined;
  if (rulesOn ? !wasRefused : !wasForwarded)
    throw new HarnessError(
      `${label}: POST tools/call delete_bench should be ${rulesOn ? 'refused by the rules' : 'forwarded'}, got ${refused.status} ${refused.text.slice(0, 200)}`,
    );
}

/** RSS (kB) after start, and after one proxied request: before any load. */
async function idleRssOf(entry) {
  await sleep(300);
  const startRss = rssKb(entry.child.pid);
  await expectOk(entry.name, `http://127.0.0.1:${entry.port}/mcp`);
  await sleep(300);
  return { startRss, idleRss: rssKb(entry.child.pid) };
}

/** An oidc proxy's bearer token, obtained again when it is older than 10 minutes (they live 15). */
async function freshToken(oidcProxy) {
  if (!oidcProxy.token || Date.now() - oidcProxy.tokenAt > 600_000) {
    oidcProxy.token = await obtainAccessToken(`http://127.0.0.1:${oidcProxy.entry.port}`, {
      redirectUri: 'http://127.0.0.1:39874/oauth/callback',
      clientName: 'mcp-oidc-proxy bench',
    });
    oidcProxy.tokenAt = Date.now();
  }
  return oidcProxy.token;
}

/** Median of the per-round ratios a/b (paired: the same round's runs), or undefined. */
function pairedRatio(runsA, runsB, field) {
  if (!runsA?.length || runsA.length !== runsB?.length) return undefined;
  const ratios = runsA.map((a, i) => a[field] / runsB[i][field]).sort((x, y) => x - y);
  const mid = ratios.length >> 1;
  const median = ratios.length % 2 ? ratios[mid] : (ratios[mid - 1] + ratios[mid]) / 2;
  return Math.round(median * 1000) / 1000;
}

/** Several runs of one target: the run with the median throughput (all runs kept in `runs`). */
function medianRun(runs) {
  if (runs.length === 1) return runs[0];
  const sorted = [...runs].sort((a, b) => a.rps - b.rps);
  return { ...sorted[(sorted.length - 1) >> 1], runs: runs.map((r) => ({ ...r, wrk_text: undefined })) };
}

// ---------------------------------------------------------------- SSE hold

async function sseHold(proxy, backend, cfg, nofile) {
  const entry = spawnChild('sse-client', process.execPath, [path.join(benchDir, 'sse-client.mjs')], {
    nofile,
    env: {
      SSE_URL: `http://127.0.0.1:${proxy.port}/sse`,
      SSE_CONNECTIONS: String(cfg.sseConnections),
      SSE_HOLD_MS: String(cfg.sseHold * 1000),
      SSE_OPEN_TIMEOUT_MS: '15000',
    },
  });
  entry.child.stderr.pipe(logFile('sse-client'));
  const samples = [];
  const sampler = setInterval(() => {
    const kb = rssKb(proxy.child.pid);
    if (kb) samples.push(kb);
  }, 500);
  try {
    const holding = await jsonLine(entry, (o) => o.phase === 'holding', 30_000);
    say(
      `  ${holding.status_200}/${cfg.sseConnections} streams answered 200 in ${holding.open_ms} ms; holding ${cfg.sseHold}s ...`,
    );
    await sleep(Math.min(5000, (cfg.sseHold * 1000) / 2));
    let backendStreams;
    try {
      backendStreams = JSON.parse((await httpGet(`http://127.0.0.1:${backend.port}/stats`)).body).sse_streams;
    } catch {}
    const midRss = rssKb(proxy.child.pid);
    // Is the proxy still serving ordinary requests while the streams are held?
    const t0 = Date.now();
    let probe;
    try {
      const r = await httpGet(`http://127.0.0.1:${proxy.port}/mcp`, 3000);
      probe = { status: r.status, ms: Date.now() - t0 };
    } catch (err) {
      probe = { status: 0, ms: Date.now() - t0, error: err.message };
    }
    const result = await jsonLine(entry, (o) => o.phase === 'result', cfg.sseHold * 1000 + 30_000);
    await entry.exit;
    return {
      ...result,
      backend_streams_mid_hold: backendStreams,
      plain_request_during_hold: probe,
      proxy_rss_mid_hold_mb: mb(midRss),
      proxy_rss_max_mb: mb(Math.max(...samples)),
    };
  } finally {
    clearInterval(sampler);
    await stop(entry);
  }
}

// ---------------------------------------------------------------- report

const fmt = (n, d = 2) => (n === undefined || Number.isNaN(n) ? 'n/a' : Number(n).toFixed(d));
const verdict = (ok) => (ok ? 'PASS' : 'FAIL');

function table(rows) {
  const head = [
    'target',
    'req/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'max ms',
    'errors',
    'µs CPU/req',
    'CPU % of one core during the run',
  ];
  const body = rows.map(([name, r]) => [
    name,
    String(r.rps),
    fmt(r.p50_ms),
    fmt(r.p90_ms),
    fmt(r.p99_ms),
    fmt(r.max_ms, 1),
    String(r.errors),
    fmt(r.cpu_us_per_request, 1),
    Object.entries(r.cpu_pct)
      .filter(([k, v]) => v > 0 || k === 'other' || k === 'softirq')
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) =>
    `  ${cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')}`;
  say(line(head));
  say(`  ${widths.map((w) => '-'.repeat(w)).join('  ')}`);
  for (const b of body) say(line(b));
}

// ---------------------------------------------------------------- main

async function main() {
  const cfg = {
    duration: num('BENCH_DURATION', 10),
    warmup: num('BENCH_WARMUP', 3),
    connections: num('BENCH_CONNECTIONS', 50),
    threads: num('BENCH_THREADS', 2),
    sseConnections: num('BENCH_SSE_CONNECTIONS', 1000),
    sseHold: num('BENCH_SSE_HOLD', 15),
    rounds: num('BENCH_ROUNDS', 1),
    info: process.env.BENCH_INFO !== '0',
    floor: process.env.BENCH_FLOOR !== '0',
    profile: process.env.BENCH_PROFILE === '1',
    oidc: process.env.BENCH_OIDC !== '0',
    mcp: process.env.BENCH_MCP ? process.env.BENCH_MCP !== '0' : process.env.BENCH_OIDC !== '0',
    redisUrl: process.env.BENCH_REDIS_URL || undefined,
    baseline: process.env.BENCH_BASELINE ? path.resolve(process.env.BENCH_BASELINE) : undefined,
    stdio: process.env.BENCH_STDIO === 'only' ? 'only' : process.env.BENCH_STDIO !== '0',
    workers: process.env.BENCH_WORKERS === 'only' ? 'only' : process.env.BENCH_WORKERS !== '0',
    openLoop: process.env.BENCH_OPEN_LOOP === 'only' ? 'only' : process.env.BENCH_OPEN_LOOP !== '0',
  };
  const workersCfg = workersConfig(num, HarnessError);
  const openCfg = openLoopConfig(num, HarnessError);
  const workersRedisUrl = process.env.BENCH_WORKERS_REDIS_URL || 'redis://127.0.0.1:6379/15';
  // `only`: these sections alone, on the backend, nginx and proxies of the main run, without its targets.
  const sectionsOnly = cfg.workers === 'only' || cfg.openLoop === 'only';
  if (sectionsOnly) {
    if (cfg.workers !== 'only') cfg.workers = false;
    if (cfg.openLoop !== 'only') cfg.openLoop = false;
    Object.assign(cfg, { info: false, floor: false, mcp: false, baseline: undefined, stdio: false });
    cfg.sseConnections = 0;
  }
  if (cfg.openLoop && openCfg.tail > 0 && !cfg.oidc)
    throw new HarnessError(
      'BENCH_TAIL needs BENCH_OIDC (it measures the oidc bearer path); set BENCH_TAIL=0',
    );
  const stdioCfg = {
    spawns: num('BENCH_STDIO_SPAWNS', 20),
    duration: num('BENCH_STDIO_DURATION', 5),
    warmup: num('BENCH_STDIO_WARMUP', 2),
    connections: num('BENCH_STDIO_CONNECTIONS', 10),
    threads: Math.min(cfg.threads, num('BENCH_STDIO_CONNECTIONS', 10)),
    rounds: cfg.rounds,
  };
  if (stdioCfg.spawns < 1 || stdioCfg.spawns > 100)
    throw new HarnessError('BENCH_STDIO_SPAWNS must be between 1 and 100');
  if (stdioCfg.duration < 1 || stdioCfg.duration > 60)
    throw new HarnessError('BENCH_STDIO_DURATION must be between 1 and 60 seconds');
  if (stdioCfg.connections < 1 || stdioCfg.connections > 1000)
    throw new HarnessError('BENCH_STDIO_CONNECTIONS must be between 1 and 1000');
  if (cfg.duration < 1 || cfg.duration > 600)
    throw new HarnessError('BENCH_DURATION must be between 1 and 600 seconds');
  if (cfg.rounds < 1 || cfg.rounds > 10) throw new HarnessError('BENCH_ROUNDS must be between 1 and 10');
  if (cfg.sseHold > 300) throw new HarnessError('BENCH_SSE_HOLD must be at most 300 seconds');
  if (cfg.sseConnections > 20000) throw new HarnessError('BENCH_SSE_CONNECTIONS must be at most 20000');
  if (cfg.mcp && !cfg.oidc)
    throw new HarnessError('BENCH_MCP needs BENCH_OIDC (its targets are oidc proxies with a bearer token)');
  if (cfg.baseline && !existsSync(path.join(cfg.baseline, 'dist/cli/main.js')))
    throw new HarnessError(
      `BENCH_BASELINE: no ${path.join(cfg.baseline, 'dist/cli/main.js')} (build it first)`,
    );

  const nginxBin = findBin('nginx', 'NGINX_BIN', '/usr/sbin/nginx');
  const wrkBin = findBin('wrk', 'WRK_BIN', '/usr/bin/wrk');
  const stdioOnly = cfg.stdio === 'only';
  if ((!nginxBin && !stdioOnly) || !wrkBin) {
    process.stderr.write(
      `bench: missing ${[!nginxBin && 'nginx', !wrkBin && 'wrk'].filter(Boolean).join(' and ')}.\n` +
        '  Install them (Debian/Ubuntu):  sudo apt-get update && sudo apt-get install -y nginx-light wrk\n' +
        '  or point NGINX_BIN / WRK_BIN at existing binaries.\n',
    );
    process.exitCode = 2;
    return;
  }

  rmSync(logDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  if (!existsSync(path.join(root, 'dist/cli/main.js'))) {
    say('dist/cli/main.js missing: running npm run build ...');
    const b = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
    if (b.status !== 0) throw new HarnessError('npm run build failed');
  }

  // File descriptors: the proxy holds 2 per SSE stream (client + upstream), backend and client 1 each.
  const limits = nofileLimits();
  const need = cfg.sseConnections * 2 + 512;
  let nofile;
  let nofileNote = `open-files limit soft ${limits.soft} / hard ${limits.hard}; SSE test needs ~${need} in the proxy`;
  if (limits.soft >= need) nofileNote += ': OK';
  else if (limits.hard >= need) {
    nofile = Math.min(limits.hard, Math.max(need, 8192));
    nofileNote += `: raising the children's soft limit to ${nofile}`;
  } else
    nofileNote += `: TOO LOW (hard limit); raise it (e.g. \`ulimit -n ${need}\` as root, or LimitNOFILE) or the SSE test will drop streams`;

  const nginxVersion = spawnSync(nginxBin, ['-v'], { encoding: 'utf8' }).stderr.trim();
  const wrkVersion = (spawnSync(wrkBin, ['--version'], { encoding: 'utf8' }).stdout || '')
    .split('\n')[0]
    .trim();
  const git = (args) => spawnSync('git', args, { cwd: root, encoding: 'utf8' }).stdout?.trim() || undefined;
  const build = {
    git_head: git(['rev-parse', '--short', 'HEAD']),
    worktree_dirty: (git(['status', '--porcelain', '--untracked-files=no']) ?? '') !== '',
    dist_mtime: statSync(path.join(root, 'dist/cli/main.js')).mtime.toISOString(),
  };
  const machine = {
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model,
    mem_gb: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    nginx: nginxVersion,
    wrk: wrkVersion,
    loadavg_start: os.loadavg().map((x) => Math.round(x * 100) / 100),
    note: 'backend, nginx, proxy, wrk and SSE client all on this one machine, loopback only',
  };
  say(`mcp-oidc-proxy bench — ${new Date().toISOString()}`);
  say(
    `machine: ${machine.cpus} CPU (${machine.cpu_model}), ${machine.mem_gb} GB, Node ${machine.node}, ${nginxVersion}, ${wrkVersion}`,
  );
  say(
    '         everything (backend, nginx, proxy, wrk, SSE client) on this box, loopback only — they share the CPUs',
  );
  say(`         load average at start: ${machine.loadavg_start.join(' ')}`);
  say(
    `proxy: dist/ built ${build.dist_mtime}, git ${build.git_head ?? '?'}${build.worktree_dirty ? ' + uncommitted changes' : ''}`,
  );
  if (!stdioOnly)
    say(
      `wrk: ${cfg.connections} connections, ${cfg.threads} threads, ${cfg.warmup}s warm-up + ${cfg.duration}s per target; ${nofileNote}`,
    );
  if (cfg.stdio)
    say(
      `stdio section: ${stdioCfg.spawns} fresh clients per first-call target; wrk ${stdioCfg.connections} connections, ${stdioCfg.warmup}s warm-up + ${stdioCfg.duration}s per per-request target, ${stdioCfg.rounds} round(s) (this build only)`,
    );
  say();

  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'mcp-proxy-bench-'));
  /** What bench/stdio.mjs uses of this harness. */
  const harness = () => ({
    ...{ startProxy, spawnChild, jsonLine, stop, measure, pairedRatio, medianRun, table, say, fmt },
    ...{ startNginx, expectOk, wrk },
    ...{ logFile, HarnessError, tmpDir, benchDir, wrkBin, mcpSessionScript: MCP_SESSION_SCRIPT },
  });
  if (stdioOnly) {
    const stdio = await stdioBench(harness(), stdioCfg);
    say();
    say('=== stdio ===');
    printStdio(harness(), stdio);
    const json = { date: new Date().toISOString(), machine, proxy_build: build, stdio };
    writeFileSync(path.join(outDir, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
    say(`\nwrote ${path.relative(root, path.join(outDir, 'latest.json'))}`);
    return;
  }
  const backend = await startBackend(nofile);
  const nginx = await startNginx(nginxBin, backend.port);
  const proxy = await startProxy('proxy', backend.port, { logLevel: 'warn', nofile });
  const { startRss, idleRss } = await idleRssOf(proxy);
  say(
    `proxy idle RSS (after start + 1 request): ${mb(idleRss)} MB (after start + /health only: ${mb(startRss)} MB)`,
  );
  let baseline;
  let baselineRss;
  if (cfg.baseline) {
    baseline = await startProxy('baseline', backend.port, { logLevel: 'warn', nofile, build: cfg.baseline });
    baselineRss = await idleRssOf(baseline);
    say(
      `baseline (${cfg.baseline}) idle RSS: ${mb(baselineRss.idleRss)} MB (after start + /health only: ${mb(baselineRss.startRss)} MB)`,
    );
  }
  // oidc mode, one proxy per build, each with a token of its own (each keeps its keys in memory).
  const oidcProxies = [];
  // The MCP inspection targets: this build's oidc proxy without and with mcp_access rules, POST tools/call.
  const mcpProxies = [];
  let tracedProxy;
  const gcLog = path.join(logDir, 'proxy-gc.jsonl');
  if (cfg.oidc) {
    const builds = [['oidc', 'proxy oidc + bearer', root]];
    if (baseline) builds.push(['oidc_baseline', 'baseline oidc + bearer', cfg.baseline]);
    if (cfg.mcp)
      builds.push(
        ['oidc_mcp_rules_off', 'oidc POST, rules off', root, {}, false],
        [
          'oidc_mcp_rules_on',
          'oidc POST, rules on',
          root,
          { MCP_ACCESS: JSON.stringify(BENCH_MCP_ACCESS) },
          true,
        ],
      );
    // The tail hunt's proxy: this build with the GC observer preloaded (its own process, so the observer
    // costs the other targets nothing).
    if (cfg.openLoop && openCfg.tail > 0)
      builds.push([
        'oidc_traced',
        'proxy oidc + bearer (GC observed)',
        root,
        { BENCH_GC_LOG: gcLog },
        undefined,
        ['--import', pathToFileURL(path.join(benchDir, 'gc-observer.mjs')).href],
      ]);
    const ports = [];
    for (const _ of builds) ports.push(await freePort());
    const { startDevIdp } = await import(pathToFileURL(path.join(root, 'dist/demo/dev-idp.js')).href);
    const oidc = {
      clientId: 'mcp-oidc-proxy',
      secret: randomBytes(16).toString('hex'),
      redisUrl: cfg.redisUrl,
    };
    const idp = await startDevIdp({
      clients: [
        {
          client_id: oidc.clientId,
          client_secret: oidc.secret,
          redirect_uris: ports.map((port) => `http://127.0.0.1:${port}/callback`),
        },
      ],
    });
    inProcess.push(() => idp.close());
    oidc.issuer = idp.issuer;
    for (const [i, [key, label, build, env, rulesOn, nodeArgs]] of builds.entries()) {
      const entry = await startProxy(key, backend.port, {
        nofile,
        build,
        oidc,
        port: ports[i],
        env,
        nodeArgs,
      });
      if (key === 'oidc_traced') tracedProxy = { key, label, entry };
      else if (env) mcpProxies.push({ key, label, entry, script: MCP_CALL_SCRIPT, rulesOn });
      else oidcProxies.push({ key, label, entry });
    }
    say(
      `oidc mode: dev IdP at ${idp.issuer}, ${cfg.redisUrl ? `SESSION_STORE=redis (${cfg.redisUrl})` : 'SESSION_STORE=memory'}; tokens through each proxy's OAuth flow`,
    );
    if (mcpProxies.length)
      say(
        `mcp inspection: POST /mcp tools/call (bench/mcp-call.lua) through two oidc proxies, MCP_ACCESS unset and ${JSON.stringify(BENCH_MCP_ACCESS)}`,
      );
  }
  say('throughput/latency (GET /mcp, ~100-byte JSON answer):');

  let floor;
  if (cfg.floor) {
    floor = spawnChild('floor', process.execPath, [path.join(benchDir, 'floor-proxy.mjs')], {
      env: { FLOOR_TARGET: `http://127.0.0.1:${backend.port}` },
    });
    floor.child.stderr.pipe(logFile('floor'));
    floor.port = (await jsonLine(floor, (o) => typeof o.port === 'number', 10_000)).port;
  }
  // The access log on (LOG_LEVEL=info), written to a file as it would be to a log collector.
  const infoProxies = [];
  if (cfg.info) {
    const builds = [['proxy_info', 'proxy (info log)', root]];
    if (baseline) builds.push(['baseline_info', 'baseline (info log)', cfg.baseline]);
    for (const [key, label, build] of builds) {
      const entry = await startProxy(key.replace('_', '-'), backend.port, {
        logLevel: 'info',
        nofile,
        build,
      });
      infoProxies.push([key, label, entry, true]);
    }
  }
  const watch = [
    proxy,
    nginx,
    backend,
    ...(baseline ? [baseline] : []),
    ...(floor ? [floor] : []),
    ...infoProxies.map(([, , entry]) => entry),
    ...oidcProxies.map((o) => o.entry),
    ...mcpProxies.map((o) => o.entry),
  ];
  // Pairs of targets compared with each other (this build, the baseline) run back to back, in
  // turn first and second from round to round, so a drift of the machine's load hits both.
  const groups = [
    [['direct', 'direct backend', backend]],
    [['nginx', 'nginx', nginx]],
    [
      ['proxy', 'proxy (warn)', proxy, true],
      ...(baseline ? [['baseline', 'baseline (warn)', baseline, true]] : []),
    ],
    ...(floor ? [[['floor', 'node+undici floor', floor, true]]] : []),
    ...(infoProxies.length ? [infoProxies] : []),
    ...(oidcProxies.length ? [oidcProxies.map((o) => [o.key, o.label, o.entry, true, o])] : []),
    ...(mcpProxies.length ? [mcpProxies.map((o) => [o.key, o.label, o.entry, true, o])] : []),
  ];
  const rounds = Object.fromEntries(groups.flat().map(([key]) => [key, []]));
  // RSS again once the proxies sat idle while direct and nginx were measured (V8 trims its heap
  // after some seconds without work): what a proxy waiting for traffic holds.
  let settledRss;
  for (let round = 1; round <= (sectionsOnly ? 0 : cfg.rounds); round++) {
    if (cfg.rounds > 1) say(` round ${round}/${cfg.rounds}`);
    for (const group of groups) {
      if (!settledRss && group.some(([key]) => key === 'proxy')) {
        settledRss = { proxy: rssKb(proxy.child.pid), baseline: baseline && rssKb(baseline.child.pid) };
        say(
          `  (RSS after ${Math.round((cfg.warmup + cfg.duration) * 2)} s idle: proxy ${mb(settledRss.proxy)} MB${baseline ? `, baseline ${mb(settledRss.baseline)} MB` : ''})`,
        );
      }
      for (const [key, label, entry, ours, oidcProxy] of round % 2 === 0 ? [...group].reverse() : group) {
        const url = `http://127.0.0.1:${entry.port}/mcp`;
        const headers = [];
        if (oidcProxy) {
          const token = await freshToken(oidcProxy);
          headers.push(`Authorization: Bearer ${token}`);
          if (oidcProxy.script) await expectMcpTarget(label, url, token, oidcProxy.rulesOn);
          else await expectOk(label, url, { authorization: `Bearer ${token}` });
        } else await expectOk(label, url);
        rounds[key].push(
          await measure(wrkBin, label, url, cfg, watch, {
            server: ours ? entry : undefined,
            headers,
            script: oidcProxy?.script,
          }),
        );
      }
    }
  }
  const results = Object.fromEntries(Object.entries(rounds).map(([k, runs]) => [k, medianRun(runs)]));
  const afterLoadRss = rssKb(proxy.child.pid);

  let openLoop;
  let tail;
  if (cfg.openLoop) {
    const oidcTarget = oidcProxies.find((o) => o.key === 'oidc');
    const bearer = async (o) => ({ authorization: `Bearer ${await freshToken(o)}` });
    const url = (entry) => `http://127.0.0.1:${entry.port}/mcp`;
    const targets = [
      { key: 'direct', label: 'direct backend', url: url(backend), headers: {} },
      { key: 'nginx', label: 'nginx', url: url(nginx), headers: {} },
      { key: 'proxy', label: 'proxy bypass', url: url(proxy), headers: {} },
      ...(oidcTarget
        ? [
            {
              key: 'oidc',
              label: 'proxy oidc + bearer',
              url: url(oidcTarget.entry),
              headers: await bearer(oidcTarget),
            },
          ]
        : []),
    ];
    say();
    openLoop = await openLoopBench(harness(), openCfg, targets);
    if (tracedProxy) {
      say();
      // A cold bypass proxy next to it: a cold start without token checks, for comparison.
      const bypassLog = path.join(logDir, 'proxy-bypass-gc.jsonl');
      const coldBypass = await startProxy('proxy-bypass-traced', backend.port, {
        nofile,
        nodeArgs: ['--import', pathToFileURL(path.join(benchDir, 'gc-observer.mjs')).href],
        env: { BENCH_GC_LOG: bypassLog },
      });
      tail = await tailHunt(harness(), openCfg, {
        bypass: { label: 'proxy bypass (GC observed)', url: url(coldBypass), proxyLog: bypassLog },
        label: tracedProxy.label,
        url: url(tracedProxy.entry),
        headers: await bearer(tracedProxy),
        proxyLog: gcLog,
        backendLog: backendGcLog,
      });
      await stop(coldBypass);
    }
  }
  await stop(tracedProxy?.entry);
  let workers;
  if (cfg.workers) {
    say();
    workers = await workersBench(harness(), workersCfg, {
      backend,
      nginxBin,
      connections: cfg.connections,
      threads: cfg.threads,
      redisUrl: workersRedisUrl,
    });
  }
  const printSections = () => {
    if (openLoop) {
      say();
      say(`=== open-loop latency at ${openCfg.rate} req/s ===`);
      printOpenLoop(harness(), openLoop);
    }
    if (tail) {
      say();
      say('=== tail hunt ===');
      printTail(harness(), tail);
    }
    if (workers) {
      say();
      say('=== multi-core ===');
      printWorkers(harness(), workers);
    }
  };
  if (sectionsOnly) {
    printSections();
    const json = {
      date: new Date().toISOString(),
      machine,
      proxy_build: build,
      open_loop: openLoop,
      tail,
      workers,
    };
    writeFileSync(path.join(outDir, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
    say(
      `\nwrote ${path.relative(root, path.join(outDir, 'latest.json'))} (child logs in ${path.relative(root, logDir)}/)`,
    );
    return;
  }
  await Promise.all([
    stop(floor),
    stop(baseline),
    ...infoProxies.map(([, , entry]) => stop(entry)),
    ...oidcProxies.map((o) => stop(o.entry)),
    ...mcpProxies.map((o) => stop(o.entry)),
  ]);

  let sse;
  if (cfg.sseConnections > 0) {
    say(`SSE hold: ${cfg.sseConnections} concurrent streams through the proxy, one event/s each:`);
    sse = await sseHold(proxy, backend, cfg, nofile);
    say(
      `  held ${sse.held}/${sse.connections}, dropped ${sse.dropped}; events in hold per stream min/median/max ${sse.events_per_conn_in_hold.min}/${sse.events_per_conn_in_hold.median}/${sse.events_per_conn_in_hold.max} (expected ~${sse.expected_per_conn})`,
    );
  }
  await stop(proxy);

  let profile;
  if (cfg.profile) {
    const profDir = path.join(outDir, 'profile');
    rmSync(profDir, { recursive: true, force: true });
    mkdirSync(profDir, { recursive: true });
    const p = await startProxy('proxy-profile', backend.port, {
      logLevel: 'warn',
      nofile,
      nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${profDir}`],
    });
    results.proxy_profiled = await measure(
      wrkBin,
      'proxy (--cpu-prof)',
      `http://127.0.0.1:${p.port}/mcp`,
      { ...cfg, warmup: 0 },
      [p, nginx, backend],
      { server: p },
    );
    await stop(p, 10_000);
    const file = readdirSync(profDir).find((f) => f.endsWith('.cpuprofile'));
    if (file) {
      const { summarise, printSummary } = await import('./profile-top.mjs');
      profile = summarise(path.join(profDir, file), 15);
      say();
      printSummary(profile);
    } else say('  (no .cpuprofile written: did the proxy exit cleanly?)');
  }

  const stdio = cfg.stdio ? await stdioBench(harness(), stdioCfg) : undefined;

  // ------------------------------------------------------------ verdicts
  const d = results.direct;
  const n = results.nginx;
  const pr = results.proxy;
  const ratios = {
    proxy_vs_nginx_throughput: Math.round((pr.rps / n.rps) * 1000) / 1000,
    proxy_vs_direct_throughput: Math.round((pr.rps / d.rps) * 1000) / 1000,
    nginx_vs_direct_throughput: Math.round((n.rps / d.rps) * 1000) / 1000,
    proxy_p99_added_vs_direct_ms: Math.round((pr.p99_ms - d.p99_ms) * 1000) / 1000,
    proxy_p99_added_vs_nginx_ms: Math.round((pr.p99_ms - n.p99_ms) * 1000) / 1000,
    nginx_p99_added_vs_direct_ms: Math.round((n.p99_ms - d.p99_ms) * 1000) / 1000,
    proxy_p50_added_vs_direct_ms: Math.round((pr.p50_ms - d.p50_ms) * 1000) / 1000,
  };
  if (results.floor) {
    ratios.floor_vs_nginx_throughput = Math.round((results.floor.rps / n.rps) * 1000) / 1000;
    ratios.proxy_vs_floor_throughput = Math.round((pr.rps / results.floor.rps) * 1000) / 1000;
  }
  if (results.proxy_info) {
    ratios.proxy_info_vs_nginx_throughput = Math.round((results.proxy_info.rps / n.rps) * 1000) / 1000;
    ratios.proxy_info_p99_added_vs_direct_ms =
      Math.round((results.proxy_info.p99_ms - d.p99_ms) * 1000) / 1000;
  }
  if (results.oidc) {
    ratios.oidc_vs_proxy_throughput = pairedRatio(rounds.oidc, rounds.proxy, 'rps');
    ratios.oidc_vs_nginx_throughput = Math.round((results.oidc.rps / n.rps) * 1000) / 1000;
    if (results.floor) ratios.oidc_vs_floor_throughput = pairedRatio(rounds.oidc, rounds.floor, 'rps');
  }
  if (results.floor) ratios.proxy_vs_floor_throughput_paired = pairedRatio(rounds.proxy, rounds.floor, 'rps');
  /** Throughput and CPU-per-request ratios a/b, round by round, of the pairs both measured: those pairs. */
  const pairRatios = (pairs) => {
    const measured = pairs.filter(([a, b]) => rounds[a] && rounds[b]);
    for (const [a, b] of measured) {
      ratios[`${a}_vs_${b}_throughput`] = pairedRatio(rounds[a], rounds[b], 'rps');
      ratios[`${a}_vs_${b}_cpu_per_request`] = pairedRatio(rounds[a], rounds[b], 'cpu_us_per_request');
    }
    return measured;
  };
  // This build against the baseline, round by round: throughput and CPU time per request.
  const vsBaseline = pairRatios([
    ['proxy', 'baseline'],
    ['proxy_info', 'baseline_info'],
    ['oidc', 'oidc_baseline'],
  ]);
  // The MCP inspection stage: rules on against rules off, and each POST target against the GET bearer target.
  pairRatios([
    ['oidc_mcp_rules_on', 'oidc_mcp_rules_off'],
    ['oidc_mcp_rules_off', 'oidc'],
    ['oidc_mcp_rules_on', 'oidc'],
  ]);
  const checks = [
    {
      name: `throughput proxy/nginx >= ${TARGETS.throughputVsNginx}x at ${cfg.connections} connections`,
      value: `${fmt(ratios.proxy_vs_nginx_throughput, 3)}x`,
      pass: ratios.proxy_vs_nginx_throughput >= TARGETS.throughputVsNginx,
    },
    {
      name: `p99 added by the proxy vs direct <= ${TARGETS.p99AddedMs} ms`,
      value: `${fmt(ratios.proxy_p99_added_vs_direct_ms)} ms`,
      pass: ratios.proxy_p99_added_vs_direct_ms <= TARGETS.p99AddedMs,
    },
    {
      name: `idle RSS <= ${TARGETS.idleRssMb} MB`,
      value: `${fmt(mb(idleRss), 1)} MB`,
      pass: idleRss !== undefined && mb(idleRss) <= TARGETS.idleRssMb,
    },
  ];
  if (sse)
    checks.push({
      name: `${TARGETS.sseStreams} concurrent SSE streams held, none dropped`,
      value: `${sse.held}/${sse.connections} held, ${sse.dropped} dropped`,
      pass: sse.connections >= TARGETS.sseStreams && sse.dropped === 0,
    });

  say();
  say('=== results ===');
  const rows = [
    ['direct backend', d],
    ['nginx', n],
    ['proxy (LOG_LEVEL=warn)', pr],
  ];
  if (results.baseline) rows.push(['baseline (LOG_LEVEL=warn)', results.baseline]);
  if (results.proxy_info) rows.push(['proxy (LOG_LEVEL=info)', results.proxy_info]);
  if (results.baseline_info) rows.push(['baseline (LOG_LEVEL=info)', results.baseline_info]);
  if (results.oidc) rows.push(['proxy oidc, bearer token', results.oidc]);
  if (results.oidc_baseline) rows.push(['baseline oidc, bearer token', results.oidc_baseline]);
  if (results.oidc_mcp_rules_off)
    rows.push(['proxy oidc + bearer, POST tools/call, rules off', results.oidc_mcp_rules_off]);
  if (results.oidc_mcp_rules_on)
    rows.push(['proxy oidc + bearer, POST tools/call, rules on', results.oidc_mcp_rules_on]);
  if (results.floor) rows.push(['node+undici floor (ref.)', results.floor]);
  if (results.proxy_profiled) rows.push(['proxy (--cpu-prof)', results.proxy_profiled]);
  table(rows);
  say();
  say(
    `  throughput  proxy/nginx ${fmt(ratios.proxy_vs_nginx_throughput, 3)}x   proxy/direct ${fmt(ratios.proxy_vs_direct_throughput, 3)}x   nginx/direct ${fmt(ratios.nginx_vs_direct_throughput, 3)}x`,
  );
  say(
    `  p99 added   proxy vs direct ${fmt(ratios.proxy_p99_added_vs_direct_ms)} ms   proxy vs nginx ${fmt(ratios.proxy_p99_added_vs_nginx_ms)} ms   nginx vs direct ${fmt(ratios.nginx_p99_added_vs_direct_ms)} ms`,
  );
  if (results.floor)
    say(
      `  reference   bare node:http+undici proxy (bench/floor-proxy.mjs): floor/nginx ${fmt(ratios.floor_vs_nginx_throughput, 3)}x   proxy/floor ${fmt(ratios.proxy_vs_floor_throughput, 3)}x`,
    );
  if (results.oidc)
    say(
      `  oidc        bearer token checked on every request: oidc/bypass ${fmt(ratios.oidc_vs_proxy_throughput, 3)}x   oidc/floor ${fmt(ratios.oidc_vs_floor_throughput, 3)}x   oidc/nginx ${fmt(ratios.oidc_vs_nginx_throughput, 3)}x`,
    );
  if (results.oidc_mcp_rules_on) {
    const r = (a, b, what) => fmt(ratios[`${a}_vs_${b}_${what}`], 3);
    say(
      `  mcp inspection: rules on / rules off (POST tools/call, median of per-round ratios): throughput ${r('oidc_mcp_rules_on', 'oidc_mcp_rules_off', 'throughput')}x   CPU per request ${r('oidc_mcp_rules_on', 'oidc_mcp_rules_off', 'cpu_per_request')}x`,
    );
    say(
      `              POST rules off / GET bearer: throughput ${r('oidc_mcp_rules_off', 'oidc', 'throughput')}x   CPU per request ${r('oidc_mcp_rules_off', 'oidc', 'cpu_per_request')}x;   POST rules on / GET bearer: throughput ${r('oidc_mcp_rules_on', 'oidc', 'throughput')}x   CPU per request ${r('oidc_mcp_rules_on', 'oidc', 'cpu_per_request')}x`,
    );
  }
  for (const [a, b] of vsBaseline)
    say(
      `  vs baseline ${a}/${b} (median of per-round ratios): throughput ${fmt(ratios[`${a}_vs_${b}_throughput`], 3)}x   CPU per request ${fmt(ratios[`${a}_vs_${b}_cpu_per_request`], 3)}x`,
    );
  if (results.proxy_info)
    say(
      `  info log    proxy/nginx ${fmt(ratios.proxy_info_vs_nginx_throughput, 3)}x   p99 added vs direct ${fmt(ratios.proxy_info_p99_added_vs_direct_ms)} ms`,
    );
  say(
    `  proxy RSS   idle ${fmt(mb(idleRss), 1)} MB (${fmt(mb(settledRss?.proxy), 1)} MB after sitting idle)   after load ${fmt(mb(afterLoadRss), 1)} MB${sse ? `   holding ${sse.connections} SSE: ${fmt(sse.proxy_rss_mid_hold_mb, 1)} MB (max ${fmt(sse.proxy_rss_max_mb, 1)} MB)` : ''}${baselineRss ? `   baseline idle ${fmt(mb(baselineRss.idleRss), 1)} MB (${fmt(mb(settledRss?.baseline), 1)} MB)` : ''}`,
  );
  if (sse) {
    const f = Object.entries(sse.failures)
      .filter(([, v]) => v)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    say(
      `  SSE         ${sse.status_200}/${sse.connections} answered 200, ${sse.held} held ${sse.hold_ms} ms, ${sse.events_in_hold} events received in hold` +
        ` (per stream min/median/max ${sse.events_per_conn_in_hold.min}/${sse.events_per_conn_in_hold.median}/${sse.events_per_conn_in_hold.max}), worst gap ${sse.worst_gap_ms} ms` +
        `${sse.backend_streams_mid_hold !== undefined ? `, backend saw ${sse.backend_streams_mid_hold} streams` : ''}${f ? `; failures: ${f}` : ''}`,
    );
    const probe = sse.plain_request_during_hold;
    say(
      `              plain GET /mcp through the proxy while holding: ${probe.status ? `${probe.status} in ${probe.ms} ms` : `no answer (${probe.error}) after ${probe.ms} ms`}`,
    );
  }
  if (stdio) {
    say();
    say('=== stdio ===');
    printStdio(harness(), stdio);
  }
  printSections();
  say();
  say('=== targets ===');
  for (const c of checks) say(`  ${verdict(c.pass)}  ${c.name}: ${c.value}`);
  const missed = checks.filter((c) => !c.pass).length;
  say(missed ? `  ${missed} target(s) missed (reported, not a harness error)` : '  all targets met');

  const json = {
    date: new Date().toISOString(),
    settings: cfg,
    machine: { ...machine, loadavg_end: os.loadavg().map((x) => Math.round(x * 100) / 100) },
    proxy_build: build,
    open_files: { ...limits, raised_to: nofile ?? null },
    results: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { ...v, wrk_text: undefined }])),
    wrk_text: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.wrk_text])),
    ratios,
    mcp_access_rules: cfg.mcp ? BENCH_MCP_ACCESS : undefined,
    proxy_rss_mb: {
      start: mb(startRss),
      idle: mb(idleRss),
      idle_settled: mb(settledRss?.proxy),
      baseline_start: mb(baselineRss?.startRss),
      baseline_idle: mb(baselineRss?.idleRss),
      baseline_idle_settled: mb(settledRss?.baseline),
      after_load: mb(afterLoadRss),
      sse_mid_hold: sse?.proxy_rss_mid_hold_mb,
      sse_max: sse?.proxy_rss_max_mb,
    },
    sse,
    stdio,
    open_loop: openLoop,
    tail,
    workers,
    targets: checks,
    profile,
  };
  writeFileSync(path.join(outDir, 'latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  say(
    `\nwrote ${path.relative(root, path.join(outDir, 'latest.json'))} (child logs in ${path.relative(root, logDir)}/)`,
  );
}

try {
  await main();
} catch (err) {
  if (interrupted) await new Promise(() => {}); // the signal handler cleans up and exits
  process.stderr.write(`\nbench: harness error: ${err instanceof HarnessError ? err.message : err.stack}\n`);
  for (const f of ['proxy', 'proxy-info', 'backend', 'nginx-stderr']) {
    const t = readIf(path.join(logDir, `${f}.log`)).trim();
    const tail = t
      .split('\n')
      .slice(-8)
      .map((l) => l.slice(0, 300))
      .join('\n');
    if (t) process.stderr.write(`--- .bench/logs/${f}.log (tail)\n${tail}\n`);
  }
  process.exitCode = 1;
} finally {
  await cleanup();
}
