import { escapeHtml } from '../browser/pages.js';
import type { OAuthClient } from './clients.js';
import { FACADE_PATHS, MCP_SCOPE } from './metadata.js';

/**
 * The consent page: which application asks, where the browser will be sent, what it may do.
 * Plain HTML with an inline style, no script; its headers (consentPageHeaders) forbid framing
 * and limit where its form may lead.
 */

export interface ConsentPageInput {
  client: OAuthClient;
  redirectUri: string;
  scopes: readonly string[];
  resource: string;
  /** Who is signed in, as the user knows themselves. */
  account: string;
  requestId: string;
}

/**
 * How the consent page names the client. A metadata-document client is named by the host of its
 * client id URL (the one thing about it nobody else can claim); other clients by the name they
 * registered, which is theirs to choose, so the page also shows where the browser goes next.
 */
export function clientDisplayName(client: OAuthClient): string {
  if (client.source === 'metadata-document') return new URL(client.client_id).host;
  return client.client_name ?? client.client_id;
}

/** `claude.ai`, `127.0.0.1:33418`, or `the cursor: app` for a private-use scheme. */
export function redirectDisplayHost(redirectUri: string): string {
  const url = new URL(redirectUri);
  if (url.protocol === 'https:' || url.protocol === 'http:') return url.host;
  return `the ${url.protocol} app`;
}

/**
 * The CSP source that lets the consent form's redirect through: Chrome applies `form-action` to
 * every redirect after a form submission, so the redirect target's origin (or, for a private-use
 * scheme, the scheme) must be allowed besides 'self'. CSP has no host form for an IPv6 literal,
 * so `http://[::1]:port` is allowed by its scheme.
 */
export function formActionSource(redirectUri: string): string {
  const url = new URL(redirectUri);
  if ((url.protocol === 'https:' || url.protocol === 'http:') && !url.hostname.startsWith('[')) {
    return url.origin;
  }
  return url.protocol;
}

/**
 * Headers of the consent page: no framing (clickjacking), no caching, the form's targets only.
 * Referrer-Policy is `same-origin`, not the proxy's default `no-referrer`: under `no-referrer` a
 * browser sends `Origin: null` with the form's POST (Fetch: serializing a request origin), which
 * the Origin guard and the consent handler rightly refuse. `same-origin` still sends nothing to
 * the client's redirect URI or any other origin.
 */
export function consentPageHeaders(redirectUri: string): Array<[string, string]> {
  const csp = [
    "default-src 'none'",
    "style-src 'unsafe-inline'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
    `form-action 'self' ${formActionSource(redirectUri)}`,
  ].join('; ');
  return [
    ['content-security-policy', csp],
    ['x-frame-options', 'DENY'],
    ['cache-control', 'no-store'],
    ['referrer-policy', 'same-origin'],
  ];
}

function describeScope(scope: string, resource: string): string {
  if (scope === MCP_SCOPE) return `Use the MCP server at ${resource} as you`;
  return scope;
}

export function consentPage(input: ConsentPageInput): string {
  const { client } = input;
  const name = escapeHtml(clientDisplayName(client));
  const destination = escapeHtml(redirectDisplayHost(input.redirectUri));
  const origin =
    client.source === 'metadata-document'
      ? `<p class="note">Identified by ${escapeHtml(client.client_id)}.</p>`
      : `<p class="note">The name “${name}” was chosen by the application itself. Only approve if you just started connecting it, and you recognise ${destination}.</p>`;
  const scopes = input.scopes.map((s) => `<li>${escapeHtml(describeScope(s, input.resource))}</li>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorize ${name}</title>
<style>body{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p,li{line-height:1.5}.note{color:#555;font-size:.9rem}form{margin-top:1.5rem;display:flex;gap:1rem}button{font-size:1rem;padding:.5rem 1.2rem}</style>
</head><body>
<h1>Allow <strong>${name}</strong> to access this server?</h1>
<p>Signed in as ${escapeHtml(input.account)}.</p>
<p>${name} will be able to:</p>
<ul>${scopes}</ul>
<p>After you decide, your browser returns to <strong>${destination}</strong>.</p>
${origin}
<form method="post" action="${FACADE_PATHS.authorize}">
<input type="hidden" name="request_id" value="${escapeHtml(input.requestId)}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
</body></html>
`;
}
