/**
 * Fuzzing JSON-RPC bodies on the MCP path with `mcp_access` rules set (bypass mode, a recording
 * backend): well-formed calls with allowed, denied and look-alike names, in batches, with
 * duplicate keys, escapes and broken encodings. A refusal is a JSON-RPC error or a 4xx in the
 * proxy's error shape and forwards nothing; what is forwarded is exactly the bytes judged, and
 * JSON.parse (the reading a backend would make) finds no denied call in them.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestProxy, type TestProxy } from '../helpers/servers.js';
import {
  answerOf,
  assertProperty,
  expectDocumentedAnswer,
  expectJsonRpcErrors,
  fuzzTimeout,
  hostileString,
  type RecordingBackend,
  startRecordingBackend,
  watchProcessFailures,
} from './harness.js';

const ALLOWED_TOOLS = ['echo', 'read_file'];
const RULES = { default: 'deny', rules: [{ tools: ALLOWED_TOOLS }] };
/** Methods whose target the rules judge: every one but an allowed tools/call is denied here. */
const JUDGED = new Set(['tools/call', 'prompts/get', 'resources/read', 'resources/subscribe']);

/** Every denied call a backend parsing `body` with JSON.parse would run; empty when none. */
function deniedCalls(body: string): string[] {
  const value = JSON.parse(body) as unknown;
  const messages = Array.isArray(value) ? value : [value];
  const denied: string[] = [];
  for (const m of messages) {
    if (typeof m !== 'object' || m === null) continue;
    const { method, params } = m as { method?: unknown; params?: { name?: unknown; uri?: unknown } };
    if (typeof method !== 'string' || !JUDGED.has(method)) continue;
    const name = params?.name;
    if (method === 'tools/call' && typeof name === 'string' && ALLOWED_TOOLS.includes(name)) continue;
    denied.push(`${method} ${JSON.stringify(params)}`);
  }
  return denied;
}

describe('fuzzing JSON-RPC bodies under mcp_access rules', () => {
  const crashes = watchProcessFailures();
  let backend: RecordingBackend;
  let proxy: TestProxy;

  beforeAll(async () => {
    backend = await startRecordingBackend();
    proxy = await startTestProxy({
      PROXY_TARGET_URL: backend.url,
      MCP_ACCESS: JSON.stringify(RULES),
      RATE_LIMIT_PER_MINUTE: '0',
      LOG_LEVEL: 'warn',
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await backend?.close();
  });

  it(
    'refused bodies forward nothing; forwarded bodies are the bytes judged and hold no denied call',
    async () => {
      const name = fc.oneof(
        fc.constantFrom(
          ...ALLOWED_TOOLS,
          'delete_file',
          'Echo',
          'echo ',
          ' echo',
          'echo\u0000',
          'ech\\u006f',
          'read_file*',
          '*',
        ),
        hostileString(6),
      );
      const id = fc.oneof(
        fc.integer(),
        fc.string({ maxLength: 8 }),
        fc.constant(null),
        fc.double(),
        fc.jsonValue({ maxDepth: 1 }),
      );
      const method = fc.oneof(
        fc.constantFrom(
          'tools/call',
          'tools/list',
          'prompts/get',
          'resources/read',
          'resources/subscribe',
          'initialize',
          'ping',
          'notifications/initialized',
          'TOOLS/CALL',
          'tools/call ',
        ),
        hostileString(4),
      );
      const params = fc.oneof(
        fc.record({ name, arguments: fc.jsonValue({ maxDepth: 2 }) }, { requiredKeys: [] }),
        fc.record(
          { uri: fc.constantFrom('file:///public/readme', 'file:///private/keys'), name },
          { requiredKeys: [] },
        ),
        fc.jsonValue({ maxDepth: 2 }),
      );
      const message = fc
        .record(
          {
            jsonrpc: fc.constantFrom('2.0', '2.0', '1.0', 2),
            id,
            method,
            params,
            result: fc.jsonValue({ maxDepth: 1 }),
          },
          {
            requiredKeys: ['method'],
          },
        )
        .map((m) => JSON.stringify(m));
      /** Texts a lenient parser and a strict one may read differently. */
      const twist = fc.constantFrom(
        (s: string) => s,
        (s: string) => s.replace('"name":', '"name":"echo","name":'),
        (s: string) => s.replace('"method":', '"method":"ping","method":'),
        (s: string) => s.replace(/"echo"/g, '"\\u0065cho"'),
        (s: string) => s.replace('{', '{"params":{"name":"echo"},'),
        (s: string) => `\ufeff${s}`,
        (s: string) => `${s} `,
        (s: string) => `${s}\u0000`,
        (s: string) => s.replace('"tools/call"', '"tools\\/call"'),
        (s: string) => s.slice(0, Math.max(1, s.length - 1)),
        (s: string) => s.replace(':', ': /*c*/ '),
      );
      const body = fc.oneof(
        { weight: 4, arbitrary: fc.tuple(message, twist).map(([m, t]) => t(m)) },
        {
          weight: 2,
          arbitrary: fc
            .tuple(fc.array(message, { maxLength: 4 }), twist)
            .map(([ms, t]) => t(`[${ms.join(',')}]`)),
        },
        { weight: 1, arbitrary: hostileString(20) },
        {
          weight: 1,
          arbitrary: fc
            .integer({ min: 1, max: 200 })
            .map((depth) => `${'['.repeat(depth * 10)}${']'.repeat(depth * 10)}`),
        },
      );
      const encoding = fc.constantFrom('utf8', 'utf8', 'utf8', 'utf16le', 'latin1');
      const contentType = fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'application/json; charset=utf-16',
        'text/plain',
      );
      await assertProperty(
        fc.asyncProperty(body, encoding, contentType, async (text, enc, type) => {
          const bytes = Buffer.from(text, enc as BufferEncoding);
          const context = `${type} ${enc} ${text.slice(0, 600)}`;
          const before = backend.received.length;
          const answer = await answerOf(
            await fetch(`${proxy.url}/mcp`, {
              method: 'POST',
              headers: { 'content-type': type, accept: 'application/json, text/event-stream' },
              body: bytes,
            }),
          );
          expectDocumentedAnswer(answer, context, { jsonRpc: true });
          const forwarded = backend.received.slice(before);
          if (forwarded.length > 0) {
            expect(forwarded, context).toHaveLength(1);
            expect(forwarded[0]?.body.equals(bytes), `the bytes judged, and no others: ${context}`).toBe(
              true,
            );
            expect(answer.status, context).toBe(200);
            // What the backend reads holds no call the rules deny.
            expect(deniedCalls(bytes.toString('utf8')), context).toEqual([]);
            return;
          }
          if (answer.status === 200) {
            // The proxy's own JSON-RPC answer to a refused call: an error for each request.
            expectJsonRpcErrors(answer.body, context);
            return;
          }
          expect([400, 413, 415], context).toContain(answer.status);
        }),
        60,
      );
      crashes.expectNone();
      expect(proxy.logs.filter((l) => l.level === 'error')).toEqual([]);
    },
    fuzzTimeout(),
  );

  it('an allowed call reaches the backend (the positive control)', async () => {
    const body = JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'echo', arguments: { text: 'hi' } },
    });
    const before = backend.received.length;
    const res = await fetch(`${proxy.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body,
    });
    expect(res.status).toBe(200);
    expect(backend.received.slice(before).map((r) => r.body.toString())).toEqual([body]);
  });
});
