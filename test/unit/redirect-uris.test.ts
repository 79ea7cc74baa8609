import { describe, expect, it } from 'vitest';
import { redirectUriMatches, validateRedirectUri } from '../../src/auth/facade/redirect-uris.js';

describe('validateRedirectUri', () => {
  // [uri, kind] of redirect URIs real MCP clients register.
  const accepted: Array<[string, 'https' | 'loopback' | 'private-use']> = [
    ['https://claude.ai/api/mcp/auth_callback', 'https'],
    ['https://claude.com/api/mcp/auth_callback', 'https'],
    ['https://chatgpt.com/connector_platform_oauth_redirect', 'https'],
    ['cursor://anysphere.cursor-retrieval/oauth/user-2f1c9a7e/callback', 'private-use'],
    ['cursor://anysphere.cursor-mcp/oauth/callback', 'private-use'],
    ['http://127.0.0.1:33418/', 'loopback'],
    ['http://127.0.0.1:33418', 'loopback'],
    ['https://vscode.dev/redirect', 'https'],
    ['vscode://vscode.github-authentication/did-authenticate', 'private-use'],
    ['http://localhost:5173/oauth/callback', 'loopback'],
    ['http://localhost:6274/oauth/callback', 'loopback'],
    ['http://localhost:6274/oauth/callback/debug', 'loopback'],
    ['http://[::1]:8976/callback', 'loopback'],
    ['http://localhost/callback', 'loopback'],
    ['http://LOCALHOST:1234/cb', 'loopback'],
    ['com.example.app:/oauth2redirect', 'private-use'],
    ['com.example.app://callback', 'private-use'],
    ['https://app.example.com/cb?tenant=a', 'https'],
    ['https://localhost:8443/cb', 'https'],
  ];
  it.each(accepted)('accepts %s', (uri, kind) => {
    expect(validateRedirectUri(uri)).toEqual({ ok: true, kind });
  });

  // [uri, part of the reason]
  const refused: Array<[string, string]> = [
    ['javascript:alert(1)', 'javascript: scheme'],
    ['JavaScript://x/%0aalert(1)', 'javascript: scheme'],
    ['data:text/html,<script>alert(1)</script>', 'data: scheme'],
    ['file:///etc/passwd', 'file: scheme'],
    ['blob:https://claude.ai/0f1e', 'blob: scheme'],
    ['http://evil.example/cb', 'http: with a host other than'],
    ['http://127.0.0.2/cb', 'http: with a host other than'],
    ['http://localhost.evil.example/cb', 'http: with a host other than'],
    ['http://0x7f.0.0.1/cb', 'unusual form'],
    ['http://[0:0:0:0:0:0:0:1]/cb', 'unusual form'],
    ['http://2130706433/cb', 'unusual form'],
    ['https://claude.ai@evil.example/cb', 'userinfo'],
    ['https://user:pw@claude.ai/api/mcp/auth_callback', 'userinfo'],
    ['cursor://me@anysphere.cursor-retrieval/cb', 'userinfo'],
    ['https://claude.ai/api/mcp/auth_callback#frag', 'fragment'],
    ['https://claude.ai/api/mcp/auth_callback#', 'fragment'],
    ['http://localhost:6274/oauth/callback#x', 'fragment'],
    ['https://claude.ai/api mcp', 'whitespace'],
    ['https://claude.ai/cb\n', 'whitespace'],
    ['https://claude.ai\\@evil.example/', 'backslash'],
    ['https://cla\u0443de.ai/cb', 'non-ASCII'],
    ['/api/mcp/auth_callback', 'not an absolute URI'],
    ['claude.ai/api/mcp/auth_callback', 'not an absolute URI'],
    ['', 'empty'],
    ['myapp://callback', 'myapp: scheme'],
    ['ftp://files.example/cb', 'ftp: scheme'],
    ['wss://claude.ai/cb', 'wss: scheme'],
    ['cursor:', 'nothing after its scheme'],
    ['com.example.app://', 'nothing after its scheme'],
    [`https://claude.ai/${'a'.repeat(2000)}`, 'longer than 2000'],
  ];
  it.each(refused)('refuses %s', (uri, reason) => {
    const check = validateRedirectUri(uri);
    expect(check.ok).toBe(false);
    if (!check.ok) expect(check.reason).toContain(reason);
  });
});

describe('redirectUriMatches', () => {
  // [registered, presented, matches]
  const cases: Array<[string, string, boolean]> = [
    // Exact string match for everything that is not loopback.
    ['https://claude.ai/api/mcp/auth_callback', 'https://claude.ai/api/mcp/auth_callback', true],
    ['https://claude.ai/api/mcp/auth_callback', 'https://claude.com/api/mcp/auth_callback', false],
    ['https://claude.ai/api/mcp/auth_callback', 'https://claude.ai/api/mcp/auth_callback/', false],
    ['https://claude.ai/api/mcp/auth_callback', 'https://CLAUDE.ai/api/mcp/auth_callback', false],
    ['https://claude.ai/api/mcp/auth_callback', 'https://claude.ai:443/api/mcp/auth_callback', false],
    ['https://claude.ai/api/mcp/auth_callback', 'https://claude.ai/api/mcp/auth_callback?x=1', false],
    ['https://claude.ai/api/mcp/auth_callback', 'https://claude.ai/api/mcp/./auth_callback', false],
    ['https://app.example.com:8443/cb', 'https://app.example.com:9443/cb', false],
    [
      'cursor://anysphere.cursor-retrieval/oauth/user-1/callback',
      'cursor://anysphere.cursor-retrieval/oauth/user-1/callback',
      true,
    ],
    [
      'cursor://anysphere.cursor-retrieval/oauth/user-1/callback',
      'cursor://anysphere.cursor-retrieval/oauth/user-2/callback',
      false,
    ],
    // Loopback: any port (RFC 8252 §7.3); host, path and query must still be identical.
    ['http://127.0.0.1:33418/', 'http://127.0.0.1:33418/', true],
    ['http://127.0.0.1:33418/', 'http://127.0.0.1:49152/', true],
    ['http://127.0.0.1:33418/', 'http://127.0.0.1/', true],
    ['http://127.0.0.1:33418', 'http://127.0.0.1:5000/', true],
    ['http://localhost:6274/oauth/callback', 'http://localhost:7000/oauth/callback', true],
    ['http://localhost/oauth/callback', 'http://localhost:51234/oauth/callback', true],
    ['http://[::1]:8000/cb', 'http://[::1]:9000/cb', true],
    ['http://localhost:6274/oauth/callback', 'http://localhost:6274/oauth/callback/debug', false],
    ['http://localhost:6274/oauth/callback', 'http://localhost:6274/oauth/Callback', false],
    ['http://localhost:6274/oauth/callback', 'http://localhost:7000/oauth/callback?x=1', false],
    ['http://localhost:6274/oauth/callback', 'http://127.0.0.1:6274/oauth/callback', false],
    ['http://127.0.0.1:6274/cb', 'http://[::1]:6274/cb', false],
    ['http://localhost:6274/oauth/callback', 'https://localhost:6274/oauth/callback', false],
    ['http://localhost:6274/cb', 'http://localhost.evil.example:6274/cb', false],
    ['http://localhost:6274/cb', 'http://localhost:6274@evil.example/cb', false],
    ['http://localhost:6274/cb', 'http://localhost:7000/cb#x', false],
    // An https URI on localhost is exact-match only.
    ['https://localhost:8443/cb', 'https://localhost:9443/cb', false],
    // Nothing matches an invalid URI, not even itself.
    ['javascript:alert(1)', 'javascript:alert(1)', false],
    ['http://evil.example/cb', 'http://evil.example/cb', false],
  ];
  it.each(cases)('registered %s, presented %s -> %s', (registered, presented, expected) => {
    expect(redirectUriMatches(registered, presented)).toBe(expected);
  });
});
