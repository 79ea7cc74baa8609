// The soak's SSE streams: `count` logical streams, each homed on instance `i % n`, each held open as one
// HTTP connection at a time (a GET on the MCP path with the current bearer token). Every connection has an
// id of its own (`conn`, sent in the query, so the backend counts what it wrote on it) and records the event
// ids it received; an id that is not the previous one + 1 is a gap. A connection that breaks is replaced:
// first at the stream's home instance, at the next one when that refuses (an instance that is down), with
// a growing back-off while answers are not 200.
import http from 'node:http';

const OPEN_BATCH = 50;
const HEADERS_TIMEOUT_MS = 15_000;

export class StreamPool {
  /**
   * @param {object} options
   * @param {number} options.count
   * @param {() => number[]} options.ports  the instances' ports (index = instance)
   * @param {() => string} options.token    the bearer token to open a connection with
   * @param {(event: object) => void} options.onEvent  an answer or a break: {kind, instance, status|reason, at}
   */
  constructor({ count, ports, token, onEvent, path = '/mcp' }) {
    this.count = count;
    this.ports = ports;
    this.token = token;
    this.onEvent = onEvent;
    this.path = path;
    this.agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
    this.streams = [];
    /** Every connection ever opened, in order. */
    this.conns = [];
    this.stopping = false;
    this.timers = new Set();
  }

  async start() {
    for (let i = 0; i < this.count; i += OPEN_BATCH) {
      for (let j = i; j < Math.min(this.count, i + OPEN_BATCH); j++) {
        const stream = { id: j, home: j % this.ports().length, failures: 0, conn: undefined };
        this.streams.push(stream);
        this.connect(stream, stream.home, 0);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Connections answered 200 and still open, per instance. */
  openPerInstance() {
    const open = this.ports().map(() => 0);
    for (const s of this.streams) if (s.conn?.open) open[s.conn.instance]++;
    return open;
  }

  openTotal() {
    return this.openPerInstance().reduce((a, b) => a + b, 0);
  }

  connect(stream, instance, tried) {
    if (this.stopping) return;
    const ports = this.ports();
    const conn = {
      id: `${stream.id}.${this.conns.length}`,
      stream: stream.id,
      instance,
      status: 0,
      open: false,
      lastSeq: 0,
      received: 0,
      gaps: 0,
      openedAt: Date.now(),
      closedAt: 0,
      reason: '',
      buffer: '',
    };
    this.conns.push(conn);
    stream.conn = conn;
    const url = `http://127.0.0.1:${ports[instance]}${this.path}?conn=${encodeURIComponent(conn.id)}`;
    const req = http.get(url, {
      agent: this.agent,
      headers: { accept: 'text/event-stream', authorization: `Bearer ${this.token()}` },
    });
    conn.req = req;
    req.setTimeout(HEADERS_TIMEOUT_MS, () => req.destroy(new Error('no answer in time')));
    req.on('response', (res) => {
      conn.status = res.statusCode ?? 0;
      this.onEvent({ kind: 'stream', instance, status: conn.status, at: Date.now() });
      if (conn.status !== 200) {
        res.resume();
        res.on('end', () => this.retry(stream, conn, stream.home, `HTTP ${conn.status}`));
        return;
      }
      req.setTimeout(0);
      conn.open = true;
      stream.failures = 0;
      res.setEncoding('utf8');
      res.on('data', (chunk) => this.receive(conn, chunk));
      res.on('close', () => this.broken(stream, conn, res.complete ? 'ended' : 'reset'));
    });
    req.on('error', (error) => {
      if (conn.status) return; // the response's close reports it
      const reason = error.code ?? error.message;
      this.onEvent({ kind: 'stream', instance, status: reason, at: Date.now() });
      // Refused: that instance is down; the next one is tried at once, then the back-off starts.
      if (error.code === 'ECONNREFUSED' && tried + 1 < ports.length) {
        this.finish(conn, reason);
        this.connect(stream, (instance + 1) % ports.length, tried + 1);
      } else this.retry(stream, conn, stream.home, reason);
    });
  }

  receive(conn, chunk) {
    conn.buffer += chunk;
    for (let end = conn.buffer.indexOf('\n\n'); end >= 0; end = conn.buffer.indexOf('\n\n')) {
      const block = conn.buffer.slice(0, end);
      conn.buffer = conn.buffer.slice(end + 2);
      const id = /^id: (\d+)$/m.exec(block);
      if (!id || !/^data:/m.test(block)) continue; // a keepalive comment
      const seq = Number(id[1]);
      if (seq !== conn.lastSeq + 1) conn.gaps++;
      conn.lastSeq = seq;
      conn.received++;
    }
  }

  finish(conn, reason) {
    if (conn.closedAt) return;
    conn.open = false;
    conn.closedAt = Date.now();
    conn.reason = reason;
  }

  broken(stream, conn, reason) {
    if (this.stopping || conn.closedAt) return;
    this.finish(conn, reason);
    this.onEvent({ kind: 'break', instance: conn.instance, reason, at: conn.closedAt });
    this.connect(stream, stream.home, 0);
  }

  retry(stream, conn, instance, reason) {
    if (this.stopping) return;
    this.finish(conn, reason);
    stream.failures++;
    const base = Math.min(3000, 200 * 2 ** Math.min(stream.failures - 1, 4));
    const timer = setTimeout(
      () => {
        this.timers.delete(timer);
        this.connect(stream, instance, 0);
      },
      base * (0.5 + Math.random()),
    );
    this.timers.add(timer);
  }

  stop() {
    this.stopping = true;
    for (const t of this.timers) clearTimeout(t);
    for (const s of this.streams) s.conn?.req?.destroy();
    this.agent.destroy();
  }
}
