/**
 * Which redirect URIs a client may register, and when a presented one matches a registered one.
 *
 * Allowed kinds (OAuth 2.1 §2.3.1, RFC 8252, the MCP authorization spec):
 * - `https://host/...` (Claude.ai, ChatGPT, vscode.dev);
 * - loopback `http://127.0.0.1`, `http://[::1]`, `http://localhost`, any port (native apps, CLIs,
 *   mcp-remote, the Inspector);
 * - private-use schemes of native apps: a reverse-domain scheme (`com.example.app:/cb`, RFC 8252
 *   §7.1) or one of the known app schemes below (`cursor://...`, `vscode://...`).
 * Never: `http:` to any other host, `javascript:`, `data:`, `file:` or any other scheme, userinfo
 * (`https://claude.ai@evil.example`), a fragment (even an empty one), whitespace, control
 * characters or backslashes (which browsers read as `/`).
 *
 * Matching is exact string comparison, except for loopback URIs, where the port is ignored
 * (RFC 8252 §7.3: a native app registers one port and listens on whichever is free); scheme,
 * host, path and query must still be identical.
 */

export const MAX_REDIRECT_URI_LENGTH = 2000;

/**
 * App schemes that are not reverse-domain names but belong to MCP clients in use. Add one here
 * when a real client needs it; a scheme of a browser feature (javascript, data, blob, ...) never.
 */
export const KNOWN_APP_SCHEMES: readonly string[] = [
  'cursor',
  'vscode',
  'vscode-insiders',
  'vscodium',
  'windsurf',
  'claude',
  'zed',
  'positron',
];

/** Schemes that are never a redirect target, even when they look like an app scheme. */
const FORBIDDEN_SCHEMES = new Set([
  'javascript',
  'vbscript',
  'data',
  'file',
  'blob',
  'about',
  'filesystem',
  'ftp',
  'ws',
  'wss',
  'mailto',
  'tel',
  'sms',
  'intent',
  'chrome',
  'chrome-extension',
  'moz-extension',
  'view-source',
]);

const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/** Whitespace, ASCII control characters, DEL, backslash, and anything outside ASCII. */
const UNSAFE_CHAR = /[^\x21-\x5b\x5d-\x7e]/;

export type RedirectUriKind = 'https' | 'loopback' | 'private-use';

export type RedirectUriCheck = { ok: true; kind: RedirectUriKind } | { ok: false; reason: string };

/** Checks one redirect URI a client wants to register; `reason` is fit for an error_description. */
export function validateRedirectUri(uri: string): RedirectUriCheck {
  if (typeof uri !== 'string' || uri === '') return refuse('is empty');
  if (uri.length > MAX_REDIRECT_URI_LENGTH) {
    return refuse(`is longer than ${MAX_REDIRECT_URI_LENGTH} characters`);
  }
  if (UNSAFE_CHAR.test(uri)) {
    return refuse('contains whitespace, a control character, a backslash or a non-ASCII character');
  }
  if (uri.includes('#')) return refuse('has a fragment (#), which redirect URIs must not have');
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return refuse('is not an absolute URI');
  }
  if (url.username !== '' || url.password !== '') return refuse('has userinfo (user@) before its host');
  const scheme = url.protocol.slice(0, -1);

  if (scheme === 'https') {
    if (url.hostname === '') return refuse('has no host');
    return { ok: true, kind: 'https' };
  }
  if (scheme === 'http') {
    if (LOOPBACK_HOSTS.has(url.hostname)) {
      // The URL parser reads 0x7f.1 or [0:0::1] as loopback too; only the literal forms match by port.
      if (splitLoopback(uri) === undefined) {
        return refuse('writes its loopback host in an unusual form; use 127.0.0.1, [::1] or localhost');
      }
      return { ok: true, kind: 'loopback' };
    }
    return refuse('uses http: with a host other than 127.0.0.1, [::1] or localhost; use https:');
  }
  if (FORBIDDEN_SCHEMES.has(scheme)) return refuse(`uses the ${scheme}: scheme, which is never allowed`);
  if (!scheme.includes('.') && !KNOWN_APP_SCHEMES.includes(scheme)) {
    return refuse(
      `uses the ${scheme}: scheme; allowed are https:, loopback http:, and app schemes in reverse-domain form (com.example.app:/callback) or of known MCP clients (${KNOWN_APP_SCHEMES.join(', ')})`,
    );
  }
  if (uri.length <= scheme.length + 1 || /^[a-z0-9+.-]+:\/*$/i.test(uri))
    return refuse('has nothing after its scheme');
  return { ok: true, kind: 'private-use' };
}

function refuse(reason: string): RedirectUriCheck {
  return { ok: false, reason };
}

/**
 * Whether `presented` (from /authorize or /token) is the `registered` URI. Both must be valid;
 * loopback URIs match on any port, everything else must be the same string.
 */
export function redirectUriMatches(registered: string, presented: string): boolean {
  if (registered === presented) return validateRedirectUri(presented).ok;
  const a = validateRedirectUri(registered);
  const b = validateRedirectUri(presented);
  if (!a.ok || !b.ok || a.kind !== 'loopback' || b.kind !== 'loopback') return false;
  const ra = splitLoopback(registered);
  const rb = splitLoopback(presented);
  return ra !== undefined && rb !== undefined && ra.host === rb.host && ra.rest === rb.rest;
}

/**
 * `http://HOST[:PORT]REST` -> host (lower case) and the raw rest (path and query, `/` when empty),
 * taken from the string itself so the comparison stays exact rather than normalised.
 */
function splitLoopback(uri: string): { host: string; rest: string } | undefined {
  const m = /^http:\/\/(127\.0\.0\.1|\[::1\]|localhost)(?::(\d{1,5}))?([/?].*)?$/i.exec(uri);
  if (!m) return undefined;
  const rest = m[3] ?? '/';
  return { host: m[1]!.toLowerCase(), rest: rest.startsWith('?') ? `/${rest}` : rest };
}
