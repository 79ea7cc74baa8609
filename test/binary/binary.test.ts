// The single executable (Node SEA) from `npm run build:binary`. Builds nothing itself and is not
// part of the default `vitest run` (see vitest.config.ts): run `npm run build:binary` and then
// `npm run test:binary`. The binary runs from an empty temp dir, so no node_modules is in reach.
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startOtlpReceiver } from '../helpers/otlp-receiver.js';
import { type Finished, firstHealthy, jsonLines, terminate, untilExit } from '../helpers/process.js';
import { startRedisServer } from '../helpers/redis-server.js';
import { freePort, type Listening, startEchoBackend, waitFor } from '../helpers/servers.js';

const BUILT = fileURLToPath(new URL('../../dist/bin/mcp-oidc-proxy-linux-x64', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

// A missing binary fails the whole file (rather than skipping its tests).
if (!existsSync(BUILT)) {
  throw new Error(
    `${BUILT} does not exist: run \`npm run build:binary\` first (then \`npm run test:binary\`)`,
  );
}
const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-bin-'));
const BIN = join(dir, 'mcp-oidc-proxy');
const children = new Set<ChildProcess>();

beforeAll(() => copyFileSync(BUILT, BIN));
afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Only PATH: the developer's or CI's own settings must not leak into the child. */
function launch(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(BIN, args, {
    cwd: dir,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function run(args: string[], env: Record<string, string> = {}): Promise<Finished> {
  return untilExit(launch(args, env), `binary ${args.join(' ')}`, 15_000);
}

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1]) / 1024;
}

describe('single executable (dist/bin/mcp-oidc-proxy-linux-x64)', () => {
  it('prints the package version', async () => {
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(PACKAGE.version);
    expect(r.stderr).toBe('');
  });

  it('check-config validates a bypass config, also from a YAML file', async () => {
    const fromEnv = await run(['check-config'], { AUTH_MODE: 'bypass' });
    expect(fromEnv.code).toBe(0);
    expect(fromEnv.stdout).toMatch(/configuration OK/);
    expect(fromEnv.stderr).toBe('');

    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'auth:\n  mode: bypass\nserver:\n  port: 9123\n');
    const fromYaml = await run(['check-config', '--config', file]);
    expect(fromYaml.stderr).toBe('');
    expect(fromYaml.code).toBe(0);
    expect(fromYaml.stdout).toMatch(/SERVER_PORT\s+= 9123/);
  });

  describe('serve with AUTH_MODE=bypass', () => {
    let backend: Listening | undefined;
    afterAll(async () => {
      await backend?.close();
    });

    it('answers /health quickly, proxies to the backend and stops on SIGTERM', async () => {
      backend = await startEchoBackend();
      const port = await freePort();
      const started = performance.now();
      const child = launch([], {
        AUTH_MODE: 'bypass',
        SERVER_HOST: '127.0.0.1',
        SERVER_PORT: String(port),
        PROXY_TARGET_URL: backend.url,
      });
      const { ms, body } = await firstHealthy(`http://127.0.0.1:${port}/health`, child, started);
      expect(body).toMatchObject({ status: 'healthy', checks: { proxy_target: { status: 'healthy' } } });
      // Generous bound for loaded CI machines; the figure itself is printed.
      expect(ms).toBeLessThan(2_000);

      const proxied = await fetch(`http://127.0.0.1:${port}/mcp`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: '{"jsonrpc":"2.0","id":1,"method":"ping"}',
      });
      expect(proxied.status).toBe(200);
      expect(await proxied.json()).toMatchObject({ method: 'POST', url: '/mcp' });

      await new Promise((r) => setTimeout(r, 500));
      const rss = rssMb(child.pid as number);
      console.log(
        `binary serve: first healthy /health after ${ms.toFixed(0)} ms, idle RSS ${rss.toFixed(1)} MB`,
      );
      expect(await terminate(child)).toBe(0);
    });

    it('exports OpenTelemetry spans with TRACING_ENABLED=true (and honours OTEL_*)', async () => {
      backend ??= await startEchoBackend();
      const receiver = await startOtlpReceiver();
      try {
        const port = await freePort();
        const child = launch([], {
          AUTH_MODE: 'bypass',
          SERVER_HOST: '127.0.0.1',
          SERVER_PORT: String(port),
          PROXY_TARGET_URL: backend.url,
          TRACING_ENABLED: 'true',
          TRACING_ENDPOINT: receiver.url,
          OTEL_SERVICE_NAME: 'proxy-from-binary',
          OTEL_EXPORTER_OTLP_HEADERS: 'x-collector-tenant=binary-test',
        });
        await firstHealthy(`http://127.0.0.1:${port}/health`, child, performance.now());
        const traceId = '0af7651916cd43dd8448eb211c80319c';
        const proxied = await fetch(`http://127.0.0.1:${port}/mcp`, {
          headers: { traceparent: `00-${traceId}-b7ad6b7169203331-01` },
        });
        const echo = (await proxied.json()) as { headers: Record<string, string> };
        expect(echo.headers.traceparent).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
        // SIGTERM: the graceful shutdown exports what is still buffered before the process exits.
        expect(await terminate(child)).toBe(0);
        const spans = receiver.spans.filter((s) => s.traceId === traceId);
        expect(spans.map((s) => `${s.kind} ${s.name}`).sort()).toEqual([
          'client HTTP GET',
          'server HTTP GET /mcp',
        ]);
        expect(spans[0]?.resource['service.name']).toBe('proxy-from-binary');
        expect(receiver.requests[0]?.headers['x-collector-tenant']).toBe('binary-test');
      } finally {
        await receiver.close();
      }
    });
  });

  it('serves a stdio MCP server given after --, and ends its child on SIGTERM', async () => {
    const port = await freePort();
    const probe = fileURLToPath(new URL('../helpers/stdio-probe-server.mjs', import.meta.url));
    const child = launch(
      ['--auth-mode', 'bypass', '--host', '127.0.0.1', '--port', String(port), '--', process.execPath, probe],
      { SESSION_SECRET: 'binary-stdio-secret-value-0123456789' },
    );
    await firstHealthy(`http://127.0.0.1:${port}/health`, child, performance.now());
    const client = new Client({ name: 'binary-stdio', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`)));
    const whoami = await client.callTool({ name: 'whoami', arguments: {} });
    const seen = JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}') as {
      pid: number;
      env: Record<string, string>;
    };
    expect(seen.env.PATH).toBe(process.env.PATH);
    expect(JSON.stringify(seen.env)).not.toContain('binary-stdio-secret-value');
    expect(await terminate(child)).toBe(0);
    // The child went with the proxy.
    expect(() => process.kill(seen.pid, 0)).toThrow();
    await client.close();
  });

  it('runs two workers (SERVER_WORKERS=2) on one port, each taking connections, and stops them on SIGTERM', async () => {
    const redis = await startRedisServer(await freePort());
    const backend = await startEchoBackend();
    try {
      const port = await freePort();
      const child = launch([], {
        AUTH_MODE: 'bypass',
        SERVER_HOST: '127.0.0.1',
        SERVER_PORT: String(port),
        PROXY_TARGET_URL: backend.url,
        SESSION_STORE: 'redis',
        REDIS_URL: redis.url,
        SERVER_WORKERS: '2',
      });
      const log = jsonLines(child);
      const up = await log.next((l) => l.msg === 'every worker listens', 'both workers to listen', 30_000);
      expect(up.worker_pids).toHaveLength(2);
      for (let i = 0; i < 4; i++) {
        // A connection of its own each (fetch would keep one alive): the primary deals them out in turn.
        const status = await new Promise<number | undefined>((resolve, reject) =>
          get(`http://127.0.0.1:${port}/mcp`, { agent: false }, (res) => {
            res.resume().on('end', () => resolve(res.statusCode));
          }).on('error', reject),
        );
        expect(status).toBe(200);
      }
      // Each access log line names the worker that answered.
      const served = (): Set<unknown> =>
        new Set(log.lines.filter((l) => l.path === '/mcp').map((l) => l.pid));
      await waitFor(() => served().size === 2, 10_000, 'an access log line from each worker');
      expect(served()).toEqual(new Set(up.worker_pids as number[]));
      expect(await terminate(child)).toBe(0);
    } finally {
      await Promise.all([redis.stop(), backend.close()]);
    }
  });

  it('demo serves the sample MCP server behind the proxy', async () => {
    const port = await freePort();
    const started = performance.now();
    const child = launch(['demo', '--port', String(port), '--host', '127.0.0.1']);
    const { ms, body } = await firstHealthy(`http://127.0.0.1:${port}/health`, child, started);
    expect(body).toMatchObject({ status: 'healthy' });
    const prm = await fetch(`http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp`);
    expect(prm.status).toBe(200);
    const rss = rssMb(child.pid as number);
    console.log(`binary demo: first healthy /health after ${ms.toFixed(0)} ms, RSS ${rss.toFixed(1)} MB`);
    expect(await terminate(child)).toBe(0);
  });
});
