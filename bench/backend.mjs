// Benchmark backend: a tiny keep-alive HTTP server run in its own process by bench/run.mjs.
//   GET, any path -> 200, ~100-byte JSON body, keep-alive
//   POST, any path -> 200, the JSON-RPC result of a small tools/call for id 1 (what bench/mcp-call.lua sends)
//   GET /sse   -> text/event-stream, one event per second per stream (one shared timer)
// Prints {"port":N} on stdout once listening. Answers SIGTERM by closing everything.
import http from 'node:http';

const host = process.env.BACKEND_HOST ?? '127.0.0.1';
const port = Number(process.env.BACKEND_PORT ?? 0);
const sseIntervalMs = Number(process.env.SSE_INTERVAL_MS ?? 1000);

const body = Buffer.from(
  JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    result: { ok: true, server: 'bench-backend', pad: 'x'.repeat(21) },
  }),
);
const callResult = Buffer.from(
  JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'hello' }] } }),
);
const streams = new Set();
let seq = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/sse' || req.url?.startsWith('/sse?')) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.flushHeaders();
    streams.add(res);
    res.on('close', () => streams.delete(res));
    return;
  }
  if (req.url === '/stats') {
    const s = JSON.stringify({ sse_streams: streams.size });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
    res.end(s);
    return;
  }
  // Drain any request body before answering (keep-alive stays usable).
  req.resume();
  const answer = req.method === 'POST' ? callResult : body;
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
  res.end(answer);
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.requestTimeout = 0;

const timer = setInterval(() => {
  if (streams.size === 0) return;
  seq++;
  const event = `id: ${seq}\nevent: tick\ndata: {"seq":${seq},"t":${Date.now()}}\n\n`;
  for (const res of streams) res.write(event);
}, sseIntervalMs);

server.listen(port, host, () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});

const stop = () => {
  clearInterval(timer);
  for (const res of streams) res.end();
  server.close(() => process.exit(0));
  server.closeAllConnections?.();
  setTimeout(() => process.exit(0), 1000).unref();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
