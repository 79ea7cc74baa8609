import { describe, expect, it } from 'vitest';
import { safeReturnTo } from '../../src/auth/browser/return-to.js';

const PUBLIC = new URL('https://mcp.example.com');

describe('safeReturnTo', () => {
  // [rd, where the login may land]
  const cases: Array<[string | null | undefined, string]> = [
    // Same-origin paths pass, query and fragment included.
    ['/', '/'],
    ['/some/page', '/some/page'],
    ['/ok?x=1#frag', '/ok?x=1#frag'],
    ['/a/b/../c', '/a/c'],
    ['/search?q=a%20b&r=%2F%2Fevil.example', '/search?q=a%20b&r=%2F%2Fevil.example'],
    // An encoded backslash stays an encoded character of the path, on this origin.
    ['/%5Cevil.example', '/%5Cevil.example'],
    // Absolute URLs on the proxy's own origin are reduced to their path.
    ['https://mcp.example.com/own/path?q=1', '/own/path?q=1'],
    ['HTTPS://MCP.EXAMPLE.COM/x', '/x'],
    ['https://mcp.example.com:443/x', '/x'],
    ['https://mcp.example.com', '/'],
    // Non-ASCII is percent-encoded, never sent raw in a Location header.
    ['/ok#\u00e9', '/ok#%C3%A9'],
    ['/caf\u00e9', '/caf%C3%A9'],
    // Nothing given.
    [null, '/'],
    [undefined, '/'],
    ['', '/'],
    // Other origins.
    ['https://evil.example', '/'],
    ['https://evil.example/mcp', '/'],
    ['http://mcp.example.com/x', '/'],
    ['https://mcp.example.com:8443/x', '/'],
    ['https://mcp.example.com.evil.example/x', '/'],
    ['https://mcp.example.com@evil.example/x', '/'],
    ['https://evil.example#@mcp.example.com', '/'],
    ['https:evil.example', '/'],
    ['https:/evil.example', '/'],
    // Scheme-relative and backslash tricks browsers read as another host.
    ['//evil.example', '/'],
    ['///evil.example', '/'],
    ['/\\evil.example', '/'],
    ['\\\\evil.example', '/'],
    ['\\/evil.example', '/'],
    // Paths that normalise to a scheme-relative `//host` after dot segments are removed.
    ['/.//evil.example', '/'],
    ['/%2e//evil.example', '/'],
    ['/%2E%2E//evil.example', '/'],
    ['/a/..//evil.example', '/'],
    ['/./%2e/..//evil.example/x', '/'],
    ['https://mcp.example.com//evil.example', '/'],
    ['https://mcp.example.com/.//evil.example', '/'],
    // Other schemes.
    ['javascript:alert(1)', '/'],
    ['JaVaScRiPt:alert(1)', '/'],
    ['data:text/html,<script>alert(1)</script>', '/'],
    ['vbscript:msgbox(1)', '/'],
    // Relative paths without a leading slash are not accepted.
    ['evil.example', '/'],
    ['some/page', '/'],
    // Control characters (header splitting, tab/newline stripping by URL parsers).
    ['/ok\r\nSet-Cookie: x=1', '/'],
    ['/\t/evil.example', '/'],
    ['/ok\u0000', '/'],
    ['/ok\u007f', '/'],
    // Too long.
    [`/${'a'.repeat(2048)}`, '/'],
  ];

  it.each(cases)('safeReturnTo(%j) -> %j', (rd, expected) => {
    expect(safeReturnTo(rd, PUBLIC)).toBe(expected);
  });

  it('never returns anything a browser would resolve off the proxy origin', () => {
    for (const [rd] of cases) {
      const out = safeReturnTo(rd, PUBLIC);
      expect(out.startsWith('/'), String(rd)).toBe(true);
      expect(out.startsWith('//'), String(rd)).toBe(false);
      expect(out.includes('\\'), String(rd)).toBe(false);
      expect(new URL(out, PUBLIC).origin, String(rd)).toBe(PUBLIC.origin);
    }
  });

  it('works for a plain-http loopback public URL with a port', () => {
    const local = new URL('http://127.0.0.1:8080');
    expect(safeReturnTo('http://127.0.0.1:8080/x?y=1', local)).toBe('/x?y=1');
    expect(safeReturnTo('http://127.0.0.1:8080@evil.example/', local)).toBe('/');
    expect(safeReturnTo('http://127.0.0.1:8081/x', local)).toBe('/');
    expect(safeReturnTo('http://localhost:8080/x', local)).toBe('/');
  });
});
