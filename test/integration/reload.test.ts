import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { type DevIdp, startDevIdp } from '../../src/demo/dev-idp.js';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { CLIENT_ID, CLIENT_SECRET } from '../helpers/oidc-stack.js';
import { type JsonLog, jsonLines, terminate } from '../helpers/process.js';
import {
  freePort,
  type Listening,
  listen,
  startTestProxy,
  type TestProxy,
  waitFor,
} from '../helpers/servers.js';

// The built CLI: `npm test` builds before vitest; run `npm run build` before running this alone.
const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

const alice = { username: 'alice', password: 'alice-password' };
const bob = { username: 'bob', password: 'bob-password' };

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-reload-it-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Backend extends Listening {
  name: string;
  /** Writes an SSE event to every open stream. */
  send(data: string): void;
  /** Ends every open stream (the backend's side of a normal end). */
  endStreams(): void;
  openStreams(): number;
}

/** `/events` is an SSE stream kept open until told; anything else says which backend answered, for whom. */
async function startBackend(name: string): Promise<Backend> {
  const streams = new Set<ServerResponse>();
  const listening = await listen(
    createServer((req: IncomingMessage, res) => {
      if (req.url?.startsWith('/events')) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write(`data: ${name} open\n\n`);
        streams.add(res);
        res.on('close', () => streams.delete(res));
        return;
      }
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ backend: name, url: req.url, user: req.headers['x-forwarded-user'] ?? null }));
    }),
  );
  return {
    ...listening,
    name,
    send: (data) => {
      for (const s of streams) s.write(`data: ${data}\n\n`);
    },
    endStreams: () => {
      for (const s of streams) s.end();
    },
    openStreams: () => streams.size,
  };
}

/** An SSE response read as it arrives. */
async function openStream(
  url: string,
  cookie: string,
): Promise<{ waitFor(text: string): Promise<void>; ended(): Promise<string> }> {
  const res = await fetch(url, { headers: { cookie, accept: 'text/event-stream' } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let received = '';
  return {
    async waitFor(text) {
      while (!received.includes(text)) {
        const { done, value } = await reader.read();
        if (done) throw new Error(`the stream ended before "${text}"; it carried: ${received}`);
        received += decoder.decode(value, { stream: true });
      }
    },
    /** Reads to the end: resolves (with all the stream carried) only on a clean end. */
    async ended() {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return received;
        received += decoder.decode(value, { stream: true });
      }
    },
  };
}

interface ProxyProcess {
  child: ChildProcess;
  log: JsonLog;
  url: string;
  /** Sends SIGHUP and resolves with the reload's log line (accepted or refused). */
  sighup(): Promise<Record<string, unknown>>;
}

const isReloadLine = (l: Record<string, unknown>): boolean =>
  typeof l.msg === 'string' && /^configuration reload(ed:| refused)/.test(l.msg);

async function startProxyProcess(configFile: string, port: number): Promise<ProxyProcess> {
  const child = spawn(process.execPath, [MAIN, '--config', configFile], {
    // Only PATH: every setting comes from the file, so that the file can change it.
    env: { PATH: process.env.PATH ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = jsonLines(child);
  await log.next((l) => l.msg === 'mcp-oidc-proxy listening', 'the proxy to listen');
  return {
    child,
    log,
    url: `http://127.0.0.1:${port}`,
    sighup: () => {
      const line = log.next(isReloadLine, 'the reload log line');
      child.kill('SIGHUP');
      return line;
    },
  };
}

describe('reloading the --config file of a running proxy (SIGHUP)', () => {
  let idp: DevIdp;
  let a: Backend;
  let b: Backend;
  let port: number;
  let file: string;
  let proxy: ProxyProcess;
  let pid: number | undefined;
  const jars = { alice: new CookieJar(), bob: new CookieJar() };

  interface FileSettings {
    emails?: string[];
    target?: string;
    level?: string;
    port?: string;
    extra?: string;
  }
  let current: Required<Omit<FileSettings, 'extra'>>;

  /** Rewrites the config file, changing only what is given. */
  function writeConfig(change: FileSettings = {}): void {
    const { extra = '', ...rest } = change;
    current = { ...current, ...rest };
    const text = [
      'server:',
      '  host: 127.0.0.1',
      `  port: ${current.port}`,
      `  public_url: http://127.0.0.1:${port}`,
      'proxy:',
      `  target_url: ${current.target}`,
      'auth:',
      '  mode: oidc',
      'oidc:',
      `  discovery_url: ${idp.issuer}/.well-known/openid-configuration`,
      `  client_id: ${CLIENT_ID}`,
      `  client_secret: ${CLIENT_SECRET}`,
      '  scopes: openid email profile groups offline_access',
      'policy:',
      `  allowed_emails: [${current.emails.join(', ')}]`,
      'log:',
      `  level: ${current.level}`,
      extra,
    ].join('\n');
    // Written aside and renamed into place, as editors and config managers do: the proxy never
    // reads a half-written file.
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
  }

  const get = (jar: CookieJar, path: string): Promise<Response> =>
    fetch(`${proxy.url}${path}`, { headers: { cookie: jar.get(proxy.url), accept: 'application/json' } });

  beforeAll(async () => {
    port = await freePort();
    idp = await startDevIdp({
      clients: [
        {
          client_id: CLIENT_ID,
          client_secret: CLIENT_SECRET,
          redirect_uris: [`http://127.0.0.1:${port}/callback`],
        },
      ],
    });
    [a, b] = await Promise.all([startBackend('A'), startBackend('B')]);
    file = join(dir, 'proxy.yaml');
    current = {
      emails: ['alice@example.com', 'bob@other.org'],
      target: a.url,
      level: 'info',
      port: String(port),
    };
    writeConfig();
    proxy = await startProxyProcess(file, port);
    pid = proxy.child.pid;
    for (const [user, jar] of [
      [alice, jars.alice],
      [bob, jars.bob],
    ] as const) {
      const landed = await loginThroughBrowserless(`${proxy.url}/login?rd=%2Fwhoami`, user, { jar });
      expect(JSON.parse(landed.body)).toEqual({ backend: 'A', url: '/whoami', user: user.username });
    }
  });
  afterAll(async () => {
    if (proxy?.child.exitCode === null) await terminate(proxy.child);
    await Promise.all([a?.close(), b?.close()]);
    await idp?.close();
  });

  it('an allow-list change refuses a logged-in user at once, while her open stream runs to its end', async () => {
    const stream = await openStream(`${proxy.url}/events`, jars.alice.get(proxy.url));
    await stream.waitFor('data: A open');

    writeConfig({ emails: ['bob@other.org'] });
    const line = await proxy.sighup();
    expect(line).toMatchObject({
      level: 'info',
      trigger: 'SIGHUP',
      applied: ['ALLOWED_EMAILS'],
      needs_restart: [],
      msg: 'configuration reloaded: applied ALLOWED_EMAILS',
    });

    // The same session as before, no new login: refused now. Bob still passes.
    const refused = await get(jars.alice, '/mcp');
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: string }).error).toBe('access_denied');
    expect(((await (await get(jars.bob, '/whoami')).json()) as { user: string }).user).toBe('bob');

    // The stream opened before the reload was not dropped: it carries on and ends normally.
    a.send('after the reload');
    await stream.waitFor('data: after the reload');
    a.endStreams();
    expect(await stream.ended()).toContain('data: after the reload');

    // No restart: the same process, listening once.
    expect(proxy.child.pid).toBe(pid);
    expect(proxy.child.exitCode).toBeNull();
    expect(proxy.log.lines.filter((l) => l.msg === 'mcp-oidc-proxy listening')).toHaveLength(1);
  });

  it('refuses an invalid file with a line naming each key, and keeps the running configuration', async () => {
    writeConfig({ emails: ['alice@example.com'], port: 'abc', target: 'ftp://not-http.example' });
    const line = await proxy.sighup();
    expect(line.level).toBe('error');
    expect(line.msg).toMatch(/^configuration reload refused, keeping the current configuration: /);
    expect(line.msg).toContain(`SERVER_PORT="abc" (from file ${file}): must be an integer from 0 to 65535`);
    expect(line.msg).toContain('PROXY_TARGET_URL="ftp://not-http.example"');
    // Nothing of the refused file applies, not even its valid allow-list.
    expect((await get(jars.alice, '/mcp')).status).toBe(403);
    expect((await get(jars.bob, '/whoami')).status).toBe(200);
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    expect(metrics).toContain('mcp_oidc_proxy_config_reloads_total{result="rejected"} 1');
    expect(metrics).toContain('mcp_oidc_proxy_config_reloads_total{result="applied"} 1');
    writeConfig({ emails: ['bob@other.org'], port: String(port), target: a.url });
  });

  it('a LOG_LEVEL change takes effect', async () => {
    writeConfig({ level: 'warn' });
    // Announced at the old, more verbose level: turning logging down still says so.
    expect(await proxy.sighup()).toMatchObject({ level: 'info', applied: ['LOG_LEVEL'] });
    expect((await get(jars.bob, '/quiet-marker')).status).toBe(200);
    // A fence: an error line is written after the request's access line would have been.
    writeConfig({ port: 'abc' });
    expect((await proxy.sighup()).level).toBe('error');
    expect(proxy.log.lines.some((l) => l.path === '/quiet-marker')).toBe(false);

    writeConfig({ level: 'debug', port: String(port) });
    expect(await proxy.sighup()).toMatchObject({ level: 'info', applied: ['LOG_LEVEL'] });
    const access = proxy.log.next((l) => l.path === '/loud-marker', 'the access line at debug');
    expect((await get(jars.bob, '/loud-marker')).status).toBe(200);
    expect(await access).toMatchObject({ msg: 'request', status: 200 });
  });

  it('a target change sends new requests to the new backend, while a stream on the old one continues', async () => {
    const stream = await openStream(`${proxy.url}/events`, jars.bob.get(proxy.url));
    await stream.waitFor('data: A open');

    writeConfig({ target: b.url });
    expect(await proxy.sighup()).toMatchObject({ applied: ['PROXY_TARGET_URL'] });
    expect(await (await get(jars.bob, '/whoami')).json()).toEqual({
      backend: 'B',
      url: '/whoami',
      user: 'bob',
    });
    const health = (await (await fetch(`${proxy.url}/health`)).json()) as { status: string };
    expect(health.status).toBe('healthy');

    expect(a.openStreams()).toBe(1);
    a.send('still on A');
    await stream.waitFor('data: still on A');
    a.endStreams();
    expect(await stream.ended()).toContain('data: still on A');
    // New streams open on B.
    const onB = await openStream(`${proxy.url}/events`, jars.bob.get(proxy.url));
    await onB.waitFor('data: B open');
    b.endStreams();
    await onB.ended();
    // The old pool closed once its last stream ended: no idle connection to A is kept (an
    // idle one would otherwise stay for the pool's 4 s keep-alive).
    const connectionsToA = (): Promise<number> =>
      new Promise((resolve, reject) => a.server.getConnections((err, n) => (err ? reject(err) : resolve(n))));
    await waitFor(async () => (await connectionsToA()) === 0, 1500, 'the old pool to close');
  });

  it('a rate limit change applies to the next request', async () => {
    const login = (): Promise<number> =>
      fetch(`${proxy.url}/login`, { redirect: 'manual' }).then((r) => r.status);
    writeConfig({ extra: 'rate_limit:\n  auth_per_minute: 1\n  per_minute: 1000\n' });
    expect(await proxy.sighup()).toMatchObject({
      applied: ['AUTH_RATE_LIMIT_PER_MINUTE', 'RATE_LIMIT_PER_MINUTE'],
    });
    expect(await login()).toBe(302);
    expect(await login()).toBe(429);
    writeConfig();
    expect(await proxy.sighup()).toMatchObject({
      applied: ['AUTH_RATE_LIMIT_PER_MINUTE', 'RATE_LIMIT_PER_MINUTE'],
    });
    expect(await login()).toBe(302);
  });

  it('names a changed setting that needs a restart, and keeps its old value', async () => {
    const other = await freePort();
    writeConfig({ port: String(other), extra: 'session:\n  store: redis\n' });
    const line = await proxy.sighup();
    expect(line).toMatchObject({
      level: 'warn',
      applied: [],
      needs_restart: ['SERVER_PORT', 'SESSION_STORE'],
      msg: 'configuration reloaded: changed but needs a restart: SERVER_PORT, SESSION_STORE',
    });
    // Still on the old port, with the sessions it had.
    expect((await get(jars.bob, '/whoami')).status).toBe(200);
    await expect(fetch(`http://127.0.0.1:${other}/health`)).rejects.toThrow();
    expect(proxy.child.pid).toBe(pid);
  });
});

describe('CONFIG_WATCH: reloading when the file changes, without a signal', () => {
  let a: Backend;
  let b: Backend;
  let proxy: ProxyProcess;

  beforeAll(async () => {
    [a, b] = await Promise.all([startBackend('A'), startBackend('B')]);
  });
  afterAll(async () => {
    if (proxy?.child.exitCode === null) await terminate(proxy.child);
    await Promise.all([a?.close(), b?.close()]);
  });

  it('applies an edit of the watched file', async () => {
    const port = await freePort();
    const watched = mkdtempSync(join(dir, 'watched-'));
    const file = join(watched, 'proxy.yaml');
    const text = (target: string): string =>
      `config:\n  watch: true\nauth:\n  mode: bypass\nserver:\n  host: 127.0.0.1\n  port: ${port}\nproxy:\n  target_url: ${target}\n`;
    writeFileSync(file, text(a.url));
    proxy = await startProxyProcess(file, port);
    expect(
      proxy.log.lines.some((l) => l.msg === 'watching the configuration file for changes (CONFIG_WATCH)'),
    ).toBe(true);
    expect(((await (await fetch(`${proxy.url}/x`)).json()) as { backend: string }).backend).toBe('A');

    const reloaded = proxy.log.next(isReloadLine, 'the reload after the edit');
    writeFileSync(file, text(b.url));
    expect(await reloaded).toMatchObject({ trigger: 'file change', applied: ['PROXY_TARGET_URL'] });
    expect(((await (await fetch(`${proxy.url}/x`)).json()) as { backend: string }).backend).toBe('B');
  });
});

describe('reloading MCP access rules (SIGHUP)', () => {
  let backend: Backend;
  let proxy: ProxyProcess;

  beforeAll(async () => {
    backend = await startBackend('A');
  });
  afterAll(async () => {
    if (proxy?.child.exitCode === null) await terminate(proxy.child);
    await backend?.close();
  });

  it('applies new rules, refuses invalid ones naming every problem, and keeps the last valid ones', async () => {
    const port = await freePort();
    const file = join(dir, 'mcp-access.yaml');
    const text = (rules: string): string =>
      `auth:\n  mode: bypass\nserver:\n  host: 127.0.0.1\n  port: ${port}\nproxy:\n  target_url: ${backend.url}\nmcp_access:\n  default: deny\n  rules:\n${rules}`;
    const search = '    - tools: [search]\n';
    const both = `${search}    - tools: ["read_*"]\n      allow: {}\n`;
    writeFileSync(file, text(search));
    proxy = await startProxyProcess(file, port);

    writeFileSync(file, text(both));
    expect(await proxy.sighup()).toMatchObject({ level: 'info', applied: ['MCP_ACCESS'] });

    // Rules naming people (no user in bypass mode) and a misspelt key: refused, both named.
    writeFileSync(
      file,
      text(`${both}    - prompts: ["*"]\n      allow: { groups: [admins] }\n    - tool: [x]\n`),
    );
    const refused = await proxy.sighup();
    expect(refused.level).toBe('error');
    expect(refused.problems).toEqual([
      `MCP_ACCESS (from file ${file}): mcp_access.rules[3].tool is not a known key; did you mean tools? (the keys here are tools, prompts, resources, allow, scope)`,
      `MCP_ACCESS (from file ${file}): mcp_access.rules[3] names no tools, prompts or resources: give at least one list of name patterns`,
    ]);
    writeFileSync(file, text(`${both}    - prompts: ["*"]\n      allow: { groups: [admins] }\n`));
    expect(((await proxy.sighup()).problems as string[])[0]).toContain(
      'mcp_access.rules[2].allow names emails, domains or groups, but in bypass mode there is no user',
    );

    // The rules running are still the last accepted ones: the same text again changes nothing.
    writeFileSync(file, text(both));
    expect(await proxy.sighup()).toMatchObject({ msg: 'configuration reloaded: nothing changed' });
    expect(proxy.child.exitCode).toBeNull();
  });
});

describe('reload of a proxy started in process', () => {
  let backend: Listening;
  let proxy: TestProxy | undefined;
  const base = { RATE_LIMIT_PER_MINUTE: '0' };

  beforeAll(async () => {
    backend = await listen(
      createServer((req, res) => {
        req.resume();
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ headers: req.headers }));
      }),
    );
  });
  afterAll(async () => {
    await proxy?.close();
    await backend.close();
  });

  /** A new configuration as a reload would load it: the proxy's env plus `change`. */
  const next = (change: Record<string, string>) =>
    loadConfig({
      env: {
        AUTH_MODE: 'bypass',
        SERVER_HOST: '127.0.0.1',
        SERVER_PORT: '0',
        LOG_LEVEL: 'debug',
        PROXY_TARGET_URL: backend.url,
        ...base,
        ...change,
      },
    });

  it('swaps the rate limits, header settings, allowed origins and trusted proxies', async () => {
    proxy = await startTestProxy({ PROXY_TARGET_URL: backend.url, ...base });
    const url = proxy.url;
    const echo = async (init: RequestInit = {}): Promise<Response> => fetch(`${url}/x`, init);

    // Rate limiting, off at start, on after the reload.
    for (let i = 0; i < 3; i++) expect((await echo()).status).toBe(200);
    expect(proxy.proxy.reload(next({ RATE_LIMIT_PER_MINUTE: '2' })).applied).toEqual([
      'RATE_LIMIT_PER_MINUTE',
    ]);
    expect((await echo()).status).toBe(200);
    expect((await echo()).status).toBe(200);
    expect((await echo()).status).toBe(429);
    // ...and off again.
    proxy.proxy.reload(next({}));
    for (let i = 0; i < 3; i++) expect((await echo()).status).toBe(200);

    // A trusted proxy's X-Forwarded-For is believed only once it is listed.
    const forwarded = async (): Promise<string> => {
      const body = (await (await echo({ headers: { 'x-forwarded-for': '203.0.113.9' } })).json()) as {
        headers: Record<string, string>;
      };
      return body.headers['x-forwarded-for'] as string;
    };
    expect(await forwarded()).toBe('127.0.0.1');
    proxy.proxy.reload(next({ TRUSTED_PROXIES: '127.0.0.1' }));
    expect(await forwarded()).toBe('203.0.113.9, 127.0.0.1');

    // Origins: refused, then allowed.
    const fromApp = { headers: { origin: 'https://app.example.com' } };
    expect((await echo(fromApp)).status).toBe(403);
    proxy.proxy.reload(next({ TRUSTED_PROXIES: '127.0.0.1', ALLOWED_ORIGINS: 'https://app.example.com' }));
    expect((await echo(fromApp)).status).toBe(200);

    // Header settings: the CSP on the proxy's own answers and on proxied ones, and identity
    // header names (a client's copy of a newly configured name is removed).
    const changes = proxy.proxy.reload(
      next({
        TRUSTED_PROXIES: '127.0.0.1',
        ALLOWED_ORIGINS: 'https://app.example.com',
        CONTENT_SECURITY_POLICY: "default-src 'none'",
        IDENTITY_HEADER_USER: 'X-Remote-User',
      }),
    );
    expect(changes.applied).toEqual(['CONTENT_SECURITY_POLICY', 'IDENTITY_HEADER_USER']);
    const proxied = await echo({ headers: { 'x-remote-user': 'mallory' } });
    expect(proxied.headers.get('content-security-policy')).toBe("default-src 'none'");
    const seen = ((await proxied.json()) as { headers: Record<string, string> }).headers;
    expect(seen['x-remote-user']).toBeUndefined();
    const own = await fetch(`${url}/health`);
    expect(own.headers.get('content-security-policy')).toBe("default-src 'none'");

    const line = proxy.logs
      .filter((l) => typeof l.msg === 'string' && l.msg.startsWith('configuration reloaded'))
      .at(-1);
    expect(line).toMatchObject({
      trigger: 'reload',
      applied: ['CONTENT_SECURITY_POLICY', 'IDENTITY_HEADER_USER'],
    });
  });
});
