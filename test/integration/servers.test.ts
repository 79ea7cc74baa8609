import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type McpTestServer, startMcpServer } from '../helpers/mcp-server.js';
import { untilExit } from '../helpers/process.js';
import { rawGet, startRecordingEcho } from '../helpers/raw-http.js';
import { type Listening, waitFor } from '../helpers/servers.js';
import { PROBE_COMMAND, type ServersProxy, startServersProxy } from '../helpers/servers-config.js';

/** Every request target `backend` received, in order. */
function recordRequests(backend: Listening): string[] {
  const seen: string[] = [];
  backend.server.on('request', (req: IncomingMessage) => seen.push(req.url ?? ''));
  return seen;
}

async function connectTo(url: string): Promise<Client> {
  const client = new Client({ name: 'servers-test', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return client;
}

async function toolNames(client: Client): Promise<string[]> {
  return (await client.listTools()).tools.map((tool) => tool.name).sort();
}

async function metricsText(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

/** The value of one series in a Prometheus text exposition; 0 when absent. */
function seriesValue(metrics: string, series: string): number {
  const line = metrics.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

describe('several servers behind one proxy (servers:, bypass mode): routing', () => {
  let search: McpTestServer;
  let searchSeen: string[];
  let echo: Listening & { seen: string[] };
  let running: ServersProxy;
  const clients: Client[] = [];

  beforeAll(async () => {
    [search, echo] = await Promise.all([startMcpServer(), startRecordingEcho()]);
    searchSeen = recordRequests(search);
    running = await startServersProxy([
      { name: 'search', path: '/search/mcp', url: `${search.url}/mcp` },
      { name: 'files', path: '/files/mcp', command: PROBE_COMMAND },
      { name: 'echo', path: '/echo/mcp', url: `${echo.url}/base` },
    ]);
  });
  afterAll(async () => {
    await Promise.all(clients.map((client) => client.close()));
    await running?.close();
    await Promise.all([search?.close(), echo?.close()]);
  });

  /** How many requests reached any backend: the HTTP ones' requests, the stdio one's children. */
  async function reachedBackends(): Promise<number> {
    const spawned = seriesValue(
      await metricsText(running.url),
      'mcp_oidc_proxy_stdio_spawns_total{server="files"}',
    );
    return searchSeen.length + echo.seen.length + spawned;
  }

  it("the SDK client reaches each server at its path and gets that server's tools", async () => {
    const [atSearch, atFiles] = await Promise.all([
      connectTo(`${running.url}/search/mcp`),
      connectTo(`${running.url}/files/mcp`),
    ]);
    clients.push(atSearch, atFiles);
    expect(await toolNames(atSearch)).toEqual(['count', 'echo', 'whoami']);
    expect(await toolNames(atFiles)).toEqual(
      expect.arrayContaining(['ask', 'crash', 'echo', 'seen', 'sleep', 'whoami']),
    );
    expect(await toolNames(atFiles)).not.toContain('count');

    const searched = await atSearch.callTool({ name: 'echo', arguments: { text: 'to search' } });
    expect(searched.content).toEqual([{ type: 'text', text: 'to search' }]);
    const probed = await atFiles.callTool({ name: 'whoami', arguments: {} });
    const { pid } = JSON.parse((probed.content as Array<{ text: string }>)[0]?.text ?? '{}') as {
      pid: number;
    };
    expect(pid).toEqual(expect.any(Number));
    // The sample server saw its own /mcp only: the public path's prefix is not passed on.
    expect(new Set(searchSeen)).toEqual(new Set(['/mcp']));

    const metrics = await metricsText(running.url);
    for (const server of ['search', 'files']) {
      expect(
        seriesValue(
          metrics,
          `mcp_oidc_proxy_proxy_requests_total{server="${server}",method="POST",outcome="ok",status="200"}`,
        ),
        server,
      ).toBeGreaterThan(0);
    }
    expect(seriesValue(metrics, 'mcp_oidc_proxy_stdio_spawns_total{server="files"}')).toBe(1);
  });

  it("a url server's backend gets the url's path plus what follows the server's path", async () => {
    const cases: Array<[string, string]> = [
      ['/echo/mcp', '/base'],
      ['/echo/mcp?x=1', '/base?x=1'],
      ['/echo/mcp/', '/base/'],
      ['/echo/mcp/sub/item?q=a%20b', '/base/sub/item?q=a%20b'],
    ];
    for (const [path, upstream] of cases) {
      const res = await fetch(`${running.url}${path}`);
      expect(res.status, path).toBe(200);
      expect(((await res.json()) as { url: string }).url, path).toBe(upstream);
    }
  });

  it('a path no server owns gets 404 JSON with a request id, and reaches no backend', async () => {
    const before = await reachedBackends();
    for (const path of [
      '/',
      '/other',
      '/files',
      '/files/mcpx',
      '/files/mcpx/y',
      '/search',
      '/mcp',
      '/echo',
    ]) {
      for (const method of ['GET', 'POST']) {
        const res = await fetch(`${running.url}${path}`, {
          method,
          headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
          ...(method === 'POST' ? { body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' } : {}),
        });
        expect(res.status, `${method} ${path}`).toBe(404);
        expect(res.headers.get('content-type')).toMatch(/^application\/json/);
        const body = (await res.json()) as Record<string, unknown>;
        expect(body).toEqual({
          error: 'not_found',
          error_description: `No MCP server is served at ${path}.`,
          request_id: res.headers.get('x-request-id'),
        });
        expect(body.request_id).toEqual(expect.any(String));
      }
    }
    expect(await reachedBackends()).toBe(before);
  });

  it('dot segments, encoded dots and empty segments never reach a server, the wrong one least of all', async () => {
    const before = await reachedBackends();
    const tricks = [
      '/files/mcp/../../search/mcp',
      '/files/mcp/%2e%2e/%2e%2e/search/mcp',
      '/files/mcp/%2E%2E/%2E%2E/search/mcp',
      '/files/mcp/.%2e/.%2e/search/mcp',
      '/echo/mcp/..%2f..%2fsearch/mcp',
      '/echo/mcp/..;/..;/search/mcp',
      '//search/mcp',
      '/files//mcp',
      '/./search/mcp',
      '/search/mcp/..',
      '/files/mcp%2f..%2f..%2fsearch%2fmcp',
      '/search%2fmcp',
    ];
    for (const target of tricks) {
      const res = await rawGet(running.url, target);
      expect(res.status, target).toBe(400);
      expect(res.json(), target).toMatchObject({ error: 'invalid_request' });
    }
    expect(await reachedBackends()).toBe(before);
  });

  it('/health reports every server by name', async () => {
    const res = await fetch(`${running.url}/health`);
    expect(res.status).toBe(200);
    const health = (await res.json()) as { status: string; checks: Record<string, unknown> };
    expect(health.status).toBe('healthy');
    expect(health.checks.proxy_target).toBeUndefined();
    expect(health.checks.servers).toEqual({
      search: { status: 'healthy' },
      files: { status: 'healthy', processes: expect.any(Number) },
      echo: { status: 'healthy' },
    });
  });
});

describe('several servers: /health when their backends go down', () => {
  let a: Listening;
  let b: Listening;
  let running: ServersProxy;

  beforeAll(async () => {
    [a, b] = await Promise.all([startRecordingEcho(), startRecordingEcho()]);
    running = await startServersProxy([
      { name: 'alpha', path: '/alpha/mcp', url: `${a.url}/mcp` },
      { name: 'beta', path: '/beta/mcp', url: `${b.url}/mcp` },
    ]);
  });
  afterAll(async () => {
    await running?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  const health = async (): Promise<{
    code: number;
    body: { status: string; checks: { servers: Record<string, { status: string; error?: string }> } };
  }> => {
    const res = await fetch(`${running.url}/health`);
    return { code: res.status, body: (await res.json()) as never };
  };

  it('one down: that one unhealthy, the proxy still 200; all down: 503', async () => {
    expect((await health()).code).toBe(200);

    // A report is reused for a second: wait for the one taken after the backend went away.
    await a.close();
    await waitFor(
      async () => (await health()).body.checks.servers.alpha?.status === 'unhealthy',
      3000,
      'alpha unhealthy',
    );
    const one = await health();
    expect(one.code).toBe(200);
    expect(one.body.status).toBe('healthy');
    expect(one.body.checks.servers.alpha).toMatchObject({
      status: 'unhealthy',
      error: expect.stringMatching(/^target not reachable/),
    });
    expect(one.body.checks.servers.beta).toEqual({ status: 'healthy' });
    // The other server still serves.
    expect((await fetch(`${running.url}/beta/mcp`)).status).toBe(200);
    const refused = await fetch(`${running.url}/alpha/mcp`);
    expect(refused.status).toBe(502);

    await b.close();
    await waitFor(async () => (await health()).code === 503, 3000, 'the proxy unhealthy');
    const none = await health();
    expect(none.code).toBe(503);
    expect(none.body.status).toBe('unhealthy');
    expect(Object.values(none.body.checks.servers).map((s) => s.status)).toEqual(['unhealthy', 'unhealthy']);

    const metrics = await metricsText(running.url);
    expect(
      seriesValue(
        metrics,
        'mcp_oidc_proxy_proxy_requests_total{server="beta",method="GET",outcome="ok",status="200"}',
      ),
    ).toBe(1);
    expect(metrics).toMatch(
      /mcp_oidc_proxy_proxy_requests_total\{server="alpha",method="GET",outcome="(error|refused)"/,
    );
  });
});

// The built CLI: `npm test` builds before vitest; run `npm run build` before running this alone.
const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

describe('check-config with servers:', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-servers-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('exits 2 naming each entry at fault: a path taken twice, a name taken twice, PROXY_TARGET_URL beside it', async () => {
    const file = join(dir, 'servers.yaml');
    writeFileSync(
      file,
      [
        'servers:',
        '  - {name: search, path: /search/mcp, url: "http://127.0.0.1:3001/mcp"}',
        '  - {name: files, path: /search/mcp, command: [node, server.js]}',
        '  - {name: search, path: /search/mcp/deeper, url: "http://127.0.0.1:3002/mcp"}',
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [MAIN, 'check-config', '--config', file], {
      env: { PATH: process.env.PATH ?? '', AUTH_MODE: 'bypass', PROXY_TARGET_URL: 'http://127.0.0.1:3000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const checked = await untilExit(child, 'check-config', 15_000);
    expect(checked.code).toBe(2);
    const source = `(from file ${file})`;
    expect(checked.stderr).toContain(
      `servers[1].path="/search/mcp" ${source}: overlaps servers[0].path (/search/mcp): a server owns its path and every path below it`,
    );
    expect(checked.stderr).toContain(
      `servers[2].path="/search/mcp/deeper" ${source}: overlaps servers[0].path`,
    );
    expect(checked.stderr).toContain(
      `servers[2].name="search" ${source}: is already the name of servers[0]; give every server its own name`,
    );
    expect(checked.stderr).toContain(
      'PROXY_TARGET_URL="http://127.0.0.1:3000" (from env): cannot be used with servers:',
    );
    expect(checked.stdout).not.toContain('configuration OK');
  });
});
