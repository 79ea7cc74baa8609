// A minimal Streamable HTTP MCP client for the bench: the requests an MCP client sends to open a
// session and call a tool, over node:http with a keep-alive agent of its own (one client, one
// connection, as an SDK client would have). Answers may come as JSON or as an SSE stream; the
// JSON-RPC message with the request's id is taken from either.
import http from 'node:http';

export const PROTOCOL_VERSION = '2025-06-18';

export class McpSession {
  /** `url`: the MCP endpoint, e.g. http://127.0.0.1:8080/mcp. */
  constructor(url) {
    this.url = new URL(url);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    this.sessionId = undefined;
    this.nextId = 1;
  }

  /** initialize, then notifications/initialized: the session is open (its id kept). */
  async open() {
    const init = await this.request('initialize', {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: 'mcp-oidc-proxy-bench', version: '1.0.0' },
    });
    this.sessionId = init.headers['mcp-session-id'];
    if (!this.sessionId) throw new Error(`initialize gave no Mcp-Session-Id (status ${init.status})`);
    const notified = await this.post({ jsonrpc: '2.0', method: 'notifications/initialized' });
    if (notified.status !== 202) throw new Error(`notifications/initialized answered ${notified.status}`);
    return init.message.result;
  }

  /** tools/call; resolves with the result, throws on a JSON-RPC error or a tool error. */
  async call(name, args = {}) {
    const { message } = await this.request('tools/call', { name, arguments: args });
    if (message.result?.isError) throw new Error(`tool ${name} failed: ${JSON.stringify(message.result)}`);
    return message.result;
  }

  /** DELETE of the session (its child ends with it under session isolation), then the agent closes. */
  async close() {
    try {
      if (this.sessionId) await this.send('DELETE');
    } finally {
      this.agent.destroy();
    }
  }

  /** Headers a client sends on every request of its session (wrk gets the same). */
  sessionHeaders() {
    return { 'mcp-session-id': this.sessionId, 'mcp-protocol-version': PROTOCOL_VERSION };
  }

  async request(method, params) {
    const id = this.nextId++;
    const answer = await this.post({ jsonrpc: '2.0', id, method, params });
    const message = findMessage(answer.body, answer.headers['content-type'], id);
    if (answer.status !== 200 || !message)
      throw new Error(`${method} answered ${answer.status}: ${answer.body.slice(0, 300)}`);
    if (message.error) throw new Error(`${method} failed: ${JSON.stringify(message.error)}`);
    return { ...answer, message };
  }

  post(message) {
    return this.send('POST', JSON.stringify(message));
  }

  send(method, body) {
    const headers = { accept: 'application/json, text/event-stream' };
    if (this.sessionId) Object.assign(headers, this.sessionHeaders());
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = Buffer.byteLength(body);
    }
    return new Promise((resolve, reject) => {
      const req = http.request(this.url, { method, agent: this.agent, headers, timeout: 15_000 }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${this.url}: no answer in 15 s`)));
      req.on('error', reject);
      req.end(body);
    });
  }
}

/** The JSON-RPC message with this id in a JSON body or in the `data:` lines of an SSE body. */
function findMessage(body, contentType = '', id) {
  const candidates = contentType.startsWith('text/event-stream')
    ? body
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trim())
    : [body];
  for (const text of candidates) {
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch {
      continue;
    }
    for (const message of Array.isArray(parsed) ? parsed : [parsed]) if (message?.id === id) return message;
  }
  return undefined;
}
