import { describe, expect, it } from 'vitest';
import { responseHead, upstreamRequestHeaders } from '../../src/proxy/headers.js';

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop fields, fields named in Connection and proxy-owned fields in any spelling', () => {
    const raw = [
      'Host',
      'proxy.example',
      'Connection',
      'keep-alive, X-Secret',
      'X-Secret',
      'hidden',
      'Keep-Alive',
      'timeout=5',
      'TE',
      'trailers',
      'Transfer-Encoding',
      'chunked',
      'Proxy-Authorization',
      'Basic abc',
      'X-Forwarded-User',
      'mallory',
      'x_forwarded_email',
      'm@evil.example',
      'X_FORWARDED_GROUPS',
      'admins',
      'Forwarded',
      'for=1.2.3.4',
      'X-Real-IP',
      '1.2.3.4',
      'Mcp-Session-Id',
      'abc',
      'MCP-Protocol-Version',
      '2025-06-18',
      'Authorization',
      'Bearer t',
      'Accept',
      'a',
      'Accept',
      'b',
    ];
    const out = upstreamRequestHeaders(raw, 'keep-alive, X-Secret', {
      dropAuthorization: false,
      add: [['x-forwarded-for', '127.0.0.1']],
    });
    expect(out).toEqual([
      'Mcp-Session-Id',
      'abc',
      'MCP-Protocol-Version',
      '2025-06-18',
      'Authorization',
      'Bearer t',
      'Accept',
      'a',
      'Accept',
      'b',
      'x-forwarded-for',
      '127.0.0.1',
    ]);
  });

  it('drops Authorization when the auth stage consumed it', () => {
    const out = upstreamRequestHeaders(['authorization', 'Bearer t', 'AUTHORIZATION', 'x'], undefined, {
      dropAuthorization: true,
      add: [],
    });
    expect(out).toEqual([]);
  });
});

describe('responseHead', () => {
  it('keeps repeated fields, drops hop-by-hop ones and adds defaults only where missing', () => {
    const out = responseHead(
      {
        'set-cookie': ['a=1', 'b=2'],
        connection: 'keep-alive, x-internal',
        'x-internal': 'secret',
        'keep-alive': 'timeout=5',
        'transfer-encoding': 'chunked',
        'content-type': 'application/json',
        'x-frame-options': 'SAMEORIGIN',
        'x-request-id': 'from-backend',
      },
      [['x-request-id', 'ours']],
      [],
      [
        ['X-Frame-Options', 'DENY'],
        ['X-Content-Type-Options', 'nosniff'],
      ],
    );
    expect(out).toEqual([
      'x-request-id',
      'ours',
      'set-cookie',
      'a=1',
      'set-cookie',
      'b=2',
      'content-type',
      'application/json',
      'x-frame-options',
      'SAMEORIGIN',
      'X-Content-Type-Options',
      'nosniff',
    ]);
  });

  it('overrides replace the backend value', () => {
    const out = responseHead(
      { 'cache-control': 'no-cache' },
      [],
      [['cache-control', 'no-cache, no-transform']],
      [],
    );
    expect(out).toEqual(['cache-control', 'no-cache, no-transform']);
  });
});
