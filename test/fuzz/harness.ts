/**
 * What every fuzz test shares: the run budget (FUZZ_RUNS, FUZZ_SEED, FUZZ_PATH, FUZZ_SECONDS),
 * a backend that records what reaches it, the process-level crash watch, and the invariants an
 * answer of the proxy must hold whatever it was sent. docs/development.md "Fuzzing" says how to
 * run them longer and how to replay a failure.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import fc from 'fast-check';
import { afterAll, beforeAll, expect } from 'vitest';
import type { RawResponse } from '../helpers/raw-http.js';
import { type Listening, listen } from '../helpers/servers.js';

// --- the run budget -------------------------------------------------------------------------

function envNumber(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Runs per property: FUZZ_RUNS when set (npm run fuzz), else the property's own small default. */
export function fuzzRuns(defaultRuns: number): number {
  return envNumber('FUZZ_RUNS') ?? defaultRuns;
}

/** With FUZZ_SECONDS, each property stops after that long (npm run fuzz stays bounded). */
const FUZZ_SECONDS = envNumber('FUZZ_SECONDS');

/**
 * fast-check's parameters for one property. The seed is random unless FUZZ_SEED fixes it; a
 * failure's message carries the seed, the shrink path and the counterexample, and FUZZ_SEED
 * with FUZZ_PATH replays exactly that case.
 */
export function fuzzParameters<T>(defaultRuns: number): fc.Parameters<T> {
  const seed = envNumber('FUZZ_SEED');
  const path = process.env.FUZZ_PATH;
  return {
    numRuns: fuzzRuns(defaultRuns),
    verbose: 1,
    ...(seed === undefined ? {} : { seed }),
    ...(path === undefined || path === '' ? {} : { path }),
    ...(FUZZ_SECONDS === undefined ? {} : { interruptAfterTimeLimit: FUZZ_SECONDS * 1000 }),
  };
}

/** A test's timeout: room for the default runs, or FUZZ_SECONDS and shrinking in a long run. */
export function fuzzTimeout(defaultMs = 30_000): number {
  if (FUZZ_SECONDS !== undefined) return FUZZ_SECONDS * 1000 + 120_000;
  // FUZZ_RUNS without FUZZ_SECONDS: unbounded by design (someone asked for that many runs).
  return envNumber('FUZZ_RUNS') === undefined ? defaultMs : 24 * 3600_000;
}

/** Runs an async property with the budget above; fast-check reports seed and counterexample. */
export async function assertProperty<Ts extends [unknown, ...unknown[]]>(
  property: fc.IAsyncPropertyWithHooks<Ts>,
  defaultRuns: number,
): Promise<void> {
  await fc.assert(property, fuzzParameters<Ts>(defaultRuns));
}

// --- hostile strings --------------------------------------------------------------------------

/** Characters parsers trip over: controls, separators, percent signs, dots, quotes, non-ASCII. */
const NASTY_CHARS = [
  '\u0000',
  '\t',
  '\u000b',
  '\u001f',
  '\u007f',
  ' ',
  '%',
  '%00',
  '%2e',
  '%2E',
  '%2f',
  '%5c',
  '%25',
  '%zz',
  '.',
  '..',
  '/',
  '\\',
  '?',
  '#',
  '&',
  '=',
  ';',
  ',',
  '"',
  "'",
  '<',
  '>',
  '{',
  '}',
  '*',
  '@',
  ':',
  '+',
  'é',
  '\u00ff',
  '\u0130',
  '\u200b',
  '\u202e',
  '\ufeff',
  '\ufffd',
  '\ud800',
  '😀',
  'Ａ',
];

/** A string mixing ordinary text with NASTY_CHARS, unicode and encodings; up to `maxLength` pieces. */
export function hostileString(maxLength = 40): fc.Arbitrary<string> {
  const piece = fc.oneof(
    { weight: 3, arbitrary: fc.string({ maxLength: 6 }) },
    { weight: 3, arbitrary: fc.constantFrom(...NASTY_CHARS) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 3 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 3 }) },
  );
  return fc.array(piece, { maxLength }).map((pieces) => pieces.join(''));
}

/** Sometimes short and hostile, sometimes huge (up to `maxHuge` characters): length limits. */
export function hostileOrHuge(maxHuge: number): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 5, arbitrary: hostileString() },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.constantFrom('a', '%41', 'é', '\u0000'), fc.integer({ min: 1, max: maxHuge }))
        .map(([unit, n]) => unit.repeat(Math.max(1, Math.floor(n / unit.length)))),
    },
  );
}

// --- the recording backend --------------------------------------------------------------------

export interface Received {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** A backend that records every request reaching it: what is refused must never show up here. */
export interface RecordingBackend extends Listening {
  received: Received[];
}

/** Answers every request 200 with `{}` (JSON, which MCP response editing reads as nothing to edit). */
export async function startRecordingBackend(): Promise<RecordingBackend> {
  const received: Received[] = [];
  const listening = await listen(
    createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        received.push({
          method: req.method ?? '',
          url: req.url ?? '',
          headers: req.headers,
          body: Buffer.concat(chunks),
        });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      });
    }),
  );
  listening.server.on('upgrade', (req, socket) => {
    received.push({ method: 'UPGRADE', url: req.url ?? '', headers: req.headers, body: Buffer.alloc(0) });
    socket.destroy();
  });
  return Object.assign(listening, { received });
}

// --- crashes ----------------------------------------------------------------------------------

/**
 * Records unhandled rejections and uncaught exceptions while this file's tests run: a fuzzed
 * input must never make the proxy throw outside a request. Call at the top of a describe block;
 * `expectNone()` after each property.
 */
export function watchProcessFailures(): { expectNone(): void } {
  const failures: string[] = [];
  const onRejection = (reason: unknown): void => {
    failures.push(`unhandledRejection: ${(reason as Error)?.stack ?? String(reason)}`);
  };
  const onException = (error: Error): void => {
    failures.push(`uncaughtException: ${error.stack ?? String(error)}`);
  };
  beforeAll(() => {
    process.on('unhandledRejection', onRejection);
    process.on('uncaughtException', onException);
  });
  afterAll(() => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  });
  return {
    expectNone: () => expect(failures).toEqual([]),
  };
}

// --- answers and their invariants -------------------------------------------------------------

/** One response of the proxy, whichever client read it. */
export interface Answer {
  status: number;
  header(name: string): string | undefined;
  body: string;
}

export async function answerOf(res: Response): Promise<Answer> {
  const body = await res.text();
  return { status: res.status, header: (name) => res.headers.get(name) ?? undefined, body };
}

export function rawAnswer(res: RawResponse): Answer {
  // The raw reader decodes as latin1; the proxy's own bodies are UTF-8.
  return {
    status: res.status,
    header: (name) => res.get(name),
    body: Buffer.from(res.body, 'latin1').toString(),
  };
}

/** A stack frame (`at fn (file.ts:12:3)`) or a Node error name: never in an answer. */
const LEAKED_INTERNALS = /\bat [^\n]*:\d+:\d+\)?|\b(?:TypeError|RangeError|SyntaxError|ReferenceError)\b/;

/** The statuses the forwarder answers itself when the backend fails (502, 503 breaker, 504). */
const UPSTREAM_STATUSES = new Set([502, 503, 504]);

/**
 * What holds for every answer: no 5xx but the forwarder's documented upstream failures, and an
 * error answered in JSON is the proxy's one shape (http/errors.ts): `error`, `error_description`
 * and the request id of the X-Request-Id header (absent only with the header, for requests Node
 * could not parse), nothing else, no internals. `context` names the input in failure messages.
 */
export function expectDocumentedAnswer(
  answer: Answer,
  context: string,
  options: { jsonRpc?: boolean } = {},
): void {
  const where = `${context} -> ${answer.status} ${answer.body.slice(0, 300)}`;
  if (answer.status >= 500) {
    expect(UPSTREAM_STATUSES.has(answer.status), `a 5xx the proxy does not document: ${where}`).toBe(true);
  }
  expect(LEAKED_INTERNALS.test(answer.body), `internals in the answer: ${where}`).toBe(false);
  // HEAD answers and empty errors (405 of a proxy-owned path to a HEAD, 413 cut short) have no body.
  if (answer.status < 400 || answer.body === '') return;
  const type = answer.header('content-type') ?? '';
  if (type.startsWith('application/json')) {
    if (options.jsonRpc && isJsonRpc(answer.body)) expectJsonRpcErrors(answer.body, where);
    else expectErrorShape(answer, where);
  } else {
    expect(type, `an error body that is neither JSON nor a page: ${where}`).toMatch(
      /^text\/html; charset=utf-8$/,
    );
  }
}

export function expectErrorShape(answer: Answer, where: string): Record<string, unknown> {
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(answer.body) as Record<string, unknown>;
  } catch {
    throw new Error(`a JSON error that is not JSON: ${where}`);
  }
  const requestId = answer.header('x-request-id');
  const expected =
    requestId === undefined ? ['error', 'error_description'] : ['error', 'error_description', 'request_id'];
  expect(Object.keys(body).sort(), `error members: ${where}`).toEqual(expected.sort());
  expect(body.error, where).toMatch(/^[a-z_]+$/);
  expect(typeof body.error_description, where).toBe('string');
  if (requestId !== undefined) expect(body.request_id, where).toBe(requestId);
  return body;
}

/** RFC 6749 §5.2 error codes, with RFC 8707's invalid_target and the store-down answer. */
export const TOKEN_ERROR_CODES = [
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'invalid_target',
];

function isJsonRpc(body: string): boolean {
  try {
    const value = JSON.parse(body) as unknown;
    const first = Array.isArray(value) ? value[0] : value;
    return (first as { jsonrpc?: unknown } | null)?.jsonrpc === '2.0';
  } catch {
    return false;
  }
}

/**
 * On the MCP path the proxy also answers in JSON-RPC (JSON-RPC 2.0 §5): a refused call, a body
 * that is no JSON-RPC request; a reply or a batch of replies, each an error with a numeric code.
 */
export function expectJsonRpcErrors(body: string, where: string): void {
  const value = JSON.parse(body) as unknown;
  for (const reply of Array.isArray(value) ? value : [value]) {
    expect(reply, where).toMatchObject({
      jsonrpc: '2.0',
      error: { code: expect.any(Number), message: expect.any(String) },
    });
    expect(Object.keys(reply as object).sort(), where).toEqual(['error', 'id', 'jsonrpc']);
  }
}
