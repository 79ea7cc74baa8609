import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { whoami } from '../helpers/stdio-bridge.js';
import { allGone, connectClient, gone, PROBE_ARGS, runCli, startCliProxy } from '../helpers/stdio-proxy.js';
import { waitFor } from '../helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-stdio-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const ADMIN_TOKEN = randomBytes(36).toString('base64url');

/** The children of the first server, as the admin API reports them. */
async function adminChildren(url: string): Promise<Array<{ pid: number; sessions: string[] }>> {
  const res = await fetch(`${url}/admin/api/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(res.status).toBe(200);
  const status = (await res.json()) as {
    servers: Array<{ children: Array<{ pid: number; sessions: string[] }> }>;
  };
  return status.servers[0]!.children;
}

describe('mcp-oidc-proxy -- <stdio server>: the one-line CLI', () => {
  it('serves @modelcontextprotocol/server-memory: tools listed and called, DELETE ends the child', async () => {
    const memoryFile = join(dir, 'memory.json');
    const proxy = await startCliProxy(
      ['--auth-mode', 'bypass', '--port', '0', '--', 'node_modules/.bin/mcp-server-memory'],
      { STDIO_ENV: 'MEMORY_FILE_PATH', MEMORY_FILE_PATH: memoryFile, ADMIN_ENABLED: 'true', ADMIN_TOKEN },
    );
    const { client, transport } = await connectClient(`${proxy.url}/mcp`);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['create_entities', 'read_graph']));

    await client.callTool({
      name: 'create_entities',
      arguments: {
        entities: [{ name: 'proxy', entityType: 'program', observations: ['runs stdio servers'] }],
      },
    });
    const graph = await client.callTool({ name: 'read_graph', arguments: {} });
    expect(JSON.stringify(graph.content)).toContain('runs stdio servers');
    // The child got MEMORY_FILE_PATH through STDIO_ENV: it wrote there, not into node_modules.
    expect(readFileSync(memoryFile, 'utf8')).toContain('runs stdio servers');

    const children = await adminChildren(proxy.url);
    expect(children).toHaveLength(1);
    expect(children[0]!.sessions).toEqual([transport.sessionId]);
    const pid = children[0]!.pid;
    expect(gone(pid)).toBe(false);

    await transport.terminateSession();
    await waitFor(() => gone(pid), 5000, 'the child to end after DELETE');
    await waitFor(async () => (await adminChildren(proxy.url)).length === 0, 5000, 'the status without it');
    await client.close();
  });
});

describe('no orphans: every child ends with the proxy', () => {
  /** The proxy on the probe server that ignores SIGTERM, and the pids of two sessions' children. */
  async function proxyWithTwoChildren(env: Record<string, string> = {}) {
    const proxy = await startCliProxy(
      ['--auth-mode', 'bypass', '--', ...PROBE_ARGS, '--ignore-sigterm'],
      env,
    );
    const pids: number[] = [];
    for (let i = 0; i < 2; i++) {
      const { client } = await connectClient(`${proxy.url}/mcp`);
      pids.push((await whoami(client)).pid);
    }
    expect(new Set(pids).size).toBe(2);
    expect(pids.some(gone)).toBe(false);
    return { proxy, pids };
  }

  it('kill -9 of the proxy: the children end anyway', async () => {
    const { proxy, pids } = await proxyWithTwoChildren();
    proxy.child.kill('SIGKILL');
    await allGone(pids, 5000);
  });

  it('SIGTERM: the proxy exits and its children (deaf to SIGTERM) end within SHUTDOWN_TIMEOUT', async () => {
    const { proxy, pids } = await proxyWithTwoChildren({ SHUTDOWN_TIMEOUT: '1' });
    const exited = new Promise<number | null>((resolve) => proxy.child.once('exit', resolve));
    const start = performance.now();
    proxy.child.kill('SIGTERM');
    await allGone(pids, 1000 + 1000);
    expect(await exited).toBe(0);
    expect(performance.now() - start).toBeLessThan(1000 + 1000);
  });
});

describe("the proxy's secrets never reach a stdio child", () => {
  const secrets = {
    session: `session-${randomBytes(24).toString('hex')}`,
    client: `client-${randomBytes(12).toString('hex')}`,
    admin: ADMIN_TOKEN,
    redis: `redispw-${randomBytes(8).toString('hex')}`,
    otel: `otel-${randomBytes(12).toString('hex')}`,
  };

  it('by name or by value, whatever variable would carry one', async () => {
    const proxy = await startCliProxy(['--auth-mode', 'bypass', '--', ...PROBE_ARGS], {
      SESSION_SECRET: secrets.session,
      OIDC_CLIENT_SECRET: secrets.client,
      ADMIN_ENABLED: 'true',
      ADMIN_TOKEN: secrets.admin,
      SESSION_STORE: 'memory',
      REDIS_URL: `redis://:${secrets.redis}@127.0.0.1:6379`,
      // As the docs show it: URL-encoded; a variable holding just the token must not pass either.
      OTEL_EXPORTER_OTLP_HEADERS: `x-tenant=ops,authorization=Bearer%20${secrets.otel}`,
      // Innocent names passed on by STDIO_ENV, carrying the secrets' values (whole or inside).
      STDIO_ENV: 'APP_NOTE,APP_KEY,APP_URL,APP_HEADER,APP_PLAIN',
      APP_NOTE: `note ${secrets.session} end`,
      APP_KEY: secrets.client,
      APP_URL: `redis://:${secrets.redis}@cache:6379`,
      APP_HEADER: secrets.otel,
      APP_PLAIN: 'passed on',
      // Even a base variable a child always gets is held back when it carries a secret.
      LANG: `C.UTF-8 ${secrets.admin}`,
    });
    const { client } = await connectClient(`${proxy.url}/mcp`);
    const { env } = await whoami(client);

    expect(env.APP_PLAIN).toBe('passed on'); // STDIO_ENV works for an innocent value
    const names = Object.keys(env);
    for (const name of [
      'SESSION_SECRET',
      'OIDC_CLIENT_SECRET',
      'ADMIN_TOKEN',
      'REDIS_URL',
      'OTEL_EXPORTER_OTLP_HEADERS',
      'APP_NOTE',
      'APP_KEY',
      'APP_URL',
      'APP_HEADER',
      'LANG',
    ])
      expect(names).not.toContain(name);
    const values = Object.values(env).join('\n');
    for (const secret of Object.values(secrets)) expect(values).not.toContain(secret);

    // The operator learns which variables were held back, by name only.
    const warned = proxy.log.lines.filter((l) => l.level === 'warn' && typeof l.variable === 'string');
    expect(warned.map((l) => l.variable).sort()).toEqual([
      'APP_HEADER',
      'APP_KEY',
      'APP_NOTE',
      'APP_URL',
      'LANG',
    ]);
    expect(JSON.stringify(proxy.log.lines)).not.toContain(secrets.session);
    await client.close();
  });

  it('refuses STDIO_ENV naming a secret at start-up, saying so', async () => {
    const result = await runCli(['--auth-mode', 'bypass', '--', ...PROBE_ARGS], {
      SESSION_SECRET: secrets.session,
      STDIO_ENV: 'SESSION_SECRET',
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/STDIO_ENV.*SESSION_SECRET/);
    expect(result.stderr + result.stdout).not.toContain(secrets.session);
  });
});
