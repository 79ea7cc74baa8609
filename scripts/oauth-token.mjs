// The OAuth client side of an MCP client, headless, for the scripts that need a real access
// token from a running proxy (the conformance runner, the benchmark): dynamic client
// registration (RFC 7591), PKCE authorization (RFC 7636) with the login form of the dev IdP and
// the proxy's consent page filled in, and the code exchange at /token. Plain fetch, no browser.
import { createHash, randomBytes } from 'node:crypto';

/** The dev IdP's default user (src/demo/dev-idp.ts). */
export const DEV_USER = { username: 'alice', password: 'alice-password' };

/** Minimal cookie jar per host:port (enough for the dev IdP and the proxy on loopback). */
class Jar {
  #hosts = new Map();
  get(url) {
    const c = this.#hosts.get(new URL(url).host);
    return c ? [...c].map(([k, v]) => `${k}=${v}`).join('; ') : '';
  }
  set(url, headers) {
    const host = new URL(url).host;
    const c = this.#hosts.get(host) ?? new Map();
    this.#hosts.set(host, c);
    for (const h of headers) {
      const [pair, ...attrs] = h.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const gone = attrs.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
      if (gone) c.delete(name);
      else c.set(name, pair.slice(eq + 1).trim());
    }
  }
}

function forms(html, pageUrl) {
  const attr = (src, name) => {
    const m = src.match(new RegExp(`\\b${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i'));
    return m
      ? (m[1] ?? m[2] ?? m[3])
          .replace(/&amp;/g, '&')
          .replace(/&quot;/g, '"')
          .replace(/&#39;/g, "'")
      : undefined;
  };
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi)].map((m) => {
    const fields = {};
    for (const input of m[2].matchAll(/<input\b([^>]*)>/gi)) {
      const name = attr(input[1], 'name');
      const type = (attr(input[1], 'type') ?? 'text').toLowerCase();
      if (name && !['submit', 'button', 'image', 'reset'].includes(type))
        fields[name] = attr(input[1], 'value') ?? '';
    }
    return { action: new URL(attr(m[1], 'action') || pageUrl, pageUrl).href, fields };
  });
}

/**
 * An access token for `${proxyUrl}/mcp` through the proxy's own flow: DCR at the proxy, PKCE
 * authorization (login at the IdP as `user`, approve the proxy's consent page), code exchange.
 * `redirectUri` is only a name here: nothing listens there, the code is read from the redirect.
 */
export async function obtainAccessToken(proxyUrl, options) {
  return (await obtainTokens(proxyUrl, options)).access_token;
}

/**
 * The same flow, with all it yields: the /token answer (access_token, refresh_token, expires_in, ...),
 * the registered `client_id`, the `resource`, and `cookie`: the Cookie header of the browser session
 * the login left at the proxy.
 */
export async function obtainTokens(
  proxyUrl,
  { redirectUri, clientName = 'headless MCP client', user = DEV_USER },
) {
  const resource = `${proxyUrl}/mcp`;
  const prm = await (await fetch(`${proxyUrl}/.well-known/oauth-protected-resource/mcp`)).json();
  const reg = await fetch(`${proxyUrl}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      client_name: clientName,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    }),
  });
  if (reg.status !== 201 && reg.status !== 200)
    throw new Error(`registration: HTTP ${reg.status} ${await reg.text()}`);
  const { client_id } = await reg.json();
  const verifier = randomBytes(32).toString('base64url');
  const state = randomBytes(16).toString('base64url');
  const authorize = new URL(`${proxyUrl}/authorize`);
  authorize.search = new URLSearchParams({
    response_type: 'code',
    client_id,
    redirect_uri: redirectUri,
    code_challenge: createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256',
    state,
    resource,
    ...(prm.scopes_supported?.length ? { scope: prm.scopes_supported.join(' ') } : {}),
  }).toString();

  const jar = new Jar();
  let next = { url: authorize.href, method: 'GET' };
  let loggedIn = false;
  for (let step = 0; step < 30; step++) {
    const headers = { accept: 'text/html' };
    const cookie = jar.get(next.url);
    if (cookie) headers.cookie = cookie;
    if (next.body) {
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers.origin = next.origin;
    }
    const res = await fetch(next.url, { method: next.method, headers, body: next.body, redirect: 'manual' });
    jar.set(next.url, res.headers.getSetCookie());
    const body = await res.text();
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      const target = new URL(location, next.url);
      if (target.href.startsWith(redirectUri)) {
        if (target.searchParams.get('state') !== state) throw new Error('authorization: state mismatch');
        const code = target.searchParams.get('code');
        if (!code) throw new Error(`authorization refused: ${target.search}`);
        const tok = await fetch(`${proxyUrl}/token`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            grant_type: 'authorization_code',
            code,
            redirect_uri: redirectUri,
            client_id,
            code_verifier: verifier,
            resource,
          }),
        });
        const json = await tok.json();
        if (!tok.ok || !json.access_token)
          throw new Error(`token: HTTP ${tok.status} ${JSON.stringify(json)}`);
        return { ...json, client_id, resource, cookie: jar.get(proxyUrl) };
      }
      next =
        res.status === 307 || res.status === 308
          ? { ...next, url: target.href }
          : { url: target.href, method: 'GET' };
      continue;
    }
    const page = forms(body, next.url);
    const origin = new URL(next.url).origin;
    const login = page.find((f) => 'username' in f.fields && 'password' in f.fields);
    const consent = page.find((f) => new URL(f.action).pathname === '/authorize');
    if (login && !loggedIn && res.status === 200) {
      loggedIn = true;
      const fields = new URLSearchParams({ ...login.fields, ...user }).toString();
      next = { url: login.action, method: 'POST', body: fields, origin };
    } else if (consent) {
      const fields = new URLSearchParams({ ...consent.fields, decision: 'approve' }).toString();
      next = { url: consent.action, method: 'POST', body: fields, origin };
    } else {
      throw new Error(`authorization stuck at ${next.url} (HTTP ${res.status}): ${body.slice(0, 300)}`);
    }
  }
  throw new Error('authorization: too many steps');
}
