// Reference "floor" for the benchmark: the least a Node reverse proxy on node:http + undici
// Pool.dispatch does per request (no pipeline, no logging, no metrics, no header rules).
// It shows how much of the proxy's cost is the platform and how much is the proxy's own code.
// Env: FLOOR_PORT, FLOOR_TARGET (http://127.0.0.1:N), FLOOR_CONNECTIONS (upstream pool size, default 256;
// 0 = no cap, for bench/streams.mjs, where every SSE stream holds one). Prints {"port":N} when listening.
import http from 'node:http';
import { Pool } from 'undici';

const target = new URL(process.env.FLOOR_TARGET ?? 'http://127.0.0.1:3000');
const poolSize = Number(process.env.FLOOR_CONNECTIONS ?? 256);
const pool = new Pool(target.origin, {
  connections: poolSize || null,
  pipelining: 1,
  keepAliveTimeout: 4000,
});
const HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
  'trailer',
]);

const server = http.createServer((req, res) => {
  const headers = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i].toLowerCase();
    if (!HOP.has(k) && k !== 'host') headers.push(raw[i], raw[i + 1]);
  }
  headers.push('host', target.host);
  pool.dispatch(
    {
      path: req.url,
      method: req.method,
      headers,
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
    },
    {
      onRequestStart() {},
      onResponseStart(_c, status, h) {
        const flat = [];
        for (const [k, v] of Object.entries(h)) if (!HOP.has(k)) flat.push(k, v);
        res.writeHead(status, flat);
        // An SSE head goes out at once, as any proxy must send it (the first event may be far off).
        if (String(h['content-type']).startsWith('text/event-stream')) res.flushHeaders();
      },
      onResponseData(c, chunk) {
        if (!res.write(chunk)) {
          c.pause();
          res.once('drain', () => c.resume());
        }
      },
      onResponseEnd() {
        res.end();
      },
      onResponseError(_c, err) {
        if (!res.headersSent) {
          res.writeHead(502);
          res.end(String(err.message));
        } else res.destroy();
      },
    },
  );
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.env.FLOOR_PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
});
