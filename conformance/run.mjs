/**
 * MCP conformance through the proxy: runs the server scenarios of the official suite
 * `@modelcontextprotocol/conformance` twice, first straight against an MCP backend and then
 * through the proxy in oidc mode, and fails if a scenario that passes directly fails through
 * the proxy.
 *
 *   npm run build && node conformance/run.mjs          (or: npm run test:conformance)
 *
 * What it starts, all in this process on loopback ports: the backend (conformance/backend.mjs,
 * official SDK server with the tools/resources/prompts the scenarios call), the dev IdP
 * (dist/demo/dev-idp.js, a real oidc-provider) and the proxy (dist/server/app.js) with
 * AUTH_MODE=oidc in front of the backend, with a permissive mcp_access rule set so that every
 * request also passes the MCP inspection stage. It then gets an access token the way an MCP client
 * does: dynamic client registration, PKCE authorization with a headless login at the dev IdP
 * (alice) and the proxy's consent page, and the code exchange (scripts/oauth-token.mjs). The
 * suite has no auth option, so the token is injected by a `--import` preload (NODE_OPTIONS) that
 * adds `Authorization` to every `fetch` and undici request to the proxy's origin.
 *
 * Requirements: `dist/` built; the suite needs Node 22+: run this script with Node 22+ or set
 * CONFORMANCE_NODE to such a binary. The suite is installed on first use (npm, pinned version)
 * into node_modules/.cache/mcp-conformance-<version> (override with CONFORMANCE_DIR).
 * Env: CONFORMANCE_SUITE (default "active"), CONFORMANCE_TIMEOUT_MS (whole run, default 150000).
 * Exit status: 0 when every scenario that passed directly also passed through the proxy.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { obtainAccessToken } from '../scripts/oauth-token.mjs';
import { startConformanceBackend } from './backend.mjs';

const VERSION = '0.1.16';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SUITE = process.env.CONFORMANCE_SUITE ?? 'active';
const TOTAL_TIMEOUT_MS = Number(process.env.CONFORMANCE_TIMEOUT_MS ?? 150_000);
const REDIRECT_URI = 'http://127.0.0.1:39873/oauth/callback';

const cleanups = [];
const children = new Set();
async function cleanup() {
  for (const child of children) child.kill('SIGKILL');
  while (cleanups.length)
    await cleanups
      .pop()()
      .catch(() => {});
}
const watchdog = setTimeout(async () => {
  console.error(`conformance: gave up after ${TOTAL_TIMEOUT_MS} ms`);
  await cleanup();
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

function conformanceNode() {
  const node = process.env.CONFORMANCE_NODE ?? process.execPath;
  const major = Number(
    spawnSync(node, ['-p', 'process.versions.node.split(".")[0]'], { encoding: 'utf8' }).stdout.trim(),
  );
  if (!(major >= 22)) {
    throw new Error(
      `the conformance suite needs Node 22+, ${node} is ${major || 'unusable'}: set CONFORMANCE_NODE`,
    );
  }
  return node;
}

/** The suite's CLI entry, installed once (pinned) into a cache directory. */
function installSuite() {
  const dir =
    process.env.CONFORMANCE_DIR ?? join(ROOT, 'node_modules', '.cache', `mcp-conformance-${VERSION}`);
  const entry = join(dir, 'node_modules', '@modelcontextprotocol', 'conformance', 'dist', 'index.js');
  if (!existsSync(entry)) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'package.json'), '{"name":"conformance-cache","private":true}\n');
    const r = spawnSync(
      'npm',
      ['install', '--no-audit', '--no-fund', '--silent', `@modelcontextprotocol/conformance@${VERSION}`],
      { cwd: dir, stdio: 'inherit', timeout: 120_000 },
    );
    if (r.status !== 0 || !existsSync(entry))
      throw new Error(`could not install the conformance suite in ${dir}`);
  }
  return { dir, entry };
}

async function freePort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

/** Dev IdP + proxy (oidc mode) in front of `backendOrigin`; the proxy's logs are kept in `logs`. */
async function startProxyStack(backendOrigin) {
  const { startDevIdp } = await import(pathToFileURL(join(ROOT, 'dist/demo/dev-idp.js')).href);
  const { loadConfig } = await import(pathToFileURL(join(ROOT, 'dist/config/load.js')).href);
  const { startProxy } = await import(pathToFileURL(join(ROOT, 'dist/server/app.js')).href);
  const { createLogger } = await import(pathToFileURL(join(ROOT, 'dist/observability/logger.js')).href);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const secret = randomBytes(16).toString('hex');
  const idp = await startDevIdp({
    clients: [{ client_id: 'mcp-oidc-proxy', client_secret: secret, redirect_uris: [`${url}/callback`] }],
  });
  cleanups.push(() => idp.close());
  const config = loadConfig({
    env: {
      AUTH_MODE: 'oidc',
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: String(port),
      PUBLIC_URL: url,
      PROXY_TARGET_URL: backendOrigin,
      OIDC_DISCOVERY_URL: `${idp.issuer}/.well-known/openid-configuration`,
      OIDC_CLIENT_ID: 'mcp-oidc-proxy',
      OIDC_CLIENT_SECRET: secret,
      OIDC_SCOPES: 'openid email profile groups offline_access',
      // A permissive rule set: every POST then passes the MCP inspection stage (strict parsing,
      // the forwarded body, list results and call outcomes read back), so the suite checks that
      // the stage changes nothing a client can see.
      MCP_ACCESS: JSON.stringify({ rules: [{ tools: ['*'], prompts: ['*'], resources: ['*'] }] }),
      LOG_LEVEL: 'info',
    },
  });
  const logs = [];
  /** Calls the inspection stage recorded (`mcp_call` audit events): proof that it ran. */
  let inspectedCalls = 0;
  const sink = new Writable({
    write(chunk, _enc, cb) {
      const lines = String(chunk).split('\n').filter(Boolean);
      inspectedCalls += lines.filter((line) => line.includes('"audit":"mcp_call"')).length;
      logs.push(...lines);
      if (logs.length > 2000) logs.splice(0, logs.length - 2000);
      cb();
    },
  });
  const proxy = await startProxy({ config, logger: createLogger(config.log.level, sink) });
  cleanups.push(() => proxy.shutdown());
  return { url, logs, inspectedCalls: () => inspectedCalls };
}

/** The preload: adds the bearer token to fetch and to undici's global dispatcher, for `origin` only. */
function writePreload(dir, suiteDir, origin, token) {
  const undici = pathToFileURL(
    join(
      suiteDir,
      'node_modules',
      '@modelcontextprotocol',
      'conformance',
      'node_modules',
      'undici',
      'index.js',
    ),
  );
  const fallback = pathToFileURL(join(suiteDir, 'node_modules', 'undici', 'index.js'));
  const file = join(dir, 'auth-preload.mjs');
  writeFileSync(
    file,
    `// Generated by conformance/run.mjs: Authorization for requests to ${origin}.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
const ORIGIN = ${JSON.stringify(origin)};
const AUTH = ${JSON.stringify(`Bearer ${token}`)};
const sameOrigin = (u) => { try { return new URL(String(u)).origin === ORIGIN; } catch { return false; } };
const realFetch = globalThis.fetch;
globalThis.fetch = (input, init) => {
  const url = input instanceof Request ? input.url : input;
  if (!sameOrigin(url)) return realFetch(input, init);
  const headers = new Headers(input instanceof Request ? input.headers : undefined);
  new Headers(init?.headers).forEach((v, k) => headers.set(k, v));
  if (!headers.has('authorization')) headers.set('authorization', AUTH);
  return realFetch(input, { ...init, headers });
};
const withAuth = (h) => {
  if (h == null) return { authorization: AUTH };
  if (Array.isArray(h)) {
    const flat = Array.isArray(h[0]) ? h.flat() : h;
    for (let i = 0; i < flat.length; i += 2) if (String(flat[i]).toLowerCase() === 'authorization') return h;
    return [...flat, 'authorization', AUTH];
  }
  if (typeof h[Symbol.iterator] === 'function' && !(typeof h === 'object' && h.constructor === Object)) return withAuth([...h].flat());
  return Object.keys(h).some((k) => k.toLowerCase() === 'authorization') ? h : { ...h, authorization: AUTH };
};
const undiciUrl = existsSync(fileURLToPath(${JSON.stringify(undici.href)})) ? ${JSON.stringify(undici.href)} : ${JSON.stringify(fallback.href)};
const { getGlobalDispatcher, setGlobalDispatcher } = await import(undiciUrl);
setGlobalDispatcher(
  getGlobalDispatcher().compose((dispatch) => (opts, handler) =>
    dispatch(sameOrigin(opts.origin) ? { ...opts, headers: withAuth(opts.headers) } : opts, handler),
  ),
);
`,
  );
  return file;
}

/** Runs the server scenarios against `url`; resolves to Map(scenario -> { passed, failed, error }). */
function runSuite(node, entry, url, outDir, env, timeoutMs) {
  return new Promise((resolveRun) => {
    const child = spawn(node, [entry, 'server', '--url', url, '--suite', SUITE, '-o', outDir], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      const results = new Map();
      for (const name of existsSync(outDir) ? readdirSync(outDir) : []) {
        const m = name.match(/^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/);
        const file = join(outDir, name, 'checks.json');
        if (!m || !existsSync(file)) continue;
        const checks = JSON.parse(readFileSync(file, 'utf8'));
        const failed = checks.filter((c) => c.status === 'FAILURE');
        results.set(m[1], {
          passed: checks.filter((c) => c.status === 'SUCCESS').length,
          failed: failed.length,
          errors: failed.map((c) => `${c.id}: ${c.errorMessage ?? ''} ${JSON.stringify(c.details ?? {})}`),
        });
      }
      resolveRun({ results, code, signal, output });
    });
  });
}

async function main() {
  if (!existsSync(join(ROOT, 'dist/server/app.js')))
    throw new Error('dist/ is missing: run `npm run build` first');
  const node = conformanceNode();
  const suite = installSuite();
  const work = mkdtempSync(join(tmpdir(), 'mcp-conformance-'));
  cleanups.push(async () => rmSync(work, { recursive: true, force: true }));

  const backend = await startConformanceBackend();
  cleanups.push(() => backend.close());
  const proxy = await startProxyStack(new URL(backend.url).origin);
  const token = await obtainAccessToken(proxy.url, {
    redirectUri: REDIRECT_URI,
    clientName: 'MCP conformance suite',
  });

  // Sanity: without the preload the proxy refuses; the runs below only differ by the preload.
  const bare = await fetch(`${proxy.url}/mcp`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
  });
  if (bare.status !== 401) throw new Error(`expected 401 from the proxy without a token, got ${bare.status}`);

  const preload = writePreload(work, suite.dir, proxy.url, token);
  const perRun = Math.max(10_000, Math.floor((TOTAL_TIMEOUT_MS - 10_000) / 2));
  const direct = await runSuite(node, suite.entry, backend.url, join(work, 'direct'), {}, perRun);
  const nodeOptions = `${process.env.NODE_OPTIONS ?? ''} --import=${pathToFileURL(preload).href}`.trim();
  const proxied = await runSuite(
    node,
    suite.entry,
    `${proxy.url}/mcp`,
    join(work, 'proxy'),
    { NODE_OPTIONS: nodeOptions },
    perRun,
  );

  const names = [...new Set([...direct.results.keys(), ...proxied.results.keys()])];
  const cell = (r) =>
    r ? `${r.failed === 0 ? 'pass' : 'FAIL'} ${r.passed}/${r.passed + r.failed}` : 'missing';
  const width = Math.max(8, ...names.map((n) => n.length));
  console.log(
    `\nMCP conformance ${VERSION} (suite "${SUITE}"), node ${spawnSync(node, ['--version']).stdout.toString().trim()}`,
  );
  console.log(`${'scenario'.padEnd(width)}  ${'direct'.padEnd(10)}  proxy`);
  const regressions = [];
  for (const name of names) {
    const d = direct.results.get(name);
    const p = proxied.results.get(name);
    const regressed = d?.failed === 0 && !(p?.failed === 0);
    if (regressed) regressions.push(name);
    console.log(
      `${name.padEnd(width)}  ${cell(d).padEnd(10)}  ${cell(p)}${regressed ? '   <-- regression' : ''}`,
    );
  }
  const directPassed = names.filter((n) => direct.results.get(n)?.failed === 0).length;
  console.log(
    `\n${directPassed} scenarios pass directly; ${regressions.length} of them fail through the proxy.`,
  );
  console.log(`the MCP inspection stage recorded ${proxy.inspectedCalls()} calls through the proxy`);
  if (proxy.inspectedCalls() === 0) {
    console.error('the MCP inspection stage saw no call: the permissive mcp_access rules did not apply');
    return 1;
  }
  if (direct.results.size === 0) {
    console.error(
      `no results from the direct run (exit ${direct.code ?? direct.signal}):\n${direct.output.slice(-3000)}`,
    );
    return 1;
  }
  for (const name of regressions) {
    const p = proxied.results.get(name);
    console.error(`\n${name} through the proxy:\n  ${p ? p.errors.join('\n  ') : 'no result'}`);
  }
  if (regressions.length) {
    console.error(`\nproxy log (last lines):\n${proxy.logs.slice(-15).join('\n')}`);
    if (proxied.signal)
      console.error(`proxy run killed (${proxied.signal}):\n${proxied.output.slice(-2000)}`);
  }
  return regressions.length ? 1 : 0;
}

let status = 1;
try {
  status = await main();
} catch (err) {
  console.error(`conformance: ${err instanceof Error ? err.message : err}`);
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
process.exit(status);
