import type { IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { type Listening, startEchoBackend } from './servers.js';

// HTTP/1.1 over a plain TCP socket, byte for byte: for attack tests whose requests no client
// library would send (odd request lines, duplicate or malformed framing headers).

/** One HTTP response as it came off the wire, header names and order preserved. */
export interface RawResponse {
  status: number;
  headers: Array<[string, string]>;
  body: string;
  /** All values of `name` (case-insensitive). */
  all(name: string): string[];
  get(name: string): string | undefined;
  json(): Record<string, unknown>;
}

export function parseResponse(raw: Buffer): RawResponse {
  const text = raw.toString('latin1');
  const split = text.indexOf('\r\n\r\n');
  if (split < 0) throw new Error(`no complete response head in ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...lines] = text.slice(0, split).split('\r\n');
  const status = Number(statusLine?.split(' ')[1]);
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  const all = (name: string): string[] =>
    headers.filter(([n]) => n.toLowerCase() === name.toLowerCase()).map(([, v]) => v);
  let body = text.slice(split + 4);
  if ((all('transfer-encoding')[0] ?? '').toLowerCase() === 'chunked') {
    let decoded = '';
    let rest = body;
    for (;;) {
      const eol = rest.indexOf('\r\n');
      const size = Number.parseInt(rest.slice(0, eol), 16);
      if (!size) break;
      decoded += rest.slice(eol + 2, eol + 2 + size);
      rest = rest.slice(eol + 2 + size + 2);
    }
    body = decoded;
  }
  return {
    status,
    headers,
    body,
    all,
    get: (name) => all(name)[0],
    json: () => JSON.parse(body) as Record<string, unknown>,
  };
}

/**
 * Sends `head` byte for byte over a plain TCP socket, so nothing normalises the request line
 * or header names, and reads until the server closes. `head` is lines without the final
 * blank line; `Connection: close` should be among them unless the server closes by itself.
 */
export function rawRequest(url: string, head: string[], body = ''): Promise<RawResponse> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      try {
        resolve(parseResponse(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    });
    socket.write(Buffer.from(`${head.join('\r\n')}\r\n\r\n${body}`, 'latin1'));
  });
}

export function hostOf(url: string): string {
  return new URL(url).host;
}

/** A GET over raw TCP with the usual Host and Connection: close, plus `extra` header lines. */
export function rawGet(url: string, target: string, extra: string[] = []): Promise<RawResponse> {
  return rawRequest(url, [`GET ${target} HTTP/1.1`, `Host: ${hostOf(url)}`, ...extra, 'Connection: close']);
}

/** The echo backend, recording every request target it was asked for (HTTP and upgrades). */
export async function startRecordingEcho(): Promise<Listening & { seen: string[] }> {
  const backend = await startEchoBackend();
  const seen: string[] = [];
  backend.server.on('request', (req: IncomingMessage) => seen.push(req.url ?? ''));
  backend.server.on('upgrade', (req: IncomingMessage, socket) => {
    seen.push(`upgrade ${req.url}`);
    socket.destroy();
  });
  return { ...backend, seen };
}

/**
 * Writes `bytes` as they are and returns everything the server sent until it closed the
 * connection: several responses when the bytes held several (pipelined) requests.
 */
export function rawExchange(url: string, bytes: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.write(Buffer.from(bytes, 'latin1'));
  });
}

/**
 * The status codes of the responses in a raw exchange, in order, read by walking the stream:
 * each response's head, then its Content-Length body (the proxy's own answers carry one).
 */
export function statusCodes(raw: string): number[] {
  const codes: number[] = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    const status = /^HTTP\/1\.1 (\d{3}) /.exec(rest);
    if (end < 0 || !status) throw new Error(`not a response: ${JSON.stringify(rest.slice(0, 80))}`);
    codes.push(Number(status[1]));
    const length = /\r\ncontent-length: *(\d+)/i.exec(rest.slice(0, end + 2));
    rest = rest.slice(end + 4 + Number(length?.[1] ?? 0));
  }
  return codes;
}
