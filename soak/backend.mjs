// The soak's MCP backend, in its own process (so the soak can kill and restart it: the backend flap).
//   GET  /mcp?conn=ID  (Accept: text/event-stream) -> an SSE stream; one event per SOAK_EVENT_INTERVAL_MS on
//                      every open stream, ids 1, 2, 3, ... per stream, and it counts what it wrote on each
//   POST /mcp          -> the JSON-RPC result of a tools/call (the request's id echoed), counted
//   GET  /soak/stats   -> {"sent":{conn:lastIdWritten},"open":n,"calls":n,"probes":n}
//   POST /soak/pause   -> stops emitting (the soak's final drain: what was sent can then all arrive)
// A request carrying `x-soak-probe` is one the proxy should have refused (no or a forged credential):
// it is counted in `probes` and answered 418, so a pass shows up at both ends.
// Listens on BACKEND_PORT (0 = any), prints {"port":N} once listening; SIGTERM closes everything.
import http from 'node:http';

const port = Number(process.env.BACKEND_PORT ?? 0);
const intervalMs = Number(process.env.SOAK_EVENT_INTERVAL_MS ?? 1000);

/** Open streams: response -> { conn, seq }. `sent` keeps the last id written per conn, closed ones too. */
const streams = new Map();
const sent = new Map();
let calls = 0;
let probes = 0;
let paused = false;

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

async function answerCall(req, res) {
  let id = null;
  try {
    id = JSON.parse(await readBody(req)).id ?? null;
  } catch {
    return sendJson(res, 400, { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'parse error' } });
  }
  calls++;
  sendJson(res, 200, { jsonrpc: '2.0', id, result: { content: [{ type: 'text', text: 'ok' }] } });
}

function openStream(res, url) {
  const conn = url.searchParams.get('conn') ?? '';
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
  const stream = { conn, seq: 0 };
  streams.set(res, stream);
  sent.set(conn, 0);
  res.on('close', () => streams.delete(res));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://backend');
  if (req.headers['x-soak-probe'] !== undefined) {
    probes++;
    req.resume();
    return sendJson(res, 418, { passed: 'a probe the proxy should have refused' });
  }
  if (url.pathname === '/soak/stats') {
    return sendJson(res, 200, { sent: Object.fromEntries(sent), open: streams.size, calls, probes });
  }
  if (url.pathname === '/soak/pause' && req.method === 'POST') {
    paused = true;
    return sendJson(res, 200, { paused });
  }
  if (req.method === 'GET' && /text\/event-stream/.test(req.headers.accept ?? '')) {
    return openStream(res, url);
  }
  if (req.method === 'POST') return void answerCall(req, res);
  req.resume();
  sendJson(res, 200, { ok: true });
});
server.keepAliveTimeout = 65_000;
server.requestTimeout = 0;

const timer = setInterval(() => {
  if (paused) return;
  for (const [res, stream] of streams) {
    stream.seq++;
    res.write(`id: ${stream.seq}\nevent: tick\ndata: {"conn":"${stream.conn}","seq":${stream.seq}}\n\n`);
    sent.set(stream.conn, stream.seq);
  }
}, intervalMs);

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});

const stop = () => {
  clearInterval(timer);
  for (const res of streams.keys()) res.end();
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
