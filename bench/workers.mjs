// Multi-core section of bench/run.mjs (BENCH_WORKERS): the proxy with SERVER_WORKERS=1 and 2
// against nginx with worker_processes 1 and 2, all on this machine, in interleaved rounds.
//
// The proxies run in bypass mode: the multi-core question is about the request path, and bypass
// mode has no store to share. SERVER_WORKERS > 1 still needs SESSION_STORE=redis (the config rule
// holds whatever the mode, so the config stays valid when switched to oidc), so both proxies get the
// same Redis settings; in bypass mode the proxy never connects to it. Within a round, nginx 1 and 2
// run back to back, then the proxy 1 and 2, first and second in turn from round to round; the ratios
// are medians of the per-round ratios. On a 2-CPU box, wrk and the backend share the cores with the
// workers, so "2 workers" cannot double anything: the section shows how much of the machine's headroom
// each server turns into throughput, against nginx under the same constraint.

/** wrk duration, warm-up and rounds of this section (bounded: 4 targets × rounds × (warm-up + duration)). */
export function workersConfig(num, HarnessError) {
  const c = {
    duration: num('BENCH_WORKERS_DURATION', 5),
    warmup: num('BENCH_WORKERS_WARMUP', 2),
    rounds: num('BENCH_WORKERS_ROUNDS', 2),
  };
  if (c.duration < 1 || c.duration > 60)
    throw new HarnessError('BENCH_WORKERS_DURATION must be between 1 and 60 seconds');
  if (c.rounds < 1 || c.rounds > 10) throw new HarnessError('BENCH_WORKERS_ROUNDS must be between 1 and 10');
  return c;
}

export async function workersBench(h, wcfg, { backend, nginxBin, connections, threads, redisUrl }) {
  const load = { ...wcfg, connections, threads };
  const servers = [];
  try {
    for (const workers of [1, 2])
      servers.push({
        key: `nginx_w${workers}`,
        label: `nginx, ${workers} worker${workers > 1 ? 's' : ''}`,
        entry: await h.startNginx(nginxBin, backend.port, { workers, name: `nginx-w${workers}` }),
      });
    for (const workers of [1, 2])
      servers.push({
        key: `proxy_w${workers}`,
        label: `proxy, SERVER_WORKERS=${workers}`,
        entry: await h.startProxy(`proxy-w${workers}`, backend.port, {
          env: { SERVER_WORKERS: String(workers), SESSION_STORE: 'redis', REDIS_URL: redisUrl },
        }),
      });
    const groups = [servers.slice(0, 2), servers.slice(2)];
    const rounds = Object.fromEntries(servers.map((s) => [s.key, []]));
    h.say(
      `multi-core: bypass proxy with SERVER_WORKERS=1/2 against nginx worker_processes 1/2; wrk ${connections} connections, ${wcfg.warmup}s warm-up + ${wcfg.duration}s, ${wcfg.rounds} round(s)`,
    );
    for (let round = 1; round <= wcfg.rounds; round++) {
      if (wcfg.rounds > 1) h.say(` round ${round}/${wcfg.rounds}`);
      for (const group of groups)
        for (const s of round % 2 === 0 ? [...group].reverse() : group) {
          const url = `http://127.0.0.1:${s.entry.port}/mcp`;
          await h.expectOk(s.label, url);
          // The backend watched: the CPU column then shows it, wrk, and how busy the machine was.
          rounds[s.key].push(await h.measure(h.wrkBin, s.label, url, load, [backend]));
        }
    }
    const r = (a, b) => h.pairedRatio(rounds[a], rounds[b], 'rps');
    return {
      settings: load,
      results: Object.fromEntries(Object.entries(rounds).map(([k, runs]) => [k, h.medianRun(runs)])),
      ratios: {
        proxy_w2_vs_w1: r('proxy_w2', 'proxy_w1'),
        nginx_w2_vs_w1: r('nginx_w2', 'nginx_w1'),
        proxy_w1_vs_nginx_w1: r('proxy_w1', 'nginx_w1'),
        proxy_w2_vs_nginx_w2: r('proxy_w2', 'nginx_w2'),
      },
    };
  } finally {
    await Promise.all(servers.map((s) => h.stop(s.entry)));
  }
}

export function printWorkers(h, w) {
  const { results: r, ratios } = w;
  h.table([
    ['nginx, 1 worker', r.nginx_w1],
    ['nginx, 2 workers', r.nginx_w2],
    ['proxy bypass, SERVER_WORKERS=1', r.proxy_w1],
    ['proxy bypass, SERVER_WORKERS=2', r.proxy_w2],
  ]);
  h.say();
  h.say(
    `  scaling 2/1 workers (median of per-round ratios): proxy ${h.fmt(ratios.proxy_w2_vs_w1, 3)}x   nginx ${h.fmt(ratios.nginx_w2_vs_w1, 3)}x`,
  );
  h.say(
    `  proxy/nginx: 1 worker each ${h.fmt(ratios.proxy_w1_vs_nginx_w1, 3)}x   2 workers each ${h.fmt(ratios.proxy_w2_vs_nginx_w2, 3)}x`,
  );
}
