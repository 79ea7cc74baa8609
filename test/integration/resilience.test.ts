import { type IncomingMessage, request, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import {
  freePort,
  type Listening,
  startBackend,
  startTestProxy,
  type TestProxy,
  waitFor,
} from '../helpers/servers.js';

interface ErrorBody {
  error: string;
  error_description: string;
  request_id: string;
}

async function expectJsonError(res: Response, status: number, error: string): Promise<ErrorBody> {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await res.json()) as ErrorBody;
  expect(body.error).toBe(error);
  expect(typeof body.error_description).toBe('string');
  expect(body.error_description.length).toBeGreaterThan(0);
  expect(body.request_id).toBe(res.headers.get('x-request-id'));
  return body;
}

/** Reads the circuit breaker gauge from the proxy's Prometheus endpoint. */
async function breakerGauge(proxy: TestProxy): Promise<number> {
  const text = await (await fetch(`${proxy.url}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('mcp_oidc_proxy_circuit_breaker_state{server="default"} '));
  expect(line).toBeDefined();
  return Number(line?.split(' ')[1]);
}

describe('resilience: upstream failures, timeouts, retries, breaker, health', () => {
  // Every test registers what it started; all of it is closed even when an assertion fails.
  const cleanups: Array<() => Promise<void>> = [];
  const backend = async (
    handler: (req: IncomingMessage, res: ServerResponse) => void,
  ): Promise<Listening> => {
    const b = await startBackend(handler);
    cleanups.push(() => b.close());
    return b;
  };
  const proxyFor = async (env: Record<string, string>): Promise<TestProxy> => {
    const p = await startTestProxy(env);
    cleanups.unshift(() => p.close());
    return p;
  };
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it('answers 502 upstream_unavailable without revealing the target when the backend is down', async () => {
    const port = await freePort();
    const proxy = await proxyFor({
      PROXY_TARGET_URL: `http://127.0.0.1:${port}/prefix`,
      CIRCUIT_BREAKER_THRESHOLD: '100',
    });
    const res = await fetch(`${proxy.url}/mcp`);
    const raw = await res.clone().text();
    const body = await expectJsonError(res, 502, 'upstream_unavailable');
    expect(body.error_description).toMatch(/could not be reached/);
    expect(raw).not.toContain('127.0.0.1');
    expect(raw).not.toContain(`:${port}`);
    expect(raw).not.toContain('/prefix');
    // Connection refused is safe to retry: with the default PROXY_RETRIES=2 it was tried three times.
    await waitFor(
      () => proxy.logs.some((l) => l.error === 'upstream_unavailable'),
      2000,
      'the upstream warning',
    );
    const warning = proxy.logs.find((l) => l.error === 'upstream_unavailable');
    expect(warning?.attempts).toBe(3);
  });

  it('answers 504 upstream_timeout when the headers come later than PROXY_HEADERS_TIMEOUT', async () => {
    const slow = await backend((_req, res) => {
      const timer = setTimeout(() => res.end('too late'), 3000);
      res.on('close', () => clearTimeout(timer));
    });
    const proxy = await proxyFor({
      PROXY_TARGET_URL: slow.url,
      PROXY_HEADERS_TIMEOUT: '0.3',
      PROXY_RETRIES: '0',
    });
    const started = Date.now();
    const res = await fetch(`${proxy.url}/mcp`);
    const elapsed = Date.now() - started;
    await expectJsonError(res, 504, 'upstream_timeout');
    // undici runs its headers timer on a coarse (~0.5-1 s) clock, so 0.3 s fires within about a second.
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2500);
  });

  it('answers 502 upstream_reset when the backend destroys the connection', async () => {
    let seen = 0;
    const rude = await backend((req) => {
      seen++;
      req.socket.destroy();
    });
    const proxy = await proxyFor({ PROXY_TARGET_URL: rude.url, PROXY_RETRIES: '0' });
    await expectJsonError(await fetch(`${proxy.url}/mcp`), 502, 'upstream_reset');
    expect(seen).toBe(1);
  });

  it('cuts a stalled non-SSE body after PROXY_IDLE_TIMEOUT but never an SSE stream', async () => {
    let stalledClosedEarly = false;
    const b = await backend((req, res) => {
      if (req.url === '/stall') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '100' });
        res.write('partial');
        // The body never finishes; the proxy must give up on it and release the upstream request.
        res.on('close', () => {
          stalledClosedEarly = !res.writableFinished;
        });
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: one\n\n');
      // Silent for well over the idle timeout, then the stream goes on and ends.
      const timer = setTimeout(() => res.end('data: two\n\n'), 900);
      res.on('close', () => clearTimeout(timer));
    });
    const proxy = await proxyFor({
      PROXY_TARGET_URL: b.url,
      PROXY_IDLE_TIMEOUT: '0.3',
      SSE_KEEPALIVE_INTERVAL: '0',
      PROXY_RETRIES: '0',
    });

    const stalled = await fetch(`${proxy.url}/stall`);
    expect(stalled.status).toBe(200);
    await expect(stalled.text()).rejects.toThrow();
    await waitFor(() => stalledClosedEarly, 5000, 'the stalled upstream request to be aborted');

    const sse = await fetch(`${proxy.url}/events`, { headers: { accept: 'text/event-stream' } });
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const started = Date.now();
    expect(await sse.text()).toBe('data: one\n\ndata: two\n\n');
    expect(Date.now() - started).toBeGreaterThanOrEqual(600);
  });

  it('does not count a slow-reading client as an idle backend', async () => {
    const size = 64 * 1024 * 1024;
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let blocked = false;
    const b = await backend((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      let sent = 0;
      const pump = (): void => {
        while (sent < size) {
          sent += chunk.length;
          if (!res.write(chunk)) {
            blocked = true;
            res.once('drain', () => {
              blocked = false;
              pump();
            });
            return;
          }
        }
        res.end();
      };
      pump();
    });
    const proxy = await proxyFor({ PROXY_TARGET_URL: b.url, PROXY_IDLE_TIMEOUT: '0.3', PROXY_RETRIES: '0' });
    const received = await new Promise<number>((resolve, reject) => {
      const req = request(`${proxy.url}/download`, { agent: false }, (res) => {
        res.pause();
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
        });
        res.on('end', () => resolve(n));
        res.on('aborted', () => reject(new Error(`response cut after ${n} bytes`)));
        res.on('error', reject);
        // The backend is eager but the client reads nothing for three idle timeouts.
        waitFor(() => blocked, 5000, 'backpressure to reach the backend')
          .then(() => setTimeout(() => res.resume(), 900))
          .catch(reject);
      });
      req.on('error', reject);
      req.end();
    });
    expect(received).toBe(size);
    expect(proxy.proxy.backends.all()[0]!.breaker.state).toBe('closed');
  });

  describe('retries', () => {
    /** Destroys the first request to each path and answers every later one. */
    async function flakyBackend(): Promise<{ b: Listening; seen: Map<string, number> }> {
      const seen = new Map<string, number>();
      const b = await backend((req, res) => {
        const n = (seen.get(req.url ?? '') ?? 0) + 1;
        seen.set(req.url ?? '', n);
        if (n === 1) {
          req.socket.destroy();
          return;
        }
        req.resume();
        req.on('end', () => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ attempt: n }));
        });
      });
      return { b, seen };
    }

    it('retries an idempotent GET without a body whose connection was reset', async () => {
      const { b, seen } = await flakyBackend();
      const proxy = await proxyFor({ PROXY_TARGET_URL: b.url, CIRCUIT_BREAKER_THRESHOLD: '100' });
      const res = await fetch(`${proxy.url}/flaky-get`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ attempt: 2 });
      expect(seen.get('/flaky-get')).toBe(2);
    });

    it('does not retry a POST with a body that may have reached the backend', async () => {
      const { b, seen } = await flakyBackend();
      const proxy = await proxyFor({ PROXY_TARGET_URL: b.url, CIRCUIT_BREAKER_THRESHOLD: '100' });
      const res = await fetch(`${proxy.url}/flaky-post`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call' }),
      });
      await expectJsonError(res, 502, 'upstream_reset');
      expect(seen.get('/flaky-post')).toBe(1);
    });
  });

  it('opens the circuit after THRESHOLD failures, refuses at once, then closes after a good probe', async () => {
    let failing = true;
    let hits = 0;
    const b = await backend((_req, res) => {
      hits++;
      res.writeHead(failing ? 503 : 200, { 'content-type': 'text/plain' });
      res.end(failing ? 'backend sick' : 'backend ok');
    });
    const proxy = await proxyFor({
      PROXY_TARGET_URL: b.url,
      CIRCUIT_BREAKER_THRESHOLD: '3',
      CIRCUIT_BREAKER_RESET_TIMEOUT: '0.5',
      PROXY_RETRIES: '0',
    });
    const { breaker } = proxy.proxy.backends.all()[0]!;
    expect(await breakerGauge(proxy)).toBe(0);

    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${proxy.url}/mcp`);
      expect(res.status).toBe(503);
      expect(await res.text()).toBe('backend sick');
    }
    expect(hits).toBe(3);
    expect(await breakerGauge(proxy)).toBe(1);

    const refusedAt = Date.now();
    const open = await fetch(`${proxy.url}/mcp`);
    expect(Date.now() - refusedAt).toBeLessThan(200);
    await expectJsonError(open, 503, 'upstream_circuit_open');
    expect(Number(open.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(hits).toBe(3);

    // A probe after the reset timeout that fails again re-opens the circuit at once.
    await waitFor(() => breaker.retryAfterMs() === 0, 2000, 'the reset timeout');
    expect((await fetch(`${proxy.url}/mcp`)).status).toBe(503);
    expect(hits).toBe(4);
    await expectJsonError(await fetch(`${proxy.url}/mcp`), 503, 'upstream_circuit_open');
    expect(hits).toBe(4);
    expect(await breakerGauge(proxy)).toBe(1);

    // The backend recovers: the next probe goes through and closes the circuit.
    failing = false;
    await waitFor(() => breaker.retryAfterMs() === 0, 2000, 'the reset timeout');
    const probe = await fetch(`${proxy.url}/mcp`);
    expect(probe.status).toBe(200);
    expect(await probe.text()).toBe('backend ok');
    expect(hits).toBe(5);
    expect(await breakerGauge(proxy)).toBe(0);
    expect((await fetch(`${proxy.url}/mcp`)).status).toBe(200);
    expect(hits).toBe(6);
  });

  it('lets a single probe through while half-open and refuses the rest with Retry-After', async () => {
    let failing = true;
    let hits = 0;
    let answerProbe: (() => void) | undefined;
    const b = await backend((_req, res) => {
      hits++;
      if (failing) {
        res.writeHead(502).end();
        return;
      }
      answerProbe = () => {
        if (!res.writableEnded) res.end('recovered');
      };
    });
    const proxy = await proxyFor({
      PROXY_TARGET_URL: b.url,
      CIRCUIT_BREAKER_THRESHOLD: '1',
      CIRCUIT_BREAKER_RESET_TIMEOUT: '0.2',
      PROXY_RETRIES: '0',
    });
    // Should an assertion fail while the probe is held, release it so the proxy can shut down.
    cleanups.unshift(async () => answerProbe?.());
    expect((await fetch(`${proxy.url}/mcp`)).status).toBe(502);
    expect(proxy.proxy.backends.all()[0]!.breaker.state).toBe('open');
    failing = false;
    await waitFor(
      () => proxy.proxy.backends.all()[0]!.breaker.retryAfterMs() === 0,
      2000,
      'the reset timeout',
    );

    const probe = fetch(`${proxy.url}/mcp`);
    await waitFor(() => answerProbe !== undefined, 5000, 'the probe to reach the backend');
    expect(await breakerGauge(proxy)).toBe(2);
    const refused = await fetch(`${proxy.url}/mcp`);
    const body = await expectJsonError(refused, 503, 'upstream_circuit_open');
    expect(refused.headers.get('retry-after')).toBe('1');
    // The sentence agrees with the header instead of announcing a pause of 0 s.
    expect(body.error_description).toContain('paused for 1 s');
    expect(hits).toBe(2);

    answerProbe?.();
    const answered = await probe;
    expect(answered.status).toBe(200);
    expect(await answered.text()).toBe('recovered');
    expect(proxy.proxy.backends.all()[0]!.breaker.state).toBe('closed');
  });

  it('closes a half-open circuit when an SSE stream is the probe, while that stream stays open', async () => {
    let failing = true;
    const streams = new Set<ServerResponse>();
    const b = await backend((req, res) => {
      if (failing) return void res.writeHead(502).end();
      if (req.headers.accept === 'text/event-stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('id: 1\ndata: {}\n\n');
        streams.add(res);
        return;
      }
      res.end('ok');
    });
    cleanups.unshift(async () => {
      for (const s of streams) s.end();
    });
    const proxy = await proxyFor({
      PROXY_TARGET_URL: b.url,
      CIRCUIT_BREAKER_THRESHOLD: '1',
      CIRCUIT_BREAKER_RESET_TIMEOUT: '0.2',
      PROXY_RETRIES: '0',
    });
    const { breaker } = proxy.proxy.backends.all()[0]!;
    expect((await fetch(`${proxy.url}/mcp`)).status).toBe(502);
    expect(breaker.state).toBe('open');
    failing = false;
    await waitFor(() => breaker.retryAfterMs() === 0, 2000, 'the reset timeout');

    const stream = new AbortController();
    const probe = await fetch(`${proxy.url}/mcp`, {
      headers: { accept: 'text/event-stream' },
      signal: stream.signal,
    });
    expect(probe.status).toBe(200);
    expect(breaker.state).toBe('closed');
    // The stream is still open; other requests pass instead of getting upstream_circuit_open.
    const call = await fetch(`${proxy.url}/mcp`, { method: 'POST', body: '{}' });
    expect(call.status).toBe(200);
    expect(await call.text()).toBe('ok');
    stream.abort();
  });

  it('reports /health 200 in the seed shape when the target is up and 503 when it is down', async () => {
    const b = await backend((_req, res) => res.end('ok'));
    const proxy = await proxyFor({ PROXY_TARGET_URL: b.url });
    const up = await fetch(`${proxy.url}/health`);
    expect(up.status).toBe(200);
    expect(up.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await up.text()).toBe(
      '{"status":"healthy","checks":{"proxy_target":{"status":"healthy"},"session_store":{"status":"healthy","active_sessions":0}}}',
    );

    await b.close();
    // A result is cached for a second, so the change shows within a little more than that.
    let last: Response | undefined;
    await waitFor(
      async () => {
        last = await fetch(`${proxy.url}/health`);
        return last.status !== 200;
      },
      4000,
      '/health to notice the target is down',
    );
    expect(last?.status).toBe(503);
    const body = (await last?.json()) as {
      status: string;
      checks: { proxy_target: { status: string }; session_store: { status: string } };
    };
    expect(body.status).toBe('unhealthy');
    expect(body.checks.proxy_target.status).toBe('unhealthy');
    expect(body.checks.session_store.status).toBe('healthy');
  });

  describe('a client that disconnects aborts the upstream request', () => {
    async function hangingBackend(writeHead: boolean): Promise<{
      b: Listening;
      state: { received: boolean; closedEarly: boolean };
    }> {
      const state = { received: false, closedEarly: false };
      const b = await backend((_req, res) => {
        state.received = true;
        if (writeHead) {
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.write('first chunk');
        }
        res.on('close', () => {
          state.closedEarly = !res.writableFinished;
        });
      });
      return { b, state };
    }

    it('mid-response', async () => {
      const { b, state } = await hangingBackend(true);
      const proxy = await proxyFor({ PROXY_TARGET_URL: b.url, PROXY_IDLE_TIMEOUT: '0' });
      await new Promise<void>((resolve, reject) => {
        const req = request(`${proxy.url}/download`, { agent: false }, (res) => {
          expect(res.statusCode).toBe(200);
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (err) => {
          if (!req.destroyed) reject(err);
        });
        req.end();
      });
      await waitFor(() => state.closedEarly, 5000, 'the backend to see its response closed');
      expect(proxy.proxy.backends.all()[0]!.breaker.state).toBe('closed');
    });

    it('before the response headers', async () => {
      const { b, state } = await hangingBackend(false);
      const proxy = await proxyFor({ PROXY_TARGET_URL: b.url, PROXY_RETRIES: '0' });
      const req = request(`${proxy.url}/slow-tool`, { agent: false });
      req.on('error', () => {});
      req.end();
      await waitFor(() => state.received, 5000, 'the request to reach the backend');
      req.destroy();
      await waitFor(() => state.closedEarly, 5000, 'the backend to see its request closed');
      expect(proxy.proxy.backends.all()[0]!.breaker.state).toBe('closed');
    });
  });
});
