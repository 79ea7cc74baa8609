#!/usr/bin/env node
// Start-up time and idle memory of the proxy, as a process that a service manager starts.
//
//   npm run build && npm run build:binary && node bench/start.mjs
//
// Figures and method: docs/performance.md, "Start and memory".
//
// Each target is started START_RUNS times, the targets taken in turn (round robin, so a slow
// patch of a shared machine falls on all of them alike). Per start: the time from spawn to the
// first 200 on GET /health (polled every START_POLL_MS over fresh connections), then VmRSS once
// the process sat idle for START_IDLE_MS after that answer; then SIGTERM and wait for the exit.
// Targets:
//   binary bypass   dist/bin/mcp-oidc-proxy-linux-x64, AUTH_MODE=bypass, an HTTP target (a
//                   node:http backend in this process)
//   binary oidc     the same binary, AUTH_MODE=oidc, SESSION_STORE=redis: healthy once the store
//                   is claimed and the identity provider's discovery came back (the dev IdP,
//                   dist/demo/dev-idp.js, in this process)
//   node bypass / node oidc   `node dist/cli/main.js` (START_NODE, default this Node) the same way
// Also the CPU time (user + system) the process had used by its first healthy answer, which a busy
// machine inflates much less than the wall time. Prints median, min and max per target; writes
// .bench/start.json. Bounded: every start has START_TIMEOUT_MS, every child is killed on exit,
// error or signal.
//
// Settings (environment):
//   START_RUNS=10            starts per target (1-50)
//   START_IDLE_MS=1000       idle time before VmRSS is read
//   START_POLL_MS=2          /health poll interval
//   START_TIMEOUT_MS=10000   a start that is not healthy by then fails the run
//   START_TARGETS=all        comma list of: binary-bypass, binary-oidc, node-bypass, node-oidc
//   START_NODE=              the Node for the node targets (default: the one running this script)
//   START_REDIS_URL=redis://127.0.0.1:6379   the oidc targets' store (keys under a prefix of this run)
//   START_BINARY=            the binary (default dist/bin/mcp-oidc-proxy-linux-x64)
//   START_NODE_ARGS=         extra Node flags for the node targets (space-separated)
//   START_BASELINE=DIR       also start another build (DIR/dist/bin/... and DIR/dist/cli/main.js, e.g. a
//                            copy of dist/ from before a change) as `base:<target>`, right after each target
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const num = (name, def, min, max) => {
  const raw = process.env[name];
  const v = raw === undefined || raw === '' ? def : Number(raw);
  if (!Number.isFinite(v) || v < min || v > max) {
    console.error(`${name} must be a number from ${min} to ${max} (got ${raw})`);
    process.exit(1);
  }
  return v;
};
const RUNS = num('START_RUNS', 10, 1, 50);
const IDLE_MS = num('START_IDLE_MS', 1000, 0, 60_000);
const POLL_MS = num('START_POLL_MS', 2, 1, 1000);
const TIMEOUT_MS = num('START_TIMEOUT_MS', 10_000, 1000, 120_000);
const NODE = process.env.START_NODE || process.execPath;
const NODE_ARGS = (process.env.START_NODE_ARGS ?? '').split(' ').filter(Boolean);
const REDIS_URL = process.env.START_REDIS_URL || 'redis://127.0.0.1:6379';
const BINARY = process.env.START_BINARY || path.join(root, 'dist/bin/mcp-oidc-proxy-linux-x64');
const ALL_TARGETS = ['binary-bypass', 'binary-oidc', 'node-bypass', 'node-oidc'];
const TARGETS =
  (process.env.START_TARGETS || 'all') === 'all' ? ALL_TARGETS : process.env.START_TARGETS.split(',');
for (const t of TARGETS) {
  if (!ALL_TARGETS.includes(t)) {
    console.error(`START_TARGETS: unknown target ${t} (one of ${ALL_TARGETS.join(', ')})`);
    process.exit(1);
  }
}
if (TARGETS.some((t) => t.startsWith('binary')) && !existsSync(BINARY)) {
  console.error(`${BINARY} does not exist: run \`npm run build:binary\` first`);
  process.exit(1);
}
const cli = path.join(root, 'dist/cli/main.js');
const BASELINE = process.env.START_BASELINE ? path.resolve(process.env.START_BASELINE) : undefined;
/** The binary and the CLI entry of a build: this one, or the baseline's. */
const builds = [{ label: '', binary: BINARY, cli }];
if (BASELINE) {
  if (!existsSync(path.join(BASELINE, 'dist/cli/main.js'))) {
    console.error(`START_BASELINE: ${BASELINE}/dist/cli/main.js does not exist`);
    process.exit(1);
  }
  builds.push({
    label: 'base:',
    binary: path.join(BASELINE, 'dist/bin/mcp-oidc-proxy-linux-x64'),
    cli: path.join(BASELINE, 'dist/cli/main.js'),
  });
}
if (TARGETS.some((t) => t.startsWith('node') || t.endsWith('oidc')) && !existsSync(cli)) {
  console.error(`${cli} does not exist: run \`npm run build\` first`);
  process.exit(1);
}

// Each binary runs from a fresh copy, as an installed one would: a file just written by the build
// (postject) is mapped differently by the page cache and shows ~15 MB more file-backed RSS.
const copies = mkdtempSync(path.join(os.tmpdir(), 'mcp-oidc-proxy-start-'));
for (const [i, build] of builds.entries()) {
  if (!TARGETS.some((t) => t.startsWith('binary'))) break;
  const copy = path.join(copies, `mcp-oidc-proxy-${i}`);
  copyFileSync(build.binary, copy);
  build.binary = copy;
}

const children = new Set();
const killAll = () => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(copies, { recursive: true, force: true });
};
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
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

/** The status of one GET over a fresh connection, or undefined when nothing listens yet. */
function status(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode));
    });
    req.once('error', () => resolve(undefined));
    req.setTimeout(2000, () => req.destroy());
  });
}

const TICKS_PER_S = 100; // USER_HZ, 100 on Linux

/**
 * The CPU time (user + system) a process used so far, in ms: moves much less than wall time when
 * other jobs share the machine.
 */
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
}

/** VmRSS, and its anonymous (heap) and file-backed (the executable's pages) parts, in MB. */
function memoryMb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)?.[1]) / 1024;
  return { rss: field('VmRSS'), anon: field('RssAnon'), file: field('RssFile') };
}

/** One start: ms from spawn to the first healthy /health, and VmRSS after IDLE_MS of idling. */
async function startOnce(command, args, env, port) {
  let stderr = '';
  const started = performance.now();
  const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  children.add(child);
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const exited = new Promise((resolve) => child.once('close', resolve));
  try {
    let ms;
    while (ms === undefined) {
      if (child.exitCode !== null) throw new Error(`exited with ${child.exitCode}:\n${stderr}`);
      if (performance.now() - started > TIMEOUT_MS)
        throw new Error(`not healthy in ${TIMEOUT_MS} ms:\n${stderr}`);
      if ((await status(`http://127.0.0.1:${port}/health`)) === 200) ms = performance.now() - started;
      else await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const cpu = cpuMs(child.pid);
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const memory = memoryMb(child.pid);
    child.kill('SIGTERM');
    await exited;
    return { ms, cpu, ...memory };
  } finally {
    child.kill('SIGKILL');
    children.delete(child);
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
};

// The HTTP target of the bypass proxies: answers everything with a small JSON body.
const backend = http.createServer((_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
});
await new Promise((r) => backend.listen(0, '127.0.0.1', r));
const backendUrl = `http://127.0.0.1:${backend.address().port}`;

// The identity provider of the oidc proxies (only discovery is used: nobody logs in).
let idp;
const clientSecret = randomBytes(16).toString('hex');
if (TARGETS.some((t) => t.endsWith('oidc'))) {
  const { startDevIdp } = await import(pathToFileURL(path.join(root, 'dist/demo/dev-idp.js')).href);
  idp = await startDevIdp({
    clients: [
      {
        client_id: 'mcp-oidc-proxy',
        client_secret: clientSecret,
        redirect_uris: ['http://127.0.0.1/callback'],
      },
    ],
  });
}
// One prefix and secret per run: this run's keys never meet another's.
const redisPrefix = `start-bench-${randomBytes(4).toString('hex')}:`;
const sessionSecret = randomBytes(32).toString('hex');

function envFor(target, port) {
  const common = {
    PATH: process.env.PATH ?? '',
    SERVER_HOST: '127.0.0.1',
    SERVER_PORT: String(port),
    LOG_LEVEL: 'warn',
  };
  if (target.endsWith('bypass')) return { ...common, AUTH_MODE: 'bypass', PROXY_TARGET_URL: backendUrl };
  return {
    ...common,
    AUTH_MODE: 'oidc',
    PUBLIC_URL: `http://127.0.0.1:${port}`,
    PROXY_TARGET_URL: backendUrl,
    OIDC_DISCOVERY_URL: `${idp.issuer}/.well-known/openid-configuration`,
    OIDC_CLIENT_ID: 'mcp-oidc-proxy',
    OIDC_CLIENT_SECRET: clientSecret,
    SESSION_STORE: 'redis',
    REDIS_URL: REDIS_URL,
    REDIS_KEY_PREFIX: redisPrefix,
    SESSION_SECRET: sessionSecret,
  };
}

const results = {};
try {
  for (let run = 0; run < RUNS; run++) {
    for (const target of TARGETS) {
      // This build and the baseline take turns at going first.
      const order = run % 2 ? [...builds].reverse() : builds;
      for (const build of order) {
        const port = await freePort();
        const [command, args] = target.startsWith('binary')
          ? [build.binary, []]
          : [NODE, [...NODE_ARGS, build.cli]];
        const r = await startOnce(command, args, envFor(target, port), port);
        const key = `${build.label}${target}`;
        results[key] ??= [];
        results[key].push(r);
        process.stderr.write(
          `run ${run + 1}/${RUNS} ${key}: ${r.ms.toFixed(0)} ms, ${r.rss.toFixed(1)} MB\n`,
        );
      }
    }
  }
} finally {
  backend.close();
  await idp?.close();
}

const nodeVersion = await new Promise((resolve) => {
  const c = spawn(NODE, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  c.stdout.on('data', (d) => {
    out += d;
  });
  c.once('close', () => resolve(out.trim()));
});
const fmt = (xs, digits) =>
  `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
console.log(
  `\nstart to first healthy /health and VmRSS after ${IDLE_MS} ms idle; ${RUNS} starts each, median (min–max)`,
);
console.log(`node targets: ${NODE} ${nodeVersion}`);
for (const [target, rs] of Object.entries(results)) {
  console.log(
    `${target.padEnd(19)} start ${fmt(
      rs.map((r) => r.ms),
      0,
    )} ms, CPU ${median(rs.map((r) => r.cpu)).toFixed(0)} ms   RSS ${fmt(
      rs.map((r) => r.rss),
      1,
    )} MB (anon ${median(rs.map((r) => r.anon)).toFixed(1)}, file ${median(rs.map((r) => r.file)).toFixed(1)})`,
  );
}
mkdirSync(path.join(root, '.bench'), { recursive: true });
writeFileSync(
  path.join(root, '.bench/start.json'),
  `${JSON.stringify({ runs: RUNS, idleMs: IDLE_MS, node: nodeVersion, results }, null, 2)}\n`,
);
