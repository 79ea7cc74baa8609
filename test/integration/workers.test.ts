// SERVER_WORKERS: the built CLI (`npm test` builds before vitest; run `npm run build` before
// running this file alone) with a primary and two workers on its own redis-server, in oidc mode
// against the dev IdP, so that sessions and the cookie key must really be shared.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DevIdp } from '../../src/demo/dev-idp.js';
import { loginThroughBrowserless } from '../helpers/headless-login.js';
import { oidcProxyEnv, startIdpFor } from '../helpers/oidc-stack.js';
import { type JsonLog, jsonLines, terminate, untilExit } from '../helpers/process.js';
import { type RedisServer, startRedisServer, stopAllRedisServers } from '../helpers/redis-server.js';
import { freePort, type Listening, startEchoBackend, waitFor } from '../helpers/servers.js';
import { gone } from '../helpers/stdio-proxy.js';

const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const ADMIN_TOKEN = 'an-admin-token-for-the-workers-test-only';
const alice = { username: 'alice', password: 'alice-password' };

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-workers-'));
const children = new Set<ChildProcess>();

function cli(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', SERVER_HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await stopAllRedisServers();
  rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: string;
}

/**
 * GET on a connection of its own (`Connection: close`, no agent): the primary hands each new
 * connection to the next worker, so a series of these reaches every worker.
 */
function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, headers: { connection: 'close', ...headers } }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('configuration', () => {
  it('refuses several workers on the memory store, naming SESSION_STORE (exit 2)', async () => {
    const run = await untilExit(
      cli([], { AUTH_MODE: 'bypass', SERVER_WORKERS: '2', SERVER_PORT: '0' }),
      'the CLI with SERVER_WORKERS=2',
      15_000,
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('SESSION_STORE="memory" (default): is memory but SERVER_WORKERS=2');
    expect(run.stderr).toContain('set SESSION_STORE=redis');
  });

  it('check-config shows SERVER_WORKERS=auto as one worker per CPU', async () => {
    const run = await untilExit(
      cli(['check-config'], { AUTH_MODE: 'bypass', SESSION_STORE: 'redis', SERVER_WORKERS: 'auto' }),
      'check-config',
      15_000,
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`# workers: ${availableParallelism()} (SERVER_WORKERS=auto: one per CPU)`);
  });
});

describe('SERVER_WORKERS=2 on Redis', () => {
  let redis: RedisServer;
  let idp: DevIdp;
  let backend: Listening;
  let primary: ChildProcess;
  let log: JsonLog;
  let url: string;
  let configFile: string;
  /** The session cookie of alice, who logged in through the workers. */
  let cookie: string;

  /** The pid of the worker that answered each of `n` admin status requests. */
  async function servingPids(n: number): Promise<number[]> {
    const pids: number[] = [];
    for (let i = 0; i < n; i++) {
      const res = await get(`${url}/admin/api/status`, { authorization: `Bearer ${ADMIN_TOKEN}` });
      expect(res.status).toBe(200);
      pids.push((JSON.parse(res.body) as { process: { pid: number } }).process.pid);
    }
    return pids;
  }

  function workerPids(): number[] {
    const line = log.lines.filter((l) => l.msg === 'every worker listens').at(-1);
    return (line?.worker_pids as number[] | undefined) ?? [];
  }

  beforeAll(async () => {
    redis = await startRedisServer(await freePort());
    backend = await startEchoBackend();
    configFile = join(dir, 'config.yaml');
    writeFileSync(configFile, 'policy:\n  allowed_domains: example.com\n');
    // The port is free when chosen, but the IdP (or another test file) may bind it before the
    // workers do: then the whole start is tried again on another port, as startOidcStack does.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      url = `http://127.0.0.1:${port}`;
      idp = await startIdpFor(url);
      primary = cli(['--config', configFile], {
        ...oidcProxyEnv(idp, url),
        SERVER_WORKERS: '2',
        SESSION_STORE: 'redis',
        REDIS_URL: redis.url,
        PROXY_TARGET_URL: backend.url,
        ADMIN_ENABLED: 'true',
        ADMIN_TOKEN,
        SHUTDOWN_TIMEOUT: '5',
      });
      log = jsonLines(primary);
      try {
        await log.next((l) => l.msg === 'every worker listens', 'every worker to listen', 60_000);
        break;
      } catch (err) {
        await idp.close();
        if (!String((err as Error).message).includes('EADDRINUSE') || attempt === 3) throw err;
      }
    }
  }, 90_000);

  afterAll(async () => {
    if (primary?.exitCode === null) primary.kill('SIGKILL');
    await Promise.all([idp?.close(), backend?.close()]);
  });

  it('starts two workers; the primary serves nothing and the connections reach both', async () => {
    const started = workerPids();
    expect(started).toHaveLength(2);
    expect(started).not.toContain(primary.pid);
    const pids = await servingPids(8);
    expect(new Set(pids)).toEqual(new Set(started));
  });

  it('shares one session key and the sessions: a login through the workers holds on each of them', async () => {
    // The login's steps (state cookie, callback, session) land on whichever worker: none of
    // them would work unless every worker seals and opens cookies with the same key.
    const landed = await loginThroughBrowserless(`${url}/login?rd=%2Fwhoami`, alice);
    expect(JSON.parse(landed.body)).toMatchObject({
      url: '/whoami',
      headers: { 'x-forwarded-user': 'alice' },
    });
    cookie = landed.jar.get(url);
    const from = log.lines.length;
    for (let i = 0; i < 6; i++) {
      const res = await get(`${url}/whoami`, { cookie });
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body).headers['x-forwarded-user']).toBe('alice');
    }
    // Each worker writes its own access lines: the other's may reach the primary's output later.
    const servedBy = (): Set<unknown> =>
      new Set(
        log.lines
          .slice(from)
          .filter((l) => l.path === '/whoami' && l.status === 200)
          .map((l) => l.pid),
      );
    await waitFor(() => servedBy().size === 2, 5000, 'both workers to log the requests they served');
    expect(servedBy()).toEqual(new Set(workerPids()));
  });

  it('/metrics counts the requests of every worker, not of the one scraped', async () => {
    const metrics = async (): Promise<number> => {
      const res = await get(`${url}/metrics`);
      expect(res.status).toBe(200);
      return [...res.body.matchAll(/^mcp_oidc_proxy_http_requests_total\{[^}]*route="admin"[^}]*\} (\d+)$/gm)]
        .map((m) => Number(m[1]))
        .reduce((a, b) => a + b, 0);
    };
    const before = await metrics();
    const pids = await servingPids(10);
    expect(new Set(pids).size).toBe(2);
    // Whichever worker answers the scrape: the sum over both.
    expect(await metrics()).toBe(before + 10);
    expect(await metrics()).toBe(before + 10);
  });

  it('starts another worker when one is killed, and the requests keep being answered', async () => {
    const [victim, survivor] = workerPids() as [number, number];
    const restarted = log.next(
      (l) => l.msg === 'worker exited: starting another' && l.worker_pid === victim,
      'the primary to notice the dead worker',
    );
    const listening = log.next(
      (l) => l.msg === 'mcp-oidc-proxy listening' && l.pid !== victim && l.pid !== survivor,
      'a new worker to listen',
      60_000,
    );
    process.kill(victim, 'SIGKILL');
    const exitLine = await restarted;
    expect(exitLine).toMatchObject({ signal: 'SIGKILL', level: 'error' });
    // Meanwhile the other worker answers every connection.
    for (const pid of await servingPids(4)) expect(pid).not.toBe(victim);
    const replacement = (await listening).pid as number;
    await waitFor(
      async () => (await servingPids(4)).includes(replacement),
      20_000,
      'the new worker to serve',
    );
    expect((await get(`${url}/whoami`, { cookie })).status).toBe(200);
  }, 90_000);

  it('SIGHUP reloads the configuration in every worker', async () => {
    writeFileSync(configFile, 'policy:\n  allowed_domains: example.com,example.org\n');
    const workers = new Set<unknown>();
    const reloads = log.next((l) => {
      if (l.trigger === 'SIGHUP' && (l.applied as string[] | undefined)?.includes('ALLOWED_DOMAINS'))
        workers.add(l.pid);
      return workers.size === 2;
    }, 'a reload line from each worker');
    primary.kill('SIGHUP');
    await reloads;
    expect(workers).toEqual(new Set(await servingPids(4)));
  });

  it('SIGTERM shuts every worker down; the primary exits 0 after them', async () => {
    const pids = [...new Set(await servingPids(4))];
    const code = await terminate(primary);
    expect(code).toBe(0);
    for (const pid of pids) expect(gone(pid), `worker ${pid}`).toBe(true);
    const completes = log.lines.filter((l) => l.msg === 'shutdown complete').map((l) => l.pid);
    expect(new Set(completes)).toEqual(new Set(pids));
    expect(log.lines.at(-1)).toMatchObject({ msg: 'every worker exited', exit_code: 0, role: 'primary' });
  }, 30_000);
});
