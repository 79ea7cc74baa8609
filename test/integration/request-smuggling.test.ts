// Request smuggling (RFC 9112 §6.3, §11.2): a request whose framing the proxy and the backend
// could read differently must be refused before anything reaches the backend, and bytes after
// a body must be parsed — and authenticated — as a request of their own, never slip through.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { rawExchange, startRecordingEcho, statusCodes } from '../helpers/raw-http.js';

describe('request smuggling against the oidc mode', () => {
  let stack: OidcStack;
  let seen: string[];
  let host: string;

  beforeAll(async () => {
    stack = await startOidcStack({}, {}, async () => {
      const echo = await startRecordingEcho();
      seen = echo.seen;
      return echo;
    });
    host = new URL(stack.url).host;
  });
  afterAll(async () => {
    await stack?.close();
  });

  const smuggled = (): string =>
    `GET /mcp/secret HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer forged\r\nConnection: close\r\n\r\n`;

  it.each([
    [
      'Content-Length and Transfer-Encoding together (CL.TE / TE.CL)',
      ['Content-Length: 4', 'Transfer-Encoding: chunked'],
      '0\r\n\r\n',
    ],
    ['two different Content-Length values', ['Content-Length: 0', 'Content-Length: 40'], ''],
    ['a Content-Length list', ['Content-Length: 0, 40'], ''],
    ['a signed Content-Length', ['Content-Length: +0'], ''],
    [
      'a Transfer-Encoding that does not end in chunked',
      ['Transfer-Encoding: chunked, identity'],
      '0\r\n\r\n',
    ],
    ['an obfuscated Transfer-Encoding', ['Transfer-Encoding: xchunked'], '0\r\n\r\n'],
    ['whitespace before the colon', ['Transfer-Encoding : chunked'], '0\r\n\r\n'],
    ['an obs-fold continuation line', ['Transfer-Encoding: identity', ' chunked'], '0\r\n\r\n'],
    ['a chunk size with junk', ['Transfer-Encoding: chunked'], '0x0\r\n\r\n'],
  ])('refuses %s with 400 and forwards nothing', async (_name, framing, body) => {
    const before = seen.length;
    const raw = await rawExchange(
      stack.url,
      [`POST /mcp HTTP/1.1`, `Host: ${host}`, ...framing, '', body].join('\r\n') + smuggled(),
    );
    const codes = statusCodes(raw);
    expect(codes[0], raw.slice(0, 200)).toBe(400);
    // The connection is closed after the refusal: the bytes behind it are never read as a request.
    expect(codes).toEqual([400]);
    expect(raw).not.toMatch(/stack|at \w+ \(/i);
    expect(seen.length).toBe(before);
  });

  it('reads the bytes after a chunked body as a request of their own, and challenges it too', async () => {
    const before = seen.length;
    const raw = await rawExchange(
      stack.url,
      [
        'POST /mcp HTTP/1.1',
        `Host: ${host}`,
        'Transfer-Encoding: chunked',
        'Content-Type: application/json',
        '',
        '2',
        '{}',
        '0',
        '',
        '',
      ].join('\r\n') + smuggled(),
    );
    expect(statusCodes(raw), raw).toEqual([401, 401]);
    expect(seen.length).toBe(before);
  });

  it('reads the bytes after a Content-Length body as a request of their own, and challenges it too', async () => {
    const before = seen.length;
    const raw = await rawExchange(
      stack.url,
      ['POST /mcp HTTP/1.1', `Host: ${host}`, 'Content-Length: 2', '', '{}'].join('\r\n') + smuggled(),
    );
    expect(statusCodes(raw), raw).toEqual([401, 401]);
    expect(seen.length).toBe(before);
  });
});
