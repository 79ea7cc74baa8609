import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import {
  type Listening,
  listen,
  startBackend,
  startTestProxy,
  type TestProxy,
  waitFor,
} from '../helpers/servers.js';

const MB = 1024 * 1024;

/** What a streaming GET through the proxy received, chunk by chunk, with arrival times. */
interface Received {
  status: number;
  headers: IncomingMessage['headers'];
  text: string;
  chunks: Array<{ at: number; text: string }>;
  ended: Promise<void>;
  close(): void;
}

function openStream(url: string): Promise<Received> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { accept: 'text/event-stream' } }, (res) => {
      let endedResolve!: () => void;
      const ended = new Promise<void>((r) => {
        endedResolve = r;
      });
      const received: Received = {
        status: res.statusCode ?? 0,
        headers: res.headers,
        text: '',
        chunks: [],
        ended,
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      res.on('data', (text: string) => {
        received.text += text;
        received.chunks.push({ at: performance.now(), text });
      });
      res.on('end', endedResolve);
      res.on('close', endedResolve);
      resolve(received);
    });
    req.on('error', reject);
    req.end();
  });
}

function sseHead(res: ServerResponse, extra: Record<string, string> = {}): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', ...extra });
  res.flushHeaders();
}

describe('SSE through the proxy', () => {
  let backend: Listening;
  let proxy: TestProxy;
  let keepaliveProxy: TestProxy;
  /** Backend-side timestamps of each event write in /events, and of the end of the stream. */
  const written: number[] = [];
  let endedAt = 0;
  /** Lets the /partial handler wait for what the client has seen. */
  let partialClient: Received | undefined;

  beforeAll(async () => {
    backend = await startBackend(async (req, res) => {
      if (req.url === '/events') {
        sseHead(res);
        for (let i = 0; i < 5; i++) {
          if (i > 0) await delay(200);
          res.write(`id: ${i}\ndata: event ${i}\n\n`);
          written.push(performance.now());
        }
        await delay(200);
        endedAt = performance.now();
        res.end();
      } else if (req.url === '/silent') {
        sseHead(res);
        // Never writes: the proxy's keepalives are all the client gets until it leaves.
      } else if (req.url === '/partial' || req.url === '/partial-crlf') {
        const eol = req.url === '/partial' ? '\n' : '\r\n';
        sseHead(res);
        res.write(`data: part1${eol}`);
        // Silence well past several keepalive intervals while the event is half written.
        await delay(700);
        res.write(eol);
        // Now at a boundary: the proxy may (and with 0.2 s, will) insert a keepalive.
        await waitFor(
          () =>
            (partialClient?.text ?? '').replace(/^(: keepalive\n\n)*/, '').includes(`${eol}: keepalive\n\n`),
          5000,
          'a keepalive after the finished event',
        );
        res.end(`data: part2${eol}${eol}`);
      } else if (req.url === '/gzip') {
        sseHead(res, { 'content-encoding': 'gzip' });
        // Silent past the keepalive interval before the first compressed byte.
        await delay(500);
        res.write(gzipSync('data: compressed\n\n'));
        await delay(500);
        res.end();
      } else if (req.url === '/two-events') {
        sseHead(res);
        res.write('data: a\n\n');
        await delay(600);
        res.end('data: b\n\n');
      } else if (req.url === '/cache-kept') {
        sseHead(res, { 'cache-control': 'no-cache, private', 'x-accel-buffering': 'yes' });
        res.end('data: x\n\n');
      } else if (req.url === '/cache-none') {
        sseHead(res);
        res.end('data: x\n\n');
      } else {
        res.writeHead(404).end();
      }
    });
    proxy = await startTestProxy({ PROXY_TARGET_URL: backend.url, SSE_KEEPALIVE_INTERVAL: '0' });
    keepaliveProxy = await startTestProxy({ PROXY_TARGET_URL: backend.url, SSE_KEEPALIVE_INTERVAL: '0.2' });
  });
  afterAll(async () => {
    await proxy?.close();
    await keepaliveProxy?.close();
    await backend?.close();
  });

  it('delivers each event before the backend writes the next one', async () => {
    const stream = await openStream(`${proxy.url}/events`);
    expect(stream.status).toBe(200);
    await stream.ended;
    const events = stream.text.split('\n\n').filter(Boolean);
    expect(events).toEqual([0, 1, 2, 3, 4].map((i) => `id: ${i}\ndata: event ${i}`));
    // The exact arrival of each event is the time of the chunk that completed it.
    const byChunk: number[] = [];
    let acc = '';
    for (const chunk of stream.chunks) {
      const before = acc.split('\n\n').length;
      acc += chunk.text;
      for (let i = before; i < acc.split('\n\n').length; i++) byChunk.push(chunk.at);
    }
    expect(byChunk).toHaveLength(5);
    for (let i = 0; i < 4; i++) {
      // Event i reached the client before the backend even wrote event i + 1.
      expect(byChunk[i]).toBeLessThan(written[i + 1] as number);
    }
    // The first event arrived before the backend ended the stream. (Causal order only: gaps
    // between arrivals depend on how busy the machine is, not on the proxy.)
    expect(byChunk[0] as number).toBeLessThan(endedAt);
  });

  it('writes keepalive comments into a silent stream', async () => {
    const started = performance.now();
    const stream = await openStream(`${keepaliveProxy.url}/silent`);
    expect(stream.status).toBe(200);
    await waitFor(() => stream.text.split(': keepalive\n\n').length >= 4, 5000, 'three keepalives');
    stream.close();
    await stream.ended;
    expect(stream.text).toMatch(/^(: keepalive\n\n){3,}$/);
    // Not sooner than the interval after the response started.
    expect((stream.chunks[0]?.at as number) - started).toBeGreaterThanOrEqual(100);
  });

  it('never puts a keepalive inside an event the backend is still writing', async () => {
    partialClient = await openStream(`${keepaliveProxy.url}/partial`);
    await partialClient.ended;
    expect(partialClient.text).toMatch(
      /^(: keepalive\n\n)*data: part1\n\n(: keepalive\n\n)+data: part2\n\n$/,
    );

    partialClient = await openStream(`${keepaliveProxy.url}/partial-crlf`);
    await partialClient.ended;
    expect(partialClient.text).toMatch(
      /^(: keepalive\n\n)*data: part1\r\n\r\n(: keepalive\n\n)+data: part2\r\n\r\n$/,
    );
  });

  it('never writes a keepalive into a compressed SSE body', async () => {
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      request(`${keepaliveProxy.url}/gzip`, (res) => {
        expect(res.headers['content-encoding']).toBe('gzip');
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(Buffer.concat(chunks)));
      })
        .on('error', reject)
        .end();
    });
    expect(gunzipSync(bytes).toString('utf8')).toBe('data: compressed\n\n');
  });

  it('writes no keepalive when SSE_KEEPALIVE_INTERVAL is 0', async () => {
    const stream = await openStream(`${proxy.url}/two-events`);
    await stream.ended;
    expect(stream.text).toBe('data: a\n\ndata: b\n\n');
  });

  it('marks SSE responses unbufferable and untransformable, keeping the backend Cache-Control', async () => {
    const kept = await openStream(`${proxy.url}/cache-kept`);
    await kept.ended;
    expect(kept.headers['x-accel-buffering']).toBe('no');
    const cc = String(kept.headers['cache-control']);
    expect(cc).toMatch(/no-cache/);
    expect(cc).toMatch(/private/);
    expect(cc).toMatch(/no-transform/);
    expect(kept.headers['content-encoding']).toBeUndefined();

    const none = await openStream(`${proxy.url}/cache-none`);
    await none.ended;
    expect(none.headers['x-accel-buffering']).toBe('no');
    expect(String(none.headers['cache-control'])).toMatch(/no-transform/);
  });
});

/** 100 MB of distinct chunks (so a buffering proxy could not share memory between them). */
function generated(totalBytes: number, chunkSize: number, hash: ReturnType<typeof createHash>): Readable {
  let sent = 0;
  let n = 0;
  return new Readable({
    highWaterMark: chunkSize,
    read() {
      if (sent >= totalBytes) {
        this.push(null);
        return;
      }
      const size = Math.min(chunkSize, totalBytes - sent);
      const chunk = Buffer.allocUnsafe(size).fill(n++ % 251);
      chunk.writeUInt32BE(n, 0);
      hash.update(chunk);
      sent += size;
      this.push(chunk);
    },
  });
}

/** A consumer that is deliberately slower than loopback, so backpressure has to hold the producer. */
function slowSink(hash: ReturnType<typeof createHash>, counter: { bytes: number }): Writable {
  let sinceBreak = 0;
  return new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      counter.bytes += chunk.length;
      sinceBreak += chunk.length;
      if (sinceBreak >= MB) {
        sinceBreak = 0;
        setTimeout(cb, 10);
      } else cb();
    },
  });
}

/** Samples RSS while `work` runs; returns the peak growth over the level before it started. */
async function peakRssGrowth(work: () => Promise<void>): Promise<number> {
  const base = process.memoryUsage().rss;
  let peak = base;
  const sampler = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 10);
  try {
    await work();
  } finally {
    clearInterval(sampler);
  }
  return Math.max(peak, process.memoryUsage().rss) - base;
}

describe('large bodies through the proxy', () => {
  const SIZE = 100 * MB;
  let backend: Listening;
  let proxy: TestProxy;
  const downloadHashes: string[] = [];

  beforeAll(async () => {
    backend = await startBackend((req, res) => {
      const url = new URL(req.url ?? '/', 'http://backend');
      if (req.method === 'POST' && url.pathname === '/upload') {
        const hash = createHash('sha256');
        const counter = { bytes: 0 };
        pipeline(req, slowSink(hash, counter)).then(
          () => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify({ bytes: counter.bytes, sha256: hash.digest('hex') }));
          },
          () => res.destroy(),
        );
      } else if (url.pathname === '/download') {
        const size = Number(url.searchParams.get('size'));
        const hash = createHash('sha256');
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
        pipeline(generated(size, 64 * 1024, hash), res).then(
          () => downloadHashes.push(hash.digest('hex')),
          () => undefined,
        );
      } else {
        res.writeHead(404).end();
      }
    });
    proxy = await startTestProxy({ PROXY_TARGET_URL: backend.url });
    // Warm up sockets, allocator and GC on a smaller transfer each way, so the measured run
    // shows what the proxy holds rather than the process's first-use growth.
    await upload(16 * MB);
    await download(16 * MB);
  });
  afterAll(async () => {
    await proxy?.close();
    await backend?.close();
  });

  function upload(size: number): Promise<{ sent: string; bytes: number; sha256: string }> {
    const sentHash = createHash('sha256');
    return new Promise((resolve, reject) => {
      const req = request(
        `${proxy.url}/upload`,
        { method: 'POST', headers: { 'content-type': 'application/octet-stream' } },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => {
            if (res.statusCode !== 200)
              return reject(new Error(`upload answered ${res.statusCode}: ${body}`));
            resolve({ ...JSON.parse(body), sent: sentHash.digest('hex') });
          });
        },
      );
      req.on('error', reject);
      generated(size, 64 * 1024, sentHash).pipe(req);
    });
  }

  function download(size: number): Promise<{ bytes: number; sha256: string }> {
    const gotHash = createHash('sha256');
    const counter = { bytes: 0 };
    return new Promise((resolve, reject) => {
      const req = request(`${proxy.url}/download?size=${size}`, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`download answered ${res.statusCode}`));
        pipeline(res, slowSink(gotHash, counter)).then(
          () => resolve({ bytes: counter.bytes, sha256: gotHash.digest('hex') }),
          reject,
        );
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('streams a 100 MB upload to a slow backend with flat memory', async () => {
    let result: { sent: string; bytes: number; sha256: string } | undefined;
    const growth = await peakRssGrowth(async () => {
      result = await upload(SIZE);
    });
    expect(result?.bytes).toBe(SIZE);
    expect(result?.sha256).toBe(result?.sent);
    expect(growth).toBeLessThan(60 * MB);
  }, 60_000);

  it('streams a 100 MB download to a slow client with flat memory', async () => {
    let result: { bytes: number; sha256: string } | undefined;
    const before = downloadHashes.length;
    const growth = await peakRssGrowth(async () => {
      result = await download(SIZE);
    });
    expect(result?.bytes).toBe(SIZE);
    await waitFor(() => downloadHashes.length > before, 5000, 'backend hash');
    expect(result?.sha256).toBe(downloadHashes.at(-1));
    expect(growth).toBeLessThan(60 * MB);
  }, 60_000);
});

describe('WebSocket through the proxy', () => {
  let backend: Listening;
  let proxy: TestProxy;
  let wss: WebSocketServer;
  const serverCloses: Array<{ code: number; reason: string }> = [];
  const serverPongs: string[] = [];
  const upgradeHeaders: string[][] = [];

  beforeAll(async () => {
    wss = new WebSocketServer({
      noServer: true,
      handleProtocols: (protocols) => (protocols.has('mcp.v2') ? 'mcp.v2' : false),
    });
    wss.on('headers', (headers) => {
      headers.push('X-Backend-Upgrade: yes');
    });
    wss.on('connection', (ws) => {
      ws.on('message', (data, isBinary) => {
        const text = data.toString();
        if (text === 'close-me') ws.close(4002, 'server-bye');
        else if (text === 'ping-me') ws.ping('from-server');
        else ws.send(data, { binary: isBinary });
      });
      ws.on('pong', (data) => serverPongs.push(data.toString()));
      ws.on('close', (code, reason) => serverCloses.push({ code, reason: reason.toString() }));
    });
    const server = createServer((_req, res) => res.writeHead(404).end());
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      upgradeHeaders.push(req.rawHeaders);
      if (req.url === '/refuse') {
        const body = JSON.stringify({ error: 'unauthorized' });
        socket.end(
          'HTTP/1.1 401 Unauthorized\r\n' +
            'Content-Type: application/json\r\n' +
            'WWW-Authenticate: Bearer realm="backend"\r\n' +
            `Content-Length: ${Buffer.byteLength(body)}\r\n` +
            'Connection: close\r\n\r\n' +
            body,
        );
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    });
    backend = await listen(server);
    proxy = await startTestProxy({ PROXY_TARGET_URL: backend.url });
  });
  afterAll(async () => {
    await proxy?.close();
    for (const client of wss.clients) client.terminate();
    wss?.close();
    await backend?.close();
  });

  function connect(
    protocols: string[] = [],
    headers: Record<string, string> = {},
  ): Promise<{ ws: WebSocket; upgrade: IncomingMessage; messages: string[] }> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${proxy.url.replace('http:', 'ws:')}/ws`, protocols, { headers });
      const messages: string[] = [];
      ws.on('message', (data) => messages.push(data.toString()));
      ws.once('upgrade', (upgrade) => ws.once('open', () => resolve({ ws, upgrade, messages })));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected ${res.statusCode}`)));
    });
  }

  it('echoes messages and relays the upstream 101 headers as sent', async () => {
    const { ws, upgrade, messages } = await connect(['mcp.v1', 'mcp.v2']);
    try {
      expect(upgrade.statusCode).toBe(101);
      expect(upgrade.headers['sec-websocket-protocol']).toBe('mcp.v2');
      expect(ws.protocol).toBe('mcp.v2');
      expect(upgrade.headers['x-backend-upgrade']).toBe('yes');
      ws.send('hello');
      ws.send(Buffer.from([1, 2, 3]));
      const big = 'x'.repeat(200_000);
      ws.send(big);
      await waitFor(() => messages.length === 3, 5000, 'three echoes');
      expect(messages[0]).toBe('hello');
      expect(Buffer.from(messages[1] as string)).toEqual(Buffer.from([1, 2, 3]));
      expect(messages[2]).toBe(big);
    } finally {
      ws.terminate();
    }
  });

  it('strips spoofed identity and hop-by-hop headers from the upgrade request', async () => {
    const before = upgradeHeaders.length;
    const { ws } = await connect([], {
      'X-Forwarded-User': 'attacker',
      X_Forwarded_Email: 'attacker@evil.example',
      'X-Forwarded-For': '6.6.6.6',
      'X-Real-IP': '6.6.6.6',
      'Proxy-Authorization': 'Basic c2VjcmV0',
      'X-Kept': 'yes',
    });
    ws.terminate();
    expect(upgradeHeaders.length).toBe(before + 1);
    const raw = upgradeHeaders.at(-1) as string[];
    const sent = new Map<string, string[]>();
    for (let i = 0; i < raw.length; i += 2) {
      const name = (raw[i] as string).toLowerCase().replaceAll('_', '-');
      sent.set(name, [...(sent.get(name) ?? []), raw[i + 1] as string]);
    }
    expect(sent.get('x-forwarded-user')).toBeUndefined();
    expect(sent.get('x-forwarded-email')).toBeUndefined();
    expect(sent.get('x-real-ip')).toBeUndefined();
    expect(sent.get('proxy-authorization')).toBeUndefined();
    expect(sent.get('x-forwarded-for')).toEqual(['127.0.0.1']);
    expect(sent.get('x-kept')).toEqual(['yes']);
    expect(sent.get('sec-websocket-key')).toHaveLength(1);
  });

  it('passes pings and pongs both ways', async () => {
    const { ws } = await connect();
    try {
      const pong = new Promise<string>((resolve) => ws.once('pong', (d) => resolve(d.toString())));
      ws.ping('from-client');
      expect(await pong).toBe('from-client');
      const before = serverPongs.length;
      const ping = new Promise<string>((resolve) => ws.once('ping', (d) => resolve(d.toString())));
      ws.send('ping-me');
      expect(await ping).toBe('from-server');
      // ws answers the ping automatically; the pong must reach the backend.
      await waitFor(() => serverPongs.length > before, 5000, 'pong at the backend');
      expect(serverPongs.at(-1)).toBe('from-server');
    } finally {
      ws.terminate();
    }
  });

  it('passes close codes and reasons from the client to the backend', async () => {
    const { ws } = await connect();
    const before = serverCloses.length;
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    ws.close(4001, 'client-bye');
    expect(await closed).toEqual({ code: 4001, reason: 'client-bye' });
    await waitFor(() => serverCloses.length > before, 5000, 'close at the backend');
    expect(serverCloses.at(-1)).toEqual({ code: 4001, reason: 'client-bye' });
  });

  it('passes close codes and reasons from the backend to the client', async () => {
    const { ws } = await connect();
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    ws.send('close-me');
    expect(await closed).toEqual({ code: 4002, reason: 'server-bye' });
  });

  it('relays a backend refusing the upgrade with 401', async () => {
    const refused = await new Promise<{ status: number; headers: IncomingMessage['headers']; body: string }>(
      (resolve, reject) => {
        const ws = new WebSocket(`${proxy.url.replace('http:', 'ws:')}/refuse`);
        ws.once('open', () => reject(new Error('upgrade should have been refused')));
        ws.once('error', () => undefined);
        ws.once('unexpected-response', (_req, res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            body += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
      },
    );
    expect(refused.status).toBe(401);
    expect(refused.headers['www-authenticate']).toBe('Bearer realm="backend"');
    expect(JSON.parse(refused.body)).toEqual({ error: 'unauthorized' });
  });
});
