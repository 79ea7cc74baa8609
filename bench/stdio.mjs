// The bench's stdio section (BENCH_STDIO): what serving a stdio MCP server through the proxy's
// bridge costs, against an HTTP MCP server behind the same proxy.
//
// 1. Time to first tool call: a fresh client's `initialize` POST up to the answer of its first
//    `tools/call` (initialize, notifications/initialized, tools/call, as an SDK client sends them),
//    BENCH_STDIO_SPAWNS times per target, the targets taken in turn: a new session on a proxy with
//    STDIO_ISOLATION=session (a new child each time), a new session on a proxy with
//    STDIO_ISOLATION=user whose child already runs (another session keeps it), each for the probe
//    server (test/helpers/stdio-probe-server.mjs, `echo`) and mcp-server-memory (`read_graph`); and a
//    new session on the HTTP MCP server through the proxy, for reference. Median and p90.
// 2. Per request: `tools/call` of `echo` in one open session, wrk at BENCH_STDIO_CONNECTIONS
//    (bench/mcp-session-call.lua), through the proxy to the stdio bridge (probe server), through the
//    proxy to the HTTP MCP server (bench/mcp-http-server.mjs: the same SDK and tool), and to that
//    server directly; in every round the three run back to back, in turn first. req/s, latency, the
//    CPU time per request of the proxy and of the MCP server process (the child, or the HTTP server).
//
// Every proxy runs in bypass mode at LOG_LEVEL=warn; each child is ended with its proxy.
import { rmSync } from 'node:fs';
import path from 'node:path';
import { McpSession } from './mcp-session.mjs';

/** The stdio servers measured: the probe server and a real third-party one. */
function stdioServers(h) {
  const memoryFile = path.join(h.tmpDir, 'memory.jsonl');
  rmSync(memoryFile, { force: true });
  return [
    {
      key: 'probe',
      label: 'probe server',
      env: { PROXY_TARGET_COMMAND: `${process.execPath} test/helpers/stdio-probe-server.mjs` },
      tool: ['echo', { text: 'hello' }],
    },
    {
      key: 'memory',
      label: 'mcp-server-memory',
      // Its graph goes to a temp file, not into node_modules.
      env: {
        PROXY_TARGET_COMMAND: 'node_modules/.bin/mcp-server-memory',
        STDIO_ENV: 'MEMORY_FILE_PATH',
        MEMORY_FILE_PATH: memoryFile,
      },
      tool: ['read_graph', {}],
    },
  ];
}

const mcpUrl = (entry) => `http://127.0.0.1:${entry.port}/mcp`;

/** Nearest-rank percentile of sorted numbers. */
function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const round = (x) => Math.round(x * 10) / 10;
  return {
    n: sorted.length,
    median_ms: round(percentile(sorted, 50)),
    p90_ms: round(percentile(sorted, 90)),
    min_ms: round(sorted[0]),
    max_ms: round(sorted.at(-1)),
    samples_ms: samples.map(round),
  };
}

/** One fresh client: initialize → first tool call answered, in ms; then the session is deleted. */
async function firstToolCall(url, [tool, args]) {
  const session = new McpSession(url);
  try {
    const started = performance.now();
    await session.open();
    await session.call(tool, args);
    return performance.now() - started;
  } finally {
    await session.close();
  }
}

/**
 * `h`: the harness (run.mjs) — startProxy, spawnChild, jsonLine, stop, measure, pairedRatio, say,
 * logFile, cpuSeconds, HarnessError, tmpDir, benchDir, wrkBin. `cfg`: spawns, rounds, duration,
 * warmup, connections, threads. Returns the figures (for .bench/latest.json and the tables).
 */
export async function stdioBench(h, cfg) {
  const { say } = h;
  const started = [];
  const start = async (promise) => {
    const entry = await promise;
    started.push(entry);
    return entry;
  };
  try {
    const httpServer = await start(startHttpMcpServer(h));
    const viaHttp = await start(h.startProxy('stdio-ref-http', httpServer.port));
    const targets = [];
    for (const server of stdioServers(h)) {
      for (const isolation of ['session', 'user']) {
        const entry = await start(
          h.startProxy(`stdio-${server.key}-${isolation}`, undefined, {
            env: { ...server.env, STDIO_ISOLATION: isolation },
          }),
        );
        targets.push({
          key: `${server.key}_${isolation === 'session' ? 'new_child' : 'running_child'}`,
          label: `${server.label}, ${isolation === 'session' ? 'new child (STDIO_ISOLATION=session)' : 'running child (STDIO_ISOLATION=user)'}`,
          url: mcpUrl(entry),
          tool: server.tool,
          proxy: entry,
          isolation,
        });
      }
    }
    targets.push({
      key: 'http_via_proxy',
      label: 'HTTP MCP server through the proxy (reference)',
      url: mcpUrl(viaHttp),
      tool: ['echo', { text: 'hello' }],
    });

    say(
      `stdio: time to first tool call (initialize → first tools/call answered), ${cfg.spawns} fresh clients per target, targets in turn:`,
    );
    // User isolation: a session held open the whole time keeps the child running for the others.
    const keepers = [];
    for (const t of targets.filter((t) => t.isolation === 'user')) {
      const keeper = new McpSession(t.url);
      await keeper.open();
      keepers.push(keeper);
    }
    const samples = Object.fromEntries(targets.map((t) => [t.key, []]));
    // One client per target first, not counted: the first start reads the program from disk.
    for (const t of targets) await firstToolCall(t.url, t.tool);
    for (let i = 0; i < cfg.spawns; i++) {
      for (let j = 0; j < targets.length; j++) {
        const t = targets[(i + j) % targets.length];
        samples[t.key].push(await firstToolCall(t.url, t.tool));
      }
    }
    for (const keeper of keepers) await keeper.close();
    const firstCall = Object.fromEntries(
      targets.map((t) => [t.key, { label: t.label, ...summary(samples[t.key]) }]),
    );
    for (const t of targets) {
      const s = firstCall[t.key];
      say(`  ${t.label.padEnd(58)} median ${s.median_ms} ms, p90 ${s.p90_ms} ms`);
    }
    // Only the bridge to the probe server is loaded below; the other stdio proxies are done.
    await Promise.all(
      targets.filter((t) => t.proxy && t.key !== 'probe_new_child').map((t) => h.stop(t.proxy)),
    );

    const perRequest = await perRequestRounds(
      h,
      cfg,
      httpServer,
      viaHttp,
      targets.find((t) => t.key === 'probe_new_child').proxy,
    );
    return { settings: cfg, first_tool_call: firstCall, ...perRequest };
  } finally {
    await Promise.all(started.map((entry) => h.stop(entry)));
  }
}

async function startHttpMcpServer(h) {
  const entry = h.spawnChild('mcp-http', process.execPath, [path.join(h.benchDir, 'mcp-http-server.mjs')]);
  entry.child.stderr.pipe(h.logFile('mcp-http'));
  entry.port = (await h.jsonLine(entry, (o) => typeof o.port === 'number', 10_000)).port;
  return entry;
}

/** Part 2: the three per-request targets, `cfg.rounds` rounds, each round's order turned. */
async function perRequestRounds(h, cfg, httpServer, viaHttp, viaStdio) {
  const { say } = h;
  const loads = [
    { key: 'stdio', label: 'proxy → stdio bridge', url: mcpUrl(viaStdio), proxy: viaStdio },
    { key: 'http', label: 'proxy → HTTP MCP server', url: mcpUrl(viaHttp), proxy: viaHttp },
    { key: 'direct', label: 'HTTP MCP server directly', url: mcpUrl(httpServer) },
  ];
  for (const load of loads) {
    load.session = new McpSession(load.url);
    await load.session.open();
    const echoed = await load.session.call('echo', { text: 'hello' });
    if (echoed.content?.[0]?.text !== 'hello')
      throw new h.HarnessError(`${load.label}: echo answered ${JSON.stringify(echoed)}`);
    // The process answering the tool call: the stdio child (the probe tells its pid) or the HTTP server.
    load.server =
      load.key === 'stdio'
        ? {
            name: 'stdio-child',
            child: { pid: JSON.parse((await load.session.call('whoami')).content[0].text).pid },
          }
        : httpServer;
    load.headers = Object.entries(load.session.sessionHeaders()).map(([k, v]) => `${k}: ${v}`);
  }
  say(
    `stdio: per request, tools/call echo in one session, wrk ${cfg.connections} connections, ${cfg.warmup}s warm-up + ${cfg.duration}s, ${cfg.rounds} round(s):`,
  );
  const rounds = Object.fromEntries(loads.map((l) => [l.key, []]));
  try {
    for (let round = 1; round <= cfg.rounds; round++) {
      if (cfg.rounds > 1) say(` round ${round}/${cfg.rounds}`);
      const order = loads.map((_, i) => loads[(i + round - 1) % loads.length]);
      for (const load of order) {
        const watch = [load.server, ...(load.proxy ? [load.proxy] : [])];
        const r = await h.measure(h.wrkBin, load.label, load.url, cfg, watch, {
          server: load.proxy,
          headers: load.headers,
          script: h.mcpSessionScript,
        });
        const used = r.cpu_seconds[load.server.name];
        if (used !== undefined && r.requests > 0)
          r.mcp_server_cpu_us_per_request = Math.round((used / r.requests) * 1e7) / 10;
        r.total_cpu_us_per_request =
          Math.round(((r.cpu_us_per_request ?? 0) + (r.mcp_server_cpu_us_per_request ?? 0)) * 10) / 10;
        rounds[load.key].push(r);
      }
    }
  } finally {
    for (const load of loads) await load.session.close().catch(() => {});
  }
  const results = Object.fromEntries(Object.entries(rounds).map(([k, runs]) => [k, h.medianRun(runs)]));
  const ratio = (field) => h.pairedRatio(rounds.stdio, rounds.http, field);
  const ratios = {
    stdio_vs_http_throughput: ratio('rps'),
    stdio_vs_http_p50: ratio('p50_ms'),
    stdio_vs_http_p99: ratio('p99_ms'),
    stdio_vs_http_proxy_cpu_per_request: ratio('cpu_us_per_request'),
    stdio_vs_http_total_cpu_per_request: ratio('total_cpu_us_per_request'),
    http_via_proxy_vs_direct_throughput: h.pairedRatio(rounds.http, rounds.direct, 'rps'),
  };
  return {
    per_request: Object.fromEntries(
      loads.map((l) => [l.key, { label: l.label, ...results[l.key], wrk_text: undefined }]),
    ),
    ratios,
  };
}

/** The section's tables, for run.mjs's report. */
export function printStdio(h, stdio) {
  const { say, fmt } = h;
  say('  time to first tool call (fresh client: initialize → first tools/call answered)');
  const rows = Object.values(stdio.first_tool_call);
  const width = Math.max(...rows.map((r) => r.label.length));
  say(`  ${'target'.padEnd(width)}  median ms  p90 ms  min ms  max ms   n`);
  say(`  ${'-'.repeat(width)}  ---------  ------  ------  ------  --`);
  for (const r of rows)
    say(
      `  ${r.label.padEnd(width)}  ${fmt(r.median_ms, 1).padStart(9)}  ${fmt(r.p90_ms, 1).padStart(6)}  ${fmt(r.min_ms, 1).padStart(6)}  ${fmt(r.max_ms, 1).padStart(6)}  ${String(r.n).padStart(2)}`,
    );
  const f = stdio.first_tool_call;
  say(
    `  spawn cost (new child - running child, medians): probe ${fmt(f.probe_new_child.median_ms - f.probe_running_child.median_ms, 1)} ms, mcp-server-memory ${fmt(f.memory_new_child.median_ms - f.memory_running_child.median_ms, 1)} ms`,
  );
  say();
  say(
    '  per request (tools/call echo in one session; µs CPU/req: the proxy; MCP server: the child or HTTP server)',
  );
  h.table(Object.values(stdio.per_request).map((r) => [r.label, r]));
  for (const r of Object.values(stdio.per_request))
    say(
      `  ${r.label.padEnd(26)} MCP server ${fmt(r.mcp_server_cpu_us_per_request, 1)} µs CPU/req, proxy + server ${fmt(r.total_cpu_us_per_request, 1)} µs`,
    );
  const x = stdio.ratios;
  say(
    `  stdio / HTTP through the proxy (median of per-round ratios): throughput ${fmt(x.stdio_vs_http_throughput, 3)}x   p50 ${fmt(x.stdio_vs_http_p50, 3)}x   p99 ${fmt(x.stdio_vs_http_p99, 3)}x   proxy CPU/req ${fmt(x.stdio_vs_http_proxy_cpu_per_request, 3)}x   proxy+server CPU/req ${fmt(x.stdio_vs_http_total_cpu_per_request, 3)}x`,
  );
  say(`  HTTP through the proxy / directly: throughput ${fmt(x.http_via_proxy_vs_direct_throughput, 3)}x`);
}
