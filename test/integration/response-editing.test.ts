import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { buildConnector } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CircuitBreaker } from '../../src/proxy/breaker.js';
import {
  type ForwardCallOptions,
  Forwarder,
  type ForwardOptions,
  type ForwardResult,
  type LiveStream,
} from '../../src/proxy/forward.js';
import { upstreamRequestHeaders } from '../../src/proxy/headers.js';
import type { ResponseEditor } from '../../src/proxy/message-editor.js';
import { Pool } from '../../src/proxy/undici-pool.js';
import { freePort, type Listening, listen, startBackend, waitFor } from '../helpers/servers.js';

type Message = Record<string, unknown>;

/** Records what it saw; hides the named tools from any `tools/list` result, and may rewrite others. */
class RecordingEditor implements ResponseEditor {
  readonly seen: Message[] = [];
  readonly ends: Array<[string, string | undefined]> = [];

  constructor(
    private readonly hide: readonly string[] = [],
    private readonly rewrite?: (message: Message) => Message | undefined,
  ) {}

  message(message: Message): Message | undefined {
    this.seen.push(message);
    const result = message.result as { tools?: Array<{ name: string }> } | undefined;
    if (this.hide.length > 0 && Array.isArray(result?.tools)) {
      const tools = result.tools.filter((tool) => !this.hide.includes(tool.name));
      return { ...message, result: { ...result, tools } };
    }
    return this.rewrite?.(message);
  }

  end(outcome: 'complete' | 'failed', reason?: string): void {
    this.ends.push([outcome, reason]);
  }
}

/** What a front's request gets: nothing (plain forward), or a body and an editor. */
type Plan = (req: IncomingMessage, body: Buffer) => ForwardCallOptions | undefined;

interface Front extends Listening {
  results: ForwardResult[];
  /** The proxy's live SSE streams, which shutdown ends. */
  live: Set<LiveStream>;
  plan: Plan;
}

/**
 * A Forwarder to `target` behind a tiny HTTP front that reads each request body (as the
 * MCP-aware stage will) and forwards with what `plan` gives.
 */
async function startFront(
  target: string,
  settings: Partial<ForwardOptions> & { connect?: buildConnector.connector } = {},
): Promise<Front> {
  const url = new URL(target);
  const { connect, ...options } = settings;
  const pool = new Pool(url.origin, {
    connections: null,
    pipelining: 1,
    headersTimeout: 5000,
    bodyTimeout: 0,
    ...(connect ? { connect } : {}),
  });
  const live = new Set<LiveStream>();
  const forwarder = new Forwarder(
    { pool, origin: url.origin, prefix: '', host: url.host, settings: '' },
    new CircuitBreaker({ threshold: 0, resetMs: 1000 }),
    {
      retries: 2,
      idleTimeoutMs: 0,
      sseKeepaliveMs: 0,
      responseDefaults: [],
      errorHeaders: [],
      draining: () => false,
      ...options,
    },
    { add: (s) => live.add(s), delete: (s) => live.delete(s) },
  );
  let counter = 0;
  const front: Front = {
    ...(await listen(
      createServer((req, res) => {
        const headers = upstreamRequestHeaders(req.rawHeaders, req.headers.connection, {
          dropAuthorization: false,
          add: [],
        });
        const id = `req-${++counter}`;
        const forward = (call: ForwardCallOptions | undefined): void => {
          forwarder
            .forward(req, res, req.url ?? '/', headers, id, [], undefined, call)
            .then((result) => front.results.push(result));
        };
        if (req.method !== 'POST') return forward(front.plan(req, Buffer.alloc(0)));
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => forward(front.plan(req, Buffer.concat(chunks))));
      }),
    )),
    results: [],
    live,
    plan: () => undefined,
  };
  const close = front.close;
  front.close = async () => {
    await close();
    await pool.close();
  };
  return front;
}

interface Raw {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** The response ended early (the proxy cut it). */
  cut: boolean;
}

/** A request whose response bytes are kept exactly as received. */
function rawRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | Buffer[] } = {},
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'POST', headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      let cut = false;
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('aborted', () => {
        cut = true;
      });
      res.on('error', () => {
        cut = true;
      });
      res.on('close', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), cut }),
      );
    });
    req.on('error', reject);
    const parts =
      options.body === undefined ? [] : Array.isArray(options.body) ? options.body : [options.body];
    for (const part of parts) req.write(part);
    req.end();
  });
}

const LIST_REQUEST = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/list"}');

/** An editor's `end` calls once the forward is over, checked to stay at one. */
async function endsOf(editor: RecordingEditor): Promise<Array<[string, string | undefined]>> {
  await waitFor(() => editor.ends.length > 0, 5000, 'the editor to be ended');
  await delay(50);
  return editor.ends;
}

function expectProxyError(raw: Raw, status: number, error: string): { error_description: string } {
  expect(raw.status).toBe(status);
  expect(raw.headers['content-type']).toMatch(/^application\/json/);
  const body = JSON.parse(raw.body.toString('utf8')) as {
    error: string;
    error_description: string;
    request_id: string;
  };
  expect(body.error).toBe(error);
  expect(body.error_description.length).toBeGreaterThan(0);
  expect(body.request_id).toBe(raw.headers['x-request-id']);
  return body;
}

/** The tool definitions the SDK server lists, with a cursor to a next page. */
const TOOLS = [
  { name: 'echo', description: 'Echoes its input', inputSchema: { type: 'object' as const } },
  { name: 'secret', description: 'Only for admins', inputSchema: { type: 'object' as const } },
  { name: 'count', description: 'Counts with progress', inputSchema: { type: 'object' as const } },
];

/**
 * The official SDK server (McpServer, stateless streamable HTTP), recording the exact bytes of
 * every response it writes, by JSON-RPC method.
 */
async function startSdkBackend(
  enableJsonResponse: boolean,
): Promise<Listening & { sent: Array<{ method: string; bytes: Buffer }> }> {
  const sent: Array<{ method: string; bytes: Buffer }> = [];
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const body = raw.length > 0 ? (JSON.parse(raw.toString('utf8')) as { method?: string }) : undefined;
    const out: Buffer[] = [];
    const tee = res as unknown as {
      write: (chunk: unknown, ...rest: unknown[]) => boolean;
      end: (chunk?: unknown, ...rest: unknown[]) => ServerResponse;
    };
    const write = tee.write.bind(res);
    const end = tee.end.bind(res);
    const keep = (chunk: unknown): void => {
      if (typeof chunk === 'string') out.push(Buffer.from(chunk));
      else if (chunk instanceof Uint8Array) out.push(Buffer.from(chunk));
    };
    tee.write = (chunk, ...rest) => {
      keep(chunk);
      return write(chunk, ...rest);
    };
    tee.end = (chunk, ...rest) => {
      keep(chunk);
      return end(chunk, ...rest);
    };
    res.on('finish', () =>
      sent.push({ method: body?.method ?? req.method ?? '', bytes: Buffer.concat(out) }),
    );
    const mcp = new McpServer({ name: 'editing-test', version: '1.0.0' });
    mcp.registerTool('echo', { inputSchema: { text: z.string() } }, async ({ text }) => ({
      content: [{ type: 'text', text }],
    }));
    // Progress notifications between the call and its result (the callers always send a token).
    mcp.registerTool('count', { inputSchema: { n: z.number().int() } }, async ({ n }, extra) => {
      const progressToken = extra._meta?.progressToken ?? 0;
      for (let progress = 1; progress <= n; progress++) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress },
        });
        await delay(10);
      }
      return { content: [{ type: 'text', text: `counted to ${n}` }] };
    });
    // A listing with a next page, which filtering must keep.
    mcp.server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: TOOLS,
      nextCursor: 'page-2',
    }));
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse,
    });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res, body);
  });
  return { ...(await listen(server)), sent };
}

describe('response editing through the Forwarder', () => {
  const cleanups: Array<() => Promise<void>> = [];
  const track = <T extends { close(): Promise<void> }>(thing: T): T => {
    cleanups.unshift(() => thing.close());
    return thing;
  };
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });
  /** A front to `target` whose every request goes with its body and `editor`. */
  const editing = async (
    target: string,
    editor: ResponseEditor,
    settings: Parameters<typeof startFront>[1] = {},
  ): Promise<Front> => {
    const front = track(await startFront(target, settings));
    front.plan = (_req, body) => ({ body, editor });
    return front;
  };
  /** A tools/list request through the front. */
  const list = (front: Front): Promise<Raw> => rawRequest(`${front.url}/mcp`, { body: LIST_REQUEST });

  for (const json of [true, false]) {
    describe(`the SDK server, ${json ? 'JSON' : 'SSE'} responses`, () => {
      it('filters tools/list for the SDK client and keeps nextCursor; other messages pass untouched', async () => {
        const backend = track(await startSdkBackend(json));
        const front = track(await startFront(backend.url));
        const editors: Array<{ method: string; editor: RecordingEditor }> = [];
        front.plan = (req, body) => {
          if (req.method !== 'POST') return undefined;
          const method = (JSON.parse(body.toString('utf8')) as { method: string }).method;
          const editor = new RecordingEditor(['secret']);
          editors.push({ method, editor });
          return { body, editor };
        };
        const client = new Client({ name: 'editing-test', version: '1.0.0' });
        await client.connect(new StreamableHTTPClientTransport(new URL(`${front.url}/mcp`)));
        const listed = await client.listTools();
        expect(listed.tools.map((t) => t.name)).toEqual(['echo', 'count']);
        expect(listed.nextCursor).toBe('page-2');

        const progress: number[] = [];
        const called = await client.callTool({ name: 'count', arguments: { n: 3 } }, undefined, {
          onprogress: (p) => progress.push(p.progress),
        });
        expect(called.content).toEqual([{ type: 'text', text: 'counted to 3' }]);
        if (!json) expect(progress).toEqual([1, 2, 3]);
        await client.close();

        const list = editors.find((e) => e.method === 'tools/list')?.editor;
        expect(list?.seen).toHaveLength(1);
        expect(await endsOf(list as RecordingEditor)).toEqual([['complete', undefined]]);
        // The call's editor saw the progress notifications (SSE) and the result, and changed nothing.
        const call = editors.find((e) => e.method === 'tools/call')?.editor as RecordingEditor;
        expect(await endsOf(call)).toEqual([['complete', undefined]]);
        expect(call.seen.map((m) => m.method ?? 'result')).toEqual(
          json
            ? ['result']
            : ['notifications/progress', 'notifications/progress', 'notifications/progress', 'result'],
        );
        // The initialize notification (202, no body) ended its editor too.
        const initialized = editors.find((e) => e.method === 'notifications/initialized')?.editor;
        expect(await endsOf(initialized as RecordingEditor)).toEqual([['complete', undefined]]);
      });

      it('passes every event the editor leaves alone byte for byte, and re-emits only the replaced one', async () => {
        const backend = track(await startSdkBackend(json));
        const editor = new RecordingEditor([], (m) =>
          m.result ? { ...m, result: { content: [{ type: 'text', text: 'rewritten' }] } } : undefined,
        );
        const front = await editing(backend.url, editor);
        const headers = {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-protocol-version': '2025-06-18',
        };
        const call = Buffer.from(
          JSON.stringify({
            jsonrpc: '2.0',
            id: 7,
            method: 'tools/call',
            params: { name: 'count', arguments: { n: 3 }, _meta: { progressToken: 'p' } },
          }),
        );
        const raw = await rawRequest(`${front.url}/mcp`, { headers, body: call });
        expect(raw.status).toBe(200);
        await waitFor(
          () => backend.sent.some((s) => s.method === 'tools/call'),
          5000,
          'the backend response',
        );
        const original = (backend.sent.find((s) => s.method === 'tools/call') as { bytes: Buffer }).bytes;
        const text = original.toString('utf8');
        if (json) {
          expect(raw.headers['content-length']).toBe(String(raw.body.length));
          expect(JSON.parse(raw.body.toString('utf8'))).toEqual({
            jsonrpc: '2.0',
            id: 7,
            result: { content: [{ type: 'text', text: 'rewritten' }] },
          });
        } else {
          // Events end with a blank line; all but the last (the result) arrive exactly as sent.
          const events = text.split(/(?<=\n\n)/);
          const last = events.pop() as string;
          expect(events.filter((e) => e.includes('notifications/progress'))).toHaveLength(3);
          const prefix = events.join('');
          expect(raw.body.subarray(0, Buffer.byteLength(prefix)).toString('utf8')).toBe(prefix);
          const rewritten = raw.body.subarray(Buffer.byteLength(prefix)).toString('utf8');
          // Same fields as the original event, the new data on one line.
          const fields = last.split('\n').filter((l) => l && !l.startsWith('data:'));
          expect(rewritten.split('\n').filter((l) => l && !l.startsWith('data:'))).toEqual(fields);
          expect(rewritten.endsWith('\n\n')).toBe(true);
          const data = rewritten.split('\n').filter((l) => l.startsWith('data: '));
          expect(data).toHaveLength(1);
          expect(JSON.parse((data[0] as string).slice(6))).toEqual({
            jsonrpc: '2.0',
            id: 7,
            result: { content: [{ type: 'text', text: 'rewritten' }] },
          });
        }
        expect(await endsOf(editor)).toEqual([['complete', undefined]]);
      });
    });
  }

  describe('SSE parsing', () => {
    const PROGRESS =
      '{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}';
    /** A comment, a progress notification, and a tools/list result split over two data lines. */
    const stream = (eol: string): string =>
      [
        `: opening comment${eol}${eol}`,
        `event: message${eol}id: 1${eol}data: ${PROGRESS}${eol}${eol}`,
        `id: 2${eol}data: {"jsonrpc":"2.0","id":1,${eol}data: "result":{"tools":[{"name":"a"},{"name":"secret"}],"nextCursor":"c2"}}${eol}${eol}`,
        `event: other${eol}data: not json, not a message${eol}${eol}`,
      ].join('');
    const EDITED =
      'id: 2\ndata: {"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}],"nextCursor":"c2"}}\n\n';
    const expected = (eol: string): string => {
      const parts = stream(eol).split(`${eol}${eol}`);
      return `${parts[0]}${eol}${eol}${parts[1]}${eol}${eol}${EDITED}${parts[3]}${eol}${eol}`;
    };

    /** A raw backend that writes `body` as SSE, `size` bytes at a time with a pause between. */
    async function dribbling(body: string, size: number): Promise<Listening> {
      return track(
        await startBackend(async (req, res) => {
          req.resume();
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          const bytes = Buffer.from(body);
          for (let i = 0; i < bytes.length; i += size) {
            res.write(bytes.subarray(i, i + size));
            await new Promise((r) => setImmediate(r));
          }
          res.end();
        }),
      );
    }

    for (const [name, eol] of [
      ['LF', '\n'],
      ['CRLF', '\r\n'],
      ['CR', '\r'],
    ] as const) {
      it(`edits an event dribbled one byte at a time (${name} line ends)`, async () => {
        const backend = await dribbling(stream(eol), 1);
        const editor = new RecordingEditor(['secret']);
        const front = await editing(backend.url, editor);
        const raw = await list(front);
        expect(raw.status).toBe(200);
        expect(raw.body.toString('utf8')).toBe(expected(eol));
        // The multi-line data was joined with \n before parsing; the `other` event is no message.
        expect(editor.seen.map((m) => m.method ?? m.id)).toEqual(['notifications/progress', 1]);
        expect(await endsOf(editor)).toEqual([['complete', undefined]]);
      });
    }

    it('writes keepalives only between events, also while an event is held for editing', async () => {
      const backend = track(
        await startBackend(async (req, res) => {
          req.resume();
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: {"jsonrpc":"2.0","id":1,');
          await delay(500);
          res.end('"result":{"tools":[{"name":"a"},{"name":"secret"}]}}\n\n');
        }),
      );
      const editor = new RecordingEditor(['secret']);
      const raw = await list(await editing(backend.url, editor, { sseKeepaliveMs: 100 }));
      expect(raw.body.toString('utf8')).toMatch(
        /^(: keepalive\n\n){2,}data: \{"jsonrpc":"2.0","id":1,"result":\{"tools":\[\{"name":"a"\}\]\}\}\n\n$/,
      );
    });

    it('passes an unedited stream byte for byte, whatever the chunking', async () => {
      const body = stream('\r\n') + stream('\n');
      const backend = await dribbling(body, 7);
      const editor = new RecordingEditor();
      const front = await editing(backend.url, editor);
      const raw = await list(front);
      expect(raw.body.toString('utf8')).toBe(body);
      expect(editor.seen).toHaveLength(4);
    });

    it('cuts the stream when an event is over the bound or not JSON (fail closed)', async () => {
      const big = `data: {"jsonrpc":"2.0","id":1,"result":{"pad":"${'x'.repeat(4000)}"}}\n\n`;
      for (const [body, reason] of [
        [`data: ${PROGRESS}\n\n${big}`, 'too_large'],
        [`data: ${PROGRESS}\n\ndata: {"jsonrpc":"2.0","id":1,"result":\n\n`, 'unparseable'],
      ] as const) {
        const backend = await dribbling(body, 1000);
        const editor = new RecordingEditor();
        const front = await editing(backend.url, editor, { editLimitBytes: 2000 });
        const raw = await list(front);
        expect(raw.cut).toBe(true);
        expect(raw.body.toString('utf8')).toBe(`data: ${PROGRESS}\n\n`);
        expect(await endsOf(editor)).toEqual([['failed', reason]]);
      }
    });

    it('does not pass on an event the stream ended inside', async () => {
      const backend = await dribbling(`data: ${PROGRESS}\n\ndata: {"jsonrpc":"2.0","id":1}\n`, 1000);
      const editor = new RecordingEditor();
      const front = await editing(backend.url, editor);
      const raw = await list(front);
      expect(raw.body.toString('utf8')).toBe(`data: ${PROGRESS}\n\n`);
      expect(await endsOf(editor)).toEqual([['failed', 'truncated']]);
    });
  });

  describe('JSON bodies', () => {
    async function jsonBackend(body: string | Buffer, extra: Record<string, string> = {}, status = 200) {
      const seen: IncomingMessage['headers'][] = [];
      const backend = track(
        await startBackend((req, res) => {
          seen.push(req.headers);
          req.resume();
          res.writeHead(status, { 'content-type': 'application/json', ...extra });
          res.end(body);
        }),
      );
      return { backend, seen };
    }

    it('sends the original bytes when nothing was replaced, and re-serializes a replaced batch', async () => {
      const odd = '{ "jsonrpc" : "2.0", "id": 1, "result" : { "value": 1.0 } }';
      const { backend } = await jsonBackend(odd);
      const editor = new RecordingEditor(['secret']);
      const front = await editing(backend.url, editor);
      const raw = await list(front);
      expect(raw.body.toString('utf8')).toBe(odd);
      expect(raw.headers['content-length']).toBe(String(Buffer.byteLength(odd)));
      expect(await endsOf(editor)).toEqual([['complete', undefined]]);

      const batch = [
        { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'a' }, { name: 'secret' }] } },
        { jsonrpc: '2.0', id: 2, result: {} },
      ];
      const second = await jsonBackend(JSON.stringify(batch));
      const editor2 = new RecordingEditor(['secret']);
      const edited = await list(await editing(second.backend.url, editor2));
      expect(JSON.parse(edited.body.toString('utf8'))).toEqual([
        { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'a' }] } },
        { jsonrpc: '2.0', id: 2, result: {} },
      ]);
      expect(edited.headers['content-length']).toBe(String(edited.body.length));
      expect(editor2.seen).toHaveLength(2);
    });

    it('passes other statuses and media types unedited', async () => {
      const { backend } = await jsonBackend('{"jsonrpc":"2.0","error":{"code":-32000},"id":null}', {}, 404);
      const editor = new RecordingEditor();
      const front = await editing(backend.url, editor);
      const raw = await list(front);
      expect(raw.status).toBe(404);
      expect(editor.seen).toHaveLength(0);
      expect(await endsOf(editor)).toEqual([['complete', undefined]]);
    });

    it('asks for no content-coding, and answers 502 when the backend compresses anyway', async () => {
      const body = gzipSync('{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}]}}');
      const { backend, seen } = await jsonBackend(body, { 'content-encoding': 'gzip' });
      const editor = new RecordingEditor(['secret']);
      const front = await editing(backend.url, editor);
      const raw = await rawRequest(`${front.url}/mcp`, {
        headers: { 'accept-encoding': 'gzip, br' },
        body: LIST_REQUEST,
      });
      expect(seen[0]?.['accept-encoding']).toBe('identity');
      expectProxyError(raw, 502, 'upstream_response_unreadable');
      expect(raw.body.toString('latin1')).not.toContain('secret');
      expect(await endsOf(editor)).toEqual([['failed', 'compressed']]);
    });

    it('answers 502 for compressed SSE before sending the head', async () => {
      const backend = track(
        await startBackend((req, res) => {
          req.resume();
          res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
          res.end(gzipSync('data: {"jsonrpc":"2.0","id":1,"result":{}}\n\n'));
        }),
      );
      const editor = new RecordingEditor();
      const front = await editing(backend.url, editor);
      const raw = await list(front);
      expectProxyError(raw, 502, 'upstream_response_unreadable');
      expect(await endsOf(editor)).toEqual([['failed', 'compressed']]);
    });

    it('answers 502 for a body over the bound or not JSON (fail closed)', async () => {
      for (const [body, reason] of [
        [`{"jsonrpc":"2.0","id":1,"result":{"tools":[],"pad":"${'x'.repeat(5000)}"}}`, 'too_large'],
        ['{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret"}', 'unparseable'],
      ] as const) {
        const { backend } = await jsonBackend(body);
        const editor = new RecordingEditor(['secret']);
        const front = await editing(backend.url, editor, { editLimitBytes: 2000 });
        const raw = await list(front);
        const error = expectProxyError(raw, 502, 'upstream_response_unreadable');
        expect(error.error_description).toMatch(reason === 'too_large' ? /larger/ : /not valid JSON/);
        expect(await endsOf(editor)).toEqual([['failed', reason]]);
        expect(front.results[0]?.failure?.code).toBe('upstream_response_unreadable');
      }
    });

    it('answers 502 when the editor throws', async () => {
      const { backend } = await jsonBackend('{"jsonrpc":"2.0","id":1,"result":{}}');
      const front = track(await startFront(backend.url));
      const editor = new RecordingEditor([], () => {
        throw new Error('policy failed');
      });
      front.plan = (_req, b) => ({ body: b, editor });
      expectProxyError(await list(front), 502, 'upstream_response_unreadable');
      expect(await endsOf(editor)).toEqual([['failed', 'editor_error']]);
    });

    it('answers 504 when the body stalls while held for editing', async () => {
      const backend = track(
        await startBackend((req, res) => {
          req.resume();
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('{"jsonrpc":"2.0",');
        }),
      );
      const editor = new RecordingEditor();
      const front = await editing(backend.url, editor, { idleTimeoutMs: 200 });
      const raw = await list(front);
      expectProxyError(raw, 504, 'upstream_timeout');
      expect(await endsOf(editor)).toEqual([['failed', 'upstream_timeout']]);
    });
  });

  describe('the editor is ended once when the response ends early', () => {
    async function sseBackend(after: (res: ServerResponse) => void): Promise<Listening> {
      return track(
        await startBackend((req, res) => {
          req.resume();
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: {"jsonrpc":"2.0","method":"notifications/message","params":{}}\n\n');
          after(res);
        }),
      );
    }

    /** Opens the stream, waits for its first event, then does `then`; resolves with the response. */
    function firstEvent(url: string, then: (req: ReturnType<typeof request>) => void): Promise<void> {
      return new Promise((resolve, reject) => {
        const req = request(url, { method: 'POST' }, (res) => {
          res.once('data', () => then(req));
          res.on('error', () => resolve());
          res.on('close', () => resolve());
          res.resume();
        });
        req.on('error', () => resolve());
        req.end(LIST_REQUEST);
        setTimeout(() => reject(new Error('no first event')), 5000).unref();
      });
    }

    it('client gone', async () => {
      const backend = await sseBackend(() => {});
      const editor = new RecordingEditor();
      const front = await editing(backend.url, editor);
      await firstEvent(`${front.url}/mcp`, (req) => req.destroy());
      expect(await endsOf(editor)).toEqual([['failed', 'client_gone']]);
      expect(front.results[0]?.outcome).toBe('aborted');
    });

    it('upstream reset', async () => {
      const backend = await sseBackend((res) => setTimeout(() => res.socket?.destroy(), 50));
      const editor = new RecordingEditor();
      const front = await editing(backend.url, editor);
      await firstEvent(`${front.url}/mcp`, () => {});
      expect(await endsOf(editor)).toEqual([['failed', 'upstream_reset']]);
    });

    it('shutdown', async () => {
      const backend = await sseBackend(() => {});
      const editor = new RecordingEditor();
      const front = await editing(backend.url, editor);
      await firstEvent(`${front.url}/mcp`, () => {
        for (const stream of front.live) stream.end();
      });
      expect(await endsOf(editor)).toEqual([['failed', 'shutdown']]);
    });

    it('backend unreachable', async () => {
      const editor = new RecordingEditor();
      const front = await editing(`http://127.0.0.1:${await freePort()}`, editor, { retries: 0 });
      expectProxyError(await list(front), 502, 'upstream_unavailable');
      expect(await endsOf(editor)).toEqual([['failed', 'upstream_unavailable']]);
    });
  });

  describe('a buffered request body', () => {
    async function recordingBackend() {
      const got: Array<{ headers: IncomingMessage['headers']; rawHeaders: string[]; body: Buffer }> = [];
      const backend = track(
        await startBackend((req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            got.push({ headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.concat(chunks) });
            res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
          });
        }),
      );
      return { backend, got };
    }

    it('reaches the backend exactly, with its own length, whatever the client sent', async () => {
      const { backend, got } = await recordingBackend();
      const front = track(await startFront(backend.url));
      const given = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"é":"ü"}}');
      front.plan = () => ({ body: given });
      // Chunked from the client, and a fixed length that is not the given body's.
      await rawRequest(`${front.url}/mcp`, { body: [Buffer.from('{"original":'), Buffer.from('true}')] });
      await rawRequest(`${front.url}/mcp`, {
        headers: { 'content-length': '3' },
        body: Buffer.from('abc'),
      });
      expect(got).toHaveLength(2);
      for (const { headers, rawHeaders, body } of got) {
        expect(body.equals(given)).toBe(true);
        expect(headers['content-length']).toBe(String(given.length));
        expect(headers['transfer-encoding']).toBeUndefined();
        expect(rawHeaders.filter((h) => h.toLowerCase() === 'content-length')).toHaveLength(1);
      }
    });

    it('is sent again after connection failures before connect', async () => {
      const { backend, got } = await recordingBackend();
      const real = buildConnector({});
      let refusals = 2;
      const connect: buildConnector.connector = (options, callback) => {
        if (refusals-- > 0) {
          const err = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
          process.nextTick(() => callback(err, null));
          return;
        }
        real(options, callback);
      };
      const front = track(await startFront(backend.url, { connect }));
      const given = Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping"}');
      front.plan = () => ({ body: given });
      const raw = await rawRequest(`${front.url}/mcp`, { body: Buffer.from('something else') });
      expect(raw.status).toBe(200);
      expect(front.results[0]?.attempts).toBe(3);
      expect(got).toHaveLength(1);
      expect(got[0]?.body.equals(given)).toBe(true);
    });
  });
});
