// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by
// package/file, and inclusive time of the proxy's own functions (dist/).
// Usage: node bench/profile-top.mjs <file.cpuprofile> [topN]
import { readFileSync } from 'node:fs';

export function summarise(file, top = 20) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const totalUs = prof.endTime - prof.startTime;
  // Self time per node from samples + timeDeltas (more exact than hitCount * mean interval).
  const selfUs = new Map();
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = prof.timeDeltas[i + 1] ?? 0;
    selfUs.set(prof.samples[i], (selfUs.get(prof.samples[i]) ?? 0) + dt);
  }
  const where = (cf) => {
    const u = cf.url || '';
    if (!u) return cf.functionName.startsWith('(') ? cf.functionName : '(native)';
    if (u.startsWith('node:')) return u;
    const nm = u.lastIndexOf('node_modules/');
    if (nm >= 0)
      return u
        .slice(nm + 13)
        .split('/')
        .slice(0, u.slice(nm + 13).startsWith('@') ? 2 : 1)
        .join('/');
    const d = u.indexOf('/dist/');
    if (d >= 0) return `proxy:${u.slice(d + 1)}`;
    return u;
  };
  const label = (cf) => {
    const u = cf.url || '';
    const d = u.indexOf('/dist/');
    const file = d >= 0 ? u.slice(d + 1) : u.replace(/^.*node_modules\//, '').replace(/^file:\/\//, '');
    return `${cf.functionName || '(anonymous)'} ${file}${file ? `:${cf.lineNumber + 1}` : ''}`;
  };
  const fnSelf = new Map();
  const pkgSelf = new Map();
  const ownIncl = new Map();
  let sampled = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    sampled += us;
    const l = label(n.callFrame);
    fnSelf.set(l, (fnSelf.get(l) ?? 0) + us);
    const w = where(n.callFrame);
    pkgSelf.set(w, (pkgSelf.get(w) ?? 0) + us);
    // Inclusive time for the proxy's own frames: walk up once per distinct own frame.
    const seen = new Set();
    for (let p = id; p !== undefined; p = parent.get(p)) {
      const cf = byId.get(p).callFrame;
      if (!cf.url.includes('/dist/')) continue;
      const key = label(cf);
      if (seen.has(key)) continue;
      seen.add(key);
      ownIncl.set(key, (ownIncl.get(key) ?? 0) + us);
    }
  }
  const rows = (m) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => ({
        name: k,
        ms: Math.round(us / 1000),
        pct: Math.round((us / sampled) * 1000) / 10,
      }));
  const idle = (fnSelf.get('(idle) ') ?? 0) / sampled;
  return {
    file,
    wall_ms: Math.round(totalUs / 1000),
    busy_pct: Math.round((1 - idle) * 1000) / 10,
    self_by_function: rows(fnSelf),
    self_by_package: rows(pkgSelf),
    proxy_own_inclusive: rows(ownIncl),
  };
}

export function printSummary(s, out = process.stdout) {
  const w = (t) => out.write(`${t}\n`);
  w(`profile ${s.file}: ${s.wall_ms} ms wall, main thread busy ${s.busy_pct}%`);
  for (const [title, list] of [
    ['self time by function', s.self_by_function],
    ['self time by package / file', s.self_by_package],
    ["inclusive time of the proxy's own functions (dist/)", s.proxy_own_inclusive],
  ]) {
    w(`  -- ${title} (% of sampled time)`);
    for (const r of list) w(`  ${String(r.pct).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (!process.argv[2]) {
    process.stderr.write('usage: node bench/profile-top.mjs <file.cpuprofile> [topN]\n');
    process.exit(2);
  }
  printSummary(summarise(process.argv[2], Number(process.argv[3] ?? 20)));
}
