#!/usr/bin/env node
// Soak with faults: two proxy instances (dist/cli/main.js, separate processes) in oidc mode on one Redis,
// in front of one MCP backend, under steady load for SOAK_DURATION, while faults are injected on a timetable.
//
//   npm run build && npm run soak                      (10 minutes, 1,000 streams)
//   SOAK_DURATION=60 SOAK_STREAMS=200 npm run soak     (the CI run)
//
// Everything runs on loopback: an own redis-server (AOF on, so a restart keeps the data, as a production
// Redis would), the backend (soak/backend.mjs, own process: SSE streams with per-stream event ids, and
// tools/call answers), the dev IdP (in this process, behind soak/idp-front.mjs: a relay that can hold its
// token endpoint back), the
// front door (soak/front-door.mjs: PUBLIC_URL, a TCP balancer over both instances) and the two proxies.
//
// Why oidc mode throughout (not bypass): the faults are about what the instances share through Redis
// (sessions, tokens, clients). Tokens come from the real flow, through the front door: a login (DCR, PKCE,
// the IdP's login form, consent, code exchange) at the start and every SOAK_LOGIN_INTERVAL, and a refresh
// every SOAK_REFRESH_INTERVAL; the streams and calls always use the newest access token, so tokens minted
// by either instance are used on both. One user holds all the streams: the load is on the proxies' stream
// handling, not on the IdP.
//
// Load: SOAK_STREAMS SSE streams spread over both instances (stream i is homed on instance i % 2), plus
// SOAK_CALLS_PER_SECOND tools/call POSTs (alternating instances), plus probes every 0.5 s that must be
// refused: no token, a forged token (401), and the login's browser session cookie (must be let through).
// Every SOAK_SAMPLE seconds the RSS and open fds of each proxy are read from /proc.
//
// Faults (each logged with its time): kill -9 of instance B (its streams break and reconnect to A, the
// tokens and the cookie keep working there; B is started again later), a Redis restart (requests that need
// the store get 503 until it is back, then recover without touching the proxies), a backend flap (stopped
// and started twice: 502/503, then recovery), a slow IdP (SOAK_IDP_DELAY_MS on its token endpoint: logins
// are slower and still succeed).
//
// Invariants (exit status 1 when one fails): 0 events lost on streams that stayed open (every event the
// backend wrote arrives, in order, no gaps), no gap or reordering on any connection, no status outside the
// allowed ones (200 always; 503 while Redis or the backend is down and SOAK_RECOVERY after; 502 while the
// backend is down and after; connection refused only by the killed instance while it is down), no refused
// request reaching the backend, no stream break outside a fault, each fault recovered from within
// SOAK_RECOVERY seconds, and instance A's RSS and open fds (less two per stream it holds) no higher at the
// end than after the warm-up by more than SOAK_MAX_RSS_GROWTH_MB / SOAK_MAX_FD_GROWTH.
// Exit status 2: the harness itself failed (a component did not start, ...).
//
// Settings (environment):
//   SOAK_DURATION=600          seconds of load (suffix s or m accepted: 60s, 10m)
//   SOAK_STREAMS=1000          SSE streams held                SOAK_EVENT_INTERVAL_MS=1000  per stream
//   SOAK_CALLS_PER_SECOND=4    tools/call rate                 SOAK_SAMPLE=5 (2)  seconds between samples
//   (in parentheses: the default of a run shorter than 3 minutes)
//   SOAK_LOGIN_INTERVAL=30 (8) SOAK_REFRESH_INTERVAL=15 (5)    seconds between logins / refreshes
//   SOAK_REDIS_DOWN=5          SOAK_BACKEND_DOWN=3 (2)         seconds each stays down
//   SOAK_IDP_DELAY_MS=3000     delay on the IdP's token endpoint while it is slow
//   SOAK_RECOVERY=30           seconds a fault may take to recover from
//   SOAK_MAX_RSS_GROWTH_MB=64  SOAK_MAX_FD_GROWTH=32
//   SOAK_REPORT_MD=            also write the Markdown report to this path (always: .soak/latest.md)
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { obtainTokens } from '../scripts/oauth-token.mjs';
import { startFrontDoor } from './front-door.mjs';
import { startIdpFront } from './idp-front.mjs';
import {
  accepts,
  firstJsonLine,
  freePorts,
  procUsage,
  sleep,
  startChild,
  stopChild,
  waitFor,
} from './processes.mjs';
import { Faults, Ledger, markdownReport, printSummary } from './report.mjs';
import { StreamPool } from './streams.mjs';

const soakDir = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(soakDir, '..');
const outDir = path.join(root, '.soak');
const logDir = path.join(outDir, 'logs');

class HarnessError extends Error {}

function seconds(name, def) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const m = /^(\d+(?:\.\d+)?)(s|m)?$/.exec(raw.trim());
  if (!m) throw new HarnessError(`${name} must be a number of seconds (or 60s, 10m), got "${raw}"`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
}
function count(name, def, min = 0) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return def;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min)
    throw new HarnessError(`${name} must be an integer >= ${min}, got "${raw}"`);
  return n;
}

const cfg = {
  durationS: seconds('SOAK_DURATION', 600),
  streams: count('SOAK_STREAMS', 1000, 1),
  eventIntervalMs: count('SOAK_EVENT_INTERVAL_MS', 1000, 10),
  callsPerSecond: count('SOAK_CALLS_PER_SECOND', 4, 1),
  sampleS: seconds('SOAK_SAMPLE', 0),
  loginIntervalS: seconds('SOAK_LOGIN_INTERVAL', 0),
  refreshIntervalS: seconds('SOAK_REFRESH_INTERVAL', 0),
  redisDownS: seconds('SOAK_REDIS_DOWN', 5),
  backendDownS: seconds('SOAK_BACKEND_DOWN', 0),
  idpDelayMs: count('SOAK_IDP_DELAY_MS', 3000),
  recoveryS: seconds('SOAK_RECOVERY', 30),
  maxRssGrowthMb: count('SOAK_MAX_RSS_GROWTH_MB', 64),
  maxFdGrowth: count('SOAK_MAX_FD_GROWTH', 32),
  reportMd: process.env.SOAK_REPORT_MD || undefined,
};
if (cfg.durationS < 30)
  throw new HarnessError('SOAK_DURATION must be at least 30 seconds (the faults need room)');
// Short runs sample, log in and refresh more often, so each phase still has a few of each.
const short = cfg.durationS < 180;
cfg.sampleS ||= short ? 2 : 5;
cfg.loginIntervalS ||= short ? 8 : 30;
cfg.refreshIntervalS ||= short ? 5 : 15;
cfg.backendDownS ||= short ? 2 : 3;

/** The fault timetable, in ms from the start of the load (the warm-up included). */
function timetable(durationMs) {
  const at = (f) => Math.round(durationMs * f);
  const killB = Math.max(at(0.2), 10_000);
  return {
    warmUpEnd: Math.max(at(0.1), 8_000),
    killB,
    restartB: killB + Math.max(at(0.08), 5_000),
    redisRestart: at(0.38),
    backendFlap: at(0.55),
    idpSlow: at(0.7),
    idpSlowFor: Math.max(at(0.08), 6_000),
    /** The final steady window: everything recovered, the same load spread as after the warm-up. */
    finalWindow: durationMs - Math.max(at(0.12), 8_000),
  };
}

const SECRET = randomBytes(24).toString('base64url');
const OIDC_CLIENT = { id: 'mcp-oidc-proxy-soak', secret: randomBytes(16).toString('hex') };
const log = (msg) => process.stdout.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------- components

function logFile(name) {
  return createWriteStream(path.join(logDir, `${name}.log`), { flags: 'a' });
}

function redisArgs(port, dir) {
  return ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'yes', '--dir', dir];
}

async function startBackend(port) {
  const entry = startChild('backend', process.execPath, [path.join(soakDir, 'backend.mjs')], {
    env: { BACKEND_PORT: String(port), SOAK_EVENT_INTERVAL_MS: String(cfg.eventIntervalMs) },
    output: logFile('backend'),
    pipeStdout: true,
  });
  await firstJsonLine(entry);
  return entry;
}

async function startProxy(name, port, { publicUrl, issuer, redisUrl, backendPort }) {
  const entry = startChild(name, process.execPath, [path.join(root, 'dist/cli/main.js')], {
    env: {
      AUTH_MODE: 'oidc',
      PUBLIC_URL: publicUrl,
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: String(port),
      PROXY_TARGET_URL: `http://127.0.0.1:${backendPort}`,
      OIDC_DISCOVERY_URL: `${issuer}/.well-known/openid-configuration`,
      OIDC_CLIENT_ID: OIDC_CLIENT.id,
      OIDC_CLIENT_SECRET: OIDC_CLIENT.secret,
      OIDC_SCOPES: 'openid email profile groups',
      SESSION_STORE: 'redis',
      REDIS_URL: redisUrl,
      SESSION_SECRET: SECRET,
      // The breaker's reset decides how soon a flapping backend is tried again (default 30 s).
      CIRCUIT_BREAKER_RESET_TIMEOUT: '5',
      // Every client of the soak comes from 127.0.0.1: one address for what would be many users.
      AUTH_RATE_LIMIT_PER_MINUTE: '600',
      LOG_LEVEL: 'warn',
    },
    output: logFile(name),
  });
  entry.port = port;
  await waitFor(
    `${name} /health`,
    async () => {
      if (entry.exited) throw new HarnessError(`${name} exited at start (see .soak/logs/${name}.log)`);
      return (await fetch(`http://127.0.0.1:${port}/health`)).status === 200;
    },
    20_000,
    200,
  );
  return entry;
}

// ---------------------------------------------------------------- the run

async function main() {
  if (!existsSync(path.join(root, 'dist/cli/main.js')))
    throw new HarnessError('dist/ is missing: run `npm run build` first');
  rmSync(logDir, { recursive: true, force: true });
  mkdirSync(logDir, { recursive: true });
  const redisDir = mkdtempSync(path.join(os.tmpdir(), 'soak-redis-'));
  process.on('exit', () => rmSync(redisDir, { recursive: true, force: true }));

  const durationMs = cfg.durationS * 1000;
  const plan = timetable(durationMs);
  const faults = new Faults(cfg.recoveryS * 1000);
  const ledger = new Ledger(faults);
  /** Stop the load (timers), then the components, in reverse order of start. */
  const load = [];
  const cleanups = [];

  const [redisPort, backendPort, frontPort, portA, portB, idpPort] = await freePorts(6);
  const publicUrl = `http://127.0.0.1:${frontPort}`;
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  log(
    `soak: ${cfg.durationS} s, ${cfg.streams} streams (1 event / ${cfg.eventIntervalMs} ms each), ` +
      `${cfg.callsPerSecond} calls/s, node ${process.version}, ${os.cpus().length} CPUs`,
  );

  try {
    let redis = startChild('redis', 'redis-server', redisArgs(redisPort, redisDir), {
      output: logFile('redis'),
    });
    await waitFor('redis-server', async () => !redis.exited && accepts(redisPort), 10_000);
    let backend = await startBackend(backendPort);

    // The slow-IdP fault: the relay in front of the IdP holds its token endpoint back (the proxy's code
    // exchange at every login) by idpDelayMs.
    let idpDelayMs = 0;
    const idpTarget = { port: 0 };
    const idpFront = await startIdpFront(idpPort, {
      target: () => idpTarget.port,
      delayMs: () => idpDelayMs,
    });
    cleanups.push(() => idpFront.close());
    const { startDevIdp } = await import(pathToFileURL(path.join(root, 'dist/demo/dev-idp.js')).href);
    const idp = await startDevIdp({
      issuerUrl: `http://127.0.0.1:${idpPort}`,
      clients: [
        {
          client_id: OIDC_CLIENT.id,
          client_secret: OIDC_CLIENT.secret,
          redirect_uris: [`${publicUrl}/callback`],
        },
      ],
    });
    cleanups.push(() => idp.close());
    idpTarget.port = Number(new URL(idp.url).port);

    const front = await startFrontDoor(frontPort, [portA, portB]);
    cleanups.push(() => front.close());
    const proxyOptions = { publicUrl, issuer: idp.issuer, redisUrl, backendPort };
    const proxies = await Promise.all([
      startProxy('proxy-a', portA, proxyOptions),
      startProxy('proxy-b', portB, proxyOptions),
    ]);
    cleanups.push(() => Promise.all(proxies.map((p) => stopChild(p))));
    const ports = () => [portA, portB];
    const down = [false, false];

    // ------------------------------------------------ credentials: the real flow, through the front door
    const redirectUri = 'http://127.0.0.1:1/soak-callback';
    let tokens = await obtainTokens(publicUrl, { redirectUri, clientName: 'soak client' });
    let cookie = tokens.cookie;
    if (!cookie) throw new HarnessError('the login left no session cookie at the proxy');
    log(`login: token for ${tokens.resource}, client ${tokens.client_id}`);
    const token = () => tokens.access_token;

    // ------------------------------------------------ load
    const t0 = Date.now();
    const since = (at = Date.now()) => at - t0;
    const pool = new StreamPool({
      count: cfg.streams,
      ports,
      token,
      onEvent: (e) => ledger.record({ ...e, t: since(e.at) }),
    });
    cleanups.push(() => pool.stop());
    await pool.start();

    let callSeq = 0;
    const callInstance = async (k) => {
      const first = k % 2;
      for (const instance of [first, 1 - first]) {
        const started = Date.now();
        try {
          const res = await fetch(`http://127.0.0.1:${ports()[instance]}/mcp`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${token()}`,
              'content-type': 'application/json',
              accept: 'application/json, text/event-stream',
            },
            body: JSON.stringify({
              jsonrpc: '2.0',
              id: k,
              method: 'tools/call',
              params: { name: 'echo', arguments: { k } },
            }),
            signal: AbortSignal.timeout(10_000),
          });
          const text = await res.text();
          let status = res.status;
          if (status === 200 && JSON.parse(text).id !== k) status = 'wrong answer';
          ledger.record({ kind: 'call', instance, status, t: since(), ms: Date.now() - started });
          return;
        } catch (error) {
          const reason = error.cause?.code ?? error.name ?? 'error';
          ledger.record({ kind: 'call', instance, status: reason, t: since() });
          if (reason !== 'ECONNREFUSED') return;
        }
      }
    };
    const callTimer = setInterval(() => void callInstance(++callSeq), 1000 / cfg.callsPerSecond);
    load.push(() => clearInterval(callTimer));

    // Requests the proxies must refuse (no token, a forged one) or let through (the browser session).
    const forged = `${Buffer.from('{"alg":"RS256","kid":"x"}').toString('base64url')}.${Buffer.from(
      '{"sub":"mallory"}',
    ).toString('base64url')}.${randomBytes(64).toString('base64url')}`;
    let probeSeq = 0;
    const probe = async () => {
      const n = probeSeq++;
      const instance = n % 2;
      if (down[instance]) return;
      const kind = ['unauthenticated', 'forged token', 'session cookie'][Math.floor(n / 2) % 3];
      const headers =
        kind === 'session cookie'
          ? { cookie, accept: 'application/json' }
          : {
              'x-soak-probe': kind,
              accept: 'application/json, text/event-stream',
              ...(kind === 'forged token' ? { authorization: `Bearer ${forged}` } : {}),
            };
      const url = `http://127.0.0.1:${ports()[instance]}${kind === 'session cookie' ? '/soak-page' : '/mcp'}`;
      try {
        const res = await fetch(url, {
          method: kind === 'session cookie' ? 'GET' : 'POST',
          headers,
          body: kind === 'session cookie' ? undefined : '{"jsonrpc":"2.0","id":1,"method":"tools/list"}',
          redirect: 'manual',
          signal: AbortSignal.timeout(10_000),
        });
        await res.arrayBuffer();
        ledger.record({ kind, instance, status: res.status, t: since() });
      } catch (error) {
        ledger.record({ kind, instance, status: error.cause?.code ?? error.name, t: since() });
      }
    };
    const probeTimer = setInterval(() => void probe(), 500);
    load.push(() => clearInterval(probeTimer));

    // Refreshes and logins through the front door: the newest access token is the one in use.
    const refresh = async () => {
      const started = Date.now();
      try {
        const res = await fetch(`${publicUrl}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            grant_type: 'refresh_token',
            refresh_token: tokens.refresh_token,
            client_id: tokens.client_id,
            resource: tokens.resource,
          }),
          signal: AbortSignal.timeout(15_000),
        });
        const json = await res.json().catch(() => ({}));
        if (res.status === 200) tokens = { ...tokens, ...json };
        ledger.record({
          kind: 'refresh',
          status: res.status,
          t: since(),
          ms: Date.now() - started,
          error: json.error,
        });
      } catch (error) {
        ledger.record({ kind: 'refresh', status: error.cause?.code ?? error.name, t: since() });
      }
    };
    const login = async () => {
      const started = Date.now();
      try {
        const fresh = await obtainTokens(publicUrl, { redirectUri, clientName: 'soak client' });
        tokens = fresh;
        cookie = fresh.cookie || cookie;
        ledger.record({ kind: 'login', status: 200, t: since(), ms: Date.now() - started });
      } catch (error) {
        const status = /HTTP (\d{3})/.exec(error.message)?.[1];
        ledger.record({
          kind: 'login',
          status: status ? Number(status) : 'failed',
          t: since(),
          error: error.message,
        });
      }
    };
    let busy = false;
    const serial = (fn) => async () => {
      // Refresh and login replace the same token set: one at a time, so no refresh token is used twice.
      if (busy) return;
      busy = true;
      await fn().finally(() => {
        busy = false;
      });
    };
    const refreshTimer = setInterval(serial(refresh), cfg.refreshIntervalS * 1000);
    // Logins start half a refresh interval later: timers firing together would skip one of the two.
    let loginTimer;
    const loginStart = setTimeout(
      () => {
        loginTimer = setInterval(serial(login), cfg.loginIntervalS * 1000);
      },
      (cfg.refreshIntervalS * 1000) / 2,
    );
    load.push(
      () => clearInterval(refreshTimer),
      () => clearTimeout(loginStart),
      () => clearInterval(loginTimer),
    );

    // ------------------------------------------------ samples
    const samples = [];
    const sample = () => {
      const open = pool.openPerInstance();
      samples.push({
        t: since(),
        instances: proxies.map((p, i) => ({
          ...(down[i] ? {} : procUsage(p.pid)),
          streams: open[i],
          pid: p.pid,
        })),
        redis: procUsage(redis.pid),
      });
    };
    sample();
    const sampleTimer = setInterval(sample, cfg.sampleS * 1000);
    load.push(() => clearInterval(sampleTimer));

    // ------------------------------------------------ faults
    const allOpen = () => pool.openTotal() === cfg.streams;
    const until = async (ms) => {
      const wait = ms - since();
      if (wait > 0) await sleep(wait);
    };
    const callOk = async (instance) => {
      const res = await fetch(`http://127.0.0.1:${ports()[instance]}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token()}`, 'content-type': 'application/json' },
        body: '{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{"name":"echo"}}',
        signal: AbortSignal.timeout(5000),
      });
      await res.arrayBuffer();
      return res.status === 200;
    };
    /** Waits for recovery; a fault not recovered from in time is recorded as such, and the run goes on. */
    const recovered = (what, check) =>
      waitFor(what, check, cfg.recoveryS * 1000, 100).then(
        () => true,
        () => {
          log(`  NOT RECOVERED within ${cfg.recoveryS} s: ${what}`);
          return false;
        },
      );

    await waitFor(`${cfg.streams} streams open`, async () => allOpen(), 60_000);
    log(`streams: ${cfg.streams} open after ${since()} ms; warm-up until ${plan.warmUpEnd / 1000} s`);

    await until(plan.killB);
    {
      const fault = faults.begin('kill -9 instance B', since(), { instance: 1 });
      const onB = pool.openPerInstance()[1];
      down[1] = true;
      await stopChild(proxies[1], { signal: 'SIGKILL' });
      log(`fault: kill -9 instance B (pid ${proxies[1].pid}, ${onB} streams)`);
      if (await recovered('all streams open again on A', async () => allOpen()))
        faults.recovered(fault, since(), `${onB} streams moved to A; tokens and cookie served by A`);
      if (fault.recoveryMs !== undefined)
        log(`  all ${cfg.streams} streams open on A ${fault.recoveryMs} ms after the kill`);
      await until(plan.restartB);
      proxies[1] = await startProxy('proxy-b', portB, proxyOptions);
      down[1] = false;
      faults.end(fault, since());
      log(`  instance B started again (pid ${proxies[1].pid})`);
    }

    await until(plan.redisRestart);
    {
      const fault = faults.begin('Redis restart', since(), { down: true });
      await stopChild(redis);
      log(`fault: Redis stopped for ${cfg.redisDownS} s`);
      await sleep(cfg.redisDownS * 1000);
      redis = startChild('redis', 'redis-server', redisArgs(redisPort, redisDir), {
        output: logFile('redis'),
      });
      await waitFor('redis-server', async () => !redis.exited && accepts(redisPort), 10_000);
      faults.end(fault, since());
      log('  Redis started again (same data: AOF)');
      if (await recovered('calls answered 200 by both instances', async () => (await callOk(0)) && callOk(1)))
        faults.recovered(
          fault,
          since(),
          'store-backed requests 200 again on both instances, no proxy restart',
        );
      if (fault.recoveryMs !== undefined)
        log(`  both instances answer 200 again ${fault.recoveryMs} ms after Redis came back`);
    }

    await until(plan.backendFlap);
    {
      const fault = faults.begin('backend flap', since(), { down: true });
      for (let cycle = 1; cycle <= 2; cycle++) {
        await stopChild(backend, { signal: 'SIGKILL' });
        log(`fault: backend killed (flap ${cycle}/2), down ${cfg.backendDownS} s`);
        await sleep(cfg.backendDownS * 1000);
        backend = await startBackend(backendPort);
        if (cycle === 1) await sleep(cfg.backendDownS * 1000);
      }
      faults.end(fault, since());
      log('  backend up again');
      if (
        await recovered('all streams open and calls 200 after the flap', async () => allOpen() && callOk(0))
      )
        faults.recovered(fault, since(), 'all streams reopened, calls 200');
      if (fault.recoveryMs !== undefined)
        log(`  streams and calls back ${fault.recoveryMs} ms after the backend came back`);
    }

    await until(plan.idpSlow);
    {
      const fault = faults.begin(`IdP slow (+${cfg.idpDelayMs} ms on /token)`, since(), {});
      idpDelayMs = cfg.idpDelayMs;
      log(`fault: IdP token endpoint delayed ${cfg.idpDelayMs} ms`);
      await login(); // at least one login inside the window, whatever the login timer does
      await sleep(Math.max(0, plan.idpSlowFor - (since() - fault.start)));
      idpDelayMs = 0;
      faults.end(fault, since());
      faults.recovered(fault, since(), 'logins slower while it lasted; no failure');
      log('  IdP fast again');
    }

    await until(durationMs);
    sample();
    for (const stopLoad of load.splice(0)) stopLoad();

    // ------------------------------------------------ drain: every event the backend wrote must arrive
    await fetch(`http://127.0.0.1:${backendPort}/soak/pause`, { method: 'POST' });
    let stats;
    const drained = await waitFor(
      'the last events to arrive',
      async () => {
        stats = await (await fetch(`http://127.0.0.1:${backendPort}/soak/stats`)).json();
        return pool.conns.every((c) => !c.open || (stats.sent[c.id] ?? 0) <= c.lastSeq);
      },
      10_000,
      200,
    ).catch(() => false);
    pool.stop();
    for (const p of proxies) await stopChild(p);
    await stopChild(backend);
    await stopChild(redis);

    const result = ledger.result({
      cfg,
      plan,
      samples,
      conns: pool.conns,
      backendStats: stats,
      drained: Boolean(drained),
      streamsTarget: cfg.streams,
      durationMs: since(),
    });
    mkdirSync(outDir, { recursive: true });
    writeFileSync(path.join(outDir, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
    const md = markdownReport(result);
    writeFileSync(path.join(outDir, 'latest.md'), md);
    if (cfg.reportMd) writeFileSync(cfg.reportMd, md);
    printSummary(result, log);
    return result.passed ? 0 : 1;
  } finally {
    for (const stopLoad of load) stopLoad();
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  }
}

for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => process.exit(130));
main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`soak: ${error instanceof HarnessError ? error.message : (error.stack ?? error)}\n`);
    process.exit(2);
  },
);
