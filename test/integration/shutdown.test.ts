import { type ChildProcess, spawn } from 'node:child_process';
import { type IncomingMessage, request, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type Listening, startBackend, waitFor } from '../helpers/servers.js';

// Runs the built CLI (`npm test` builds dist before vitest; run `npm run build` first locally).
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

interface Cli {
  child: ChildProcess;
  url: string;
  port: number;
  logs: Array<Record<string, unknown>>;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

/** Starts `node dist/cli/main.js` and resolves once it logged that it listens. */
async function startCli(env: Record<string, string>): Promise<Cli> {
  const port = await freePort();
  const child = spawn(process.execPath, [CLI], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      AUTH_MODE: 'bypass',
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: String(port),
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  let errText = '';
  let partial = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    const parts = (partial + text).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    errText += text;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })),
  );
  const cli: Cli = { child, port, url: `http://127.0.0.1:${port}`, logs, stderr: () => errText, exited };
  running.add(cli);
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  await waitFor(
    () => {
      if (gone) throw new Error(`the CLI exited before listening: ${errText}`);
      return logs.some((l) => l.msg === 'mcp-oidc-proxy listening');
    },
    10_000,
    'the "mcp-oidc-proxy listening" log line',
  );
  return cli;
}

/** Every CLI a test started; any still running at the end of a test is killed. */
const running = new Set<Cli>();

/** Whether a new TCP connection to the port is refused. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

interface Outcome {
  status?: number;
  body: string;
  /** 'end': the response arrived complete; 'error': it was cut. */
  how: 'end' | 'error';
  at: number;
}

/** A GET on its own connection; `onData` sees each chunk as it arrives. */
function get(url: string, onData?: (chunk: string) => void): { done: Promise<Outcome> } {
  let isSettled = false;
  const done = new Promise<Outcome>((resolve) => {
    let status: number | undefined;
    let body = '';
    const settle = (how: Outcome['how']): void => {
      if (isSettled) return;
      isSettled = true;
      resolve({ status, body, how, at: Date.now() });
    };
    const req = request(url, { agent: false }, (res) => {
      status = res.statusCode;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
        onData?.(chunk);
      });
      res.on('end', () => settle(res.complete ? 'end' : 'error'));
      res.on('error', () => settle('error'));
      res.on('aborted', () => settle('error'));
    });
    req.on('error', () => settle('error'));
    req.end();
  });
  return { done };
}

describe('graceful shutdown of the CLI process', () => {
  let backend: Listening;
  const received: string[] = [];
  const closedEarly: string[] = [];
  const slow: ServerResponse[] = [];
  const answerSlow = (): void => {
    for (const res of slow.splice(0)) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('slow done');
    }
  };

  beforeAll(async () => {
    backend = await startBackend((req: IncomingMessage, res: ServerResponse) => {
      const path = req.url ?? '';
      received.push(path);
      res.on('close', () => {
        if (!res.writableFinished) closedEarly.push(path);
      });
      if (path === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: hello\n\n');
        return;
      }
      if (path === '/slow') {
        // A slow tool call: answered when the test says so (once shutdown is under way).
        slow.push(res);
        return;
      }
      if (path === '/slow-forever') return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
    });
  });
  afterEach(async () => {
    for (const cli of running) {
      if (cli.child.exitCode === null && cli.child.signalCode === null) cli.child.kill('SIGKILL');
      await cli.exited;
    }
    running.clear();
  });
  afterAll(async () => {
    await backend.close();
  });

  it('on SIGTERM finishes in-flight requests, ends SSE cleanly, refuses new connections, exits 0', async () => {
    const cli = await startCli({ PROXY_TARGET_URL: backend.url, SHUTDOWN_TIMEOUT: '5' });

    let sseFirstEvent = false;
    const sse = get(`${cli.url}/sse`, () => {
      sseFirstEvent = true;
    });
    await waitFor(() => sseFirstEvent, 5000, 'the first SSE event');
    // Over a keep-alive connection (fetch), so the answer must tell the client not to reuse it.
    let slowSettled = false;
    const slowCall = fetch(`${cli.url}/slow`).then(async (res) => {
      const result = {
        status: res.status,
        body: await res.text(),
        connection: res.headers.get('connection'),
      };
      slowSettled = true;
      return result;
    });
    await waitFor(() => slow.length === 1, 5000, 'the slow request to reach the backend');

    const signalledAt = Date.now();
    cli.child.kill('SIGTERM');

    // The listener closes at once, while the slow request is still being answered.
    await waitFor(() => refused(cli.port), 3000, 'new connections to be refused');
    expect(slowSettled).toBe(false);

    const streamEnd = await sse.done;
    expect(streamEnd.status).toBe(200);
    expect(streamEnd.how).toBe('end');
    expect(streamEnd.body).toBe('data: hello\n\n');

    // Half a second into the shutdown the backend answers; the process is still there to relay it.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, signalledAt + 500 - Date.now())));
    expect(cli.child.exitCode).toBeNull();
    answerSlow();
    expect(await slowCall).toEqual({ status: 200, body: 'slow done', connection: 'close' });

    const exit = await cli.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at - signalledAt).toBeLessThan(4000);
    expect(cli.logs.some((l) => l.msg === 'shutdown complete')).toBe(true);
    expect(closedEarly).not.toContain('/slow');
    // The upstream half of the SSE stream was released as well.
    await waitFor(() => closedEarly.includes('/sse'), 3000, 'the upstream SSE request to be closed');
    expect(cli.stderr()).not.toMatch(/error/i);
  });

  it('on SIGINT exits 0 promptly, idle keep-alive connections included', async () => {
    const cli = await startCli({ PROXY_TARGET_URL: backend.url, SHUTDOWN_TIMEOUT: '5' });
    // A keep-alive connection left idle after its response must not hold the shutdown up.
    const res = await fetch(`${cli.url}/ping`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('ok');

    const signalledAt = Date.now();
    cli.child.kill('SIGINT');
    const exit = await cli.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at - signalledAt).toBeLessThan(3000);
    expect(cli.logs.some((l) => l.msg === 'signal received' && l.signal === 'SIGINT')).toBe(true);
    expect(cli.logs.some((l) => l.msg === 'shutdown complete')).toBe(true);
  });

  it("on SIGTERM closes ADMIN_LISTEN's listener too, keeping an idle admin connection from holding it up", async () => {
    const adminPort = await freePort();
    const token = 'an-admin-token-for-the-shutdown-test-0123456789';
    const cli = await startCli({
      PROXY_TARGET_URL: backend.url,
      SHUTDOWN_TIMEOUT: '5',
      ADMIN_ENABLED: 'true',
      ADMIN_TOKEN: token,
      ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
    });
    // Keep-alive, left idle: it must not hold the shutdown up.
    const status = await fetch(`http://127.0.0.1:${adminPort}/admin/api/status`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(status.status).toBe(200);
    await status.text();

    const signalledAt = Date.now();
    cli.child.kill('SIGTERM');
    await waitFor(() => refused(adminPort), 3000, 'new admin connections to be refused');
    const exit = await cli.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at - signalledAt).toBeLessThan(3000);
    expect(await refused(cli.port)).toBe(true);
  });

  it('names ADMIN_LISTEN when its port is taken, and leaves nothing listening', async () => {
    const taken = await startBackend((_req, res) => res.end());
    let child: ChildProcess | undefined;
    try {
      const port = await freePort();
      child = spawn(process.execPath, [CLI], {
        cwd: ROOT,
        env: {
          PATH: process.env.PATH ?? '',
          AUTH_MODE: 'bypass',
          SERVER_HOST: '127.0.0.1',
          SERVER_PORT: String(port),
          PROXY_TARGET_URL: backend.url,
          ADMIN_ENABLED: 'true',
          ADMIN_TOKEN: 'an-admin-token-for-the-shutdown-test-0123456789',
          ADMIN_LISTEN: `127.0.0.1:${taken.port}`,
        },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr?.setEncoding('utf8').on('data', (text: string) => {
        stderr += text;
      });
      const code = await new Promise<number | null>((resolve) => child?.once('exit', resolve));
      expect(code).toBe(1);
      expect(stderr).toContain('for the admin surface (EADDRINUSE)');
      expect(stderr).toContain('set ADMIN_LISTEN to a free host:port');
      expect(await refused(port)).toBe(true);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await taken.close();
    }
  });

  it('cuts a request still running at SHUTDOWN_TIMEOUT and still exits 0', async () => {
    const cli = await startCli({ PROXY_TARGET_URL: backend.url, SHUTDOWN_TIMEOUT: '1' });
    const stuck = get(`${cli.url}/slow-forever`);
    await waitFor(
      () => received.includes('/slow-forever'),
      5000,
      'the never-ending request to reach the backend',
    );

    const signalledAt = Date.now();
    cli.child.kill('SIGTERM');
    const exit = await cli.exited;
    expect(exit).toMatchObject({ code: 0, signal: null });
    expect(exit.at - signalledAt).toBeGreaterThanOrEqual(900);
    expect(exit.at - signalledAt).toBeLessThan(2500);

    const cut = await stuck.done;
    expect(cut.how).toBe('error');
    expect(cut.at - signalledAt).toBeGreaterThanOrEqual(900);
    // The upstream request was aborted too, not left running on the backend.
    await waitFor(() => closedEarly.includes('/slow-forever'), 3000, 'the backend request to be closed');
    expect(
      cli.logs.some((l) => l.msg === 'shutdown deadline reached: closing the remaining connections'),
    ).toBe(true);
  });
});
