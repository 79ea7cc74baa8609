/**
 * A browser-less login driver: follows redirects with a cookie jar, submits the dev IdP's login
 * form (src/demo/dev-idp.ts) when it lands on it, and its sign-out confirmation form, and keeps
 * following redirects across origins until told to stop.
 */

interface StoredCookie {
  name: string;
  value: string;
  path: string;
  /** Epoch ms; undefined for a session cookie. */
  expiresAt: number | undefined;
}

/**
 * A tiny cookie jar, keyed by origin host:port (stricter than browsers, which share cookies across
 * ports; on loopback test servers that is what we want). Honours Path, Max-Age and Expires
 * (including deletion); Domain, Secure and SameSite are ignored (host-only cookies on http loopback).
 */
export class CookieJar {
  readonly #hosts = new Map<string, Map<string, StoredCookie>>();

  /** The `Cookie` header value for a request to `url`; '' when no cookie applies. */
  get(url: string | URL): string {
    return this.list(url)
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
  }

  /** The cookies that would be sent to `url`, longest path first. */
  list(url: string | URL): Array<{ name: string; value: string }> {
    const u = new URL(url);
    const cookies = this.#hosts.get(u.host);
    if (!cookies) return [];
    const now = Date.now();
    const out: StoredCookie[] = [];
    for (const [key, c] of cookies) {
      if (c.expiresAt !== undefined && c.expiresAt <= now) {
        cookies.delete(key);
        continue;
      }
      if (pathMatches(u.pathname, c.path)) out.push(c);
    }
    return out.sort((a, b) => b.path.length - a.path.length).map(({ name, value }) => ({ name, value }));
  }

  /** Stores (or deletes) cookies from a response to `url`'s `Set-Cookie` headers. */
  setFrom(url: string | URL, setCookieHeaders: string | readonly string[]): void {
    const u = new URL(url);
    const headers = typeof setCookieHeaders === 'string' ? [setCookieHeaders] : setCookieHeaders;
    for (const header of headers) {
      const parsed = parseSetCookie(header, u.pathname);
      if (!parsed) continue;
      let cookies = this.#hosts.get(u.host);
      if (!cookies) {
        cookies = new Map();
        this.#hosts.set(u.host, cookies);
      }
      const key = `${parsed.name}\u0000${parsed.path}`;
      if (parsed.expiresAt !== undefined && parsed.expiresAt <= Date.now()) cookies.delete(key);
      else cookies.set(key, parsed);
    }
  }

  clear(): void {
    this.#hosts.clear();
  }
}

function parseSetCookie(header: string, requestPath: string): StoredCookie | undefined {
  const [pair = '', ...attributes] = header.split(';');
  const eq = pair.indexOf('=');
  if (eq <= 0) return undefined;
  const name = pair.slice(0, eq).trim();
  const value = pair.slice(eq + 1).trim();
  let path: string | undefined;
  let maxAge: number | undefined;
  let expires: number | undefined;
  for (const attribute of attributes) {
    const i = attribute.indexOf('=');
    const key = (i < 0 ? attribute : attribute.slice(0, i)).trim().toLowerCase();
    const val = i < 0 ? '' : attribute.slice(i + 1).trim();
    if (key === 'path' && val.startsWith('/')) path = val;
    else if (key === 'max-age' && /^-?\d+$/.test(val)) maxAge = Number(val);
    else if (key === 'expires') {
      const t = Date.parse(val);
      if (!Number.isNaN(t)) expires = t;
    }
  }
  // Max-Age wins over Expires (RFC 6265 5.3 step 3).
  const expiresAt = maxAge !== undefined ? Date.now() + maxAge * 1000 : expires;
  return { name, value, path: path ?? defaultPath(requestPath), expiresAt };
}

function defaultPath(requestPath: string): string {
  const i = requestPath.lastIndexOf('/');
  return i <= 0 ? '/' : requestPath.slice(0, i);
}

function pathMatches(requestPath: string, cookiePath: string): boolean {
  if (requestPath === cookiePath) return true;
  if (!requestPath.startsWith(cookiePath)) return false;
  return cookiePath.endsWith('/') || requestPath[cookiePath.length] === '/';
}

export interface HtmlForm {
  id: string | undefined;
  method: string;
  /** Absolute URL the form submits to. */
  action: string;
  /** Named inputs with their current values (submit buttons excluded). */
  fields: Record<string, string>;
}

/** The forms of an HTML page, found well enough for the small pages our servers render. */
export function parseForms(html: string, pageUrl: string | URL): HtmlForm[] {
  const forms: HtmlForm[] = [];
  for (const m of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form\s*>/gi)) {
    const attrs = parseAttributes(m[1] ?? '');
    const fields: Record<string, string> = {};
    for (const input of (m[2] ?? '').matchAll(/<input\b([^>]*)>/gi)) {
      const a = parseAttributes(input[1] ?? '');
      const type = (a.type ?? 'text').toLowerCase();
      if (!a.name || type === 'submit' || type === 'button' || type === 'image' || type === 'reset') continue;
      if ((type === 'checkbox' || type === 'radio') && !('checked' in a)) continue;
      fields[a.name] = a.value ?? (type === 'checkbox' || type === 'radio' ? 'on' : '');
    }
    forms.push({
      id: attrs.id,
      method: (attrs.method ?? 'get').toLowerCase(),
      action: new URL(attrs.action || String(pageUrl), pageUrl).href,
      fields,
    });
  }
  return forms;
}

function parseAttributes(source: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of source.matchAll(/([^\s=/>"']+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?/g)) {
    const name = m[1]!.toLowerCase();
    if (!(name in out)) out[name] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return out;
}

function decodeEntities(value: string): string {
  return value.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos|#39);/gi, (entity, code: string) => {
    const c = code.toLowerCase();
    if (c.startsWith('#x')) return String.fromCodePoint(Number.parseInt(c.slice(2), 16));
    if (c.startsWith('#')) return String.fromCodePoint(Number.parseInt(c.slice(1), 10));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[c] ?? entity;
  });
}

export interface FormSubmission {
  action: string;
  method?: 'GET' | 'POST';
  fields: Record<string, string>;
}

export interface LoginOptions {
  /** Checked on every redirect target; when true, the driver returns without requesting it. */
  stopAt?: (url: URL) => boolean;
  /** Reuse a jar (for SSO, logout, or a second login); a fresh one otherwise. */
  jar?: CookieJar;
  /**
   * Called on every non-redirect page the driver does not handle itself (e.g. a consent form);
   * return a submission to continue, or undefined to finish there.
   */
  onPage?: (page: {
    url: URL;
    status: number;
    body: string;
    forms: HtmlForm[];
  }) => FormSubmission | undefined;
  /** Requests before giving up with an error. Default 30. */
  maxSteps?: number;
}

/** The proxy's consent form on a page (its action is the proxy's /authorize), if there is one. */
export function consentForm(forms: HtmlForm[]): HtmlForm | undefined {
  return forms.find((f) => new URL(f.action).pathname === '/authorize');
}

/** An `onPage` that approves the proxy's consent page, as the user would; other pages end the walk. */
export function approveConsent({ forms }: { forms: HtmlForm[] }): FormSubmission | undefined {
  const consent = consentForm(forms);
  return consent ? { action: consent.action, fields: { ...consent.fields, decision: 'approve' } } : undefined;
}

export interface LoginResult {
  /** The stop URL (not requested) or the URL of the final non-redirect response. */
  finalUrl: string;
  /** Status of the last response received (the redirect pointing at `finalUrl` when stopped). */
  status: number;
  headers: Headers;
  body: string;
  jar: CookieJar;
  /** Every URL requested, in order ("POST " prefixed for form submissions and 307/308 replays). */
  visited: string[];
}

/**
 * Drives a browser-style login from `startUrl`: follows redirects (across origins, cookies per
 * host:port), submits the dev IdP's login form once with `user`'s credentials, confirms a dev IdP
 * sign-out page, and continues until `stopAt(url)` or a response that is not a redirect.
 * A rejected password ends on the login page again (status 401).
 */
export async function loginThroughBrowserless(
  startUrl: string,
  user: { username: string; password: string },
  options: LoginOptions = {},
): Promise<LoginResult> {
  const jar = options.jar ?? new CookieJar();
  const visited: string[] = [];
  const maxSteps = options.maxSteps ?? 30;
  let loginSubmitted = false;
  let logoutConfirmed = false;
  let next: { url: URL; method: string; body?: URLSearchParams; origin?: string } = {
    url: new URL(startUrl),
    method: 'GET',
  };

  for (let step = 0; step < maxSteps; step++) {
    const { url, method, body } = next;
    const headers: Record<string, string> = {
      accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
      'user-agent': 'headless-login (mcp-oidc-proxy tests)',
    };
    const cookie = jar.get(url);
    if (cookie) headers.cookie = cookie;
    if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
    if (next.origin) headers.origin = next.origin;
    const res = await fetch(url, { method, headers, body: body?.toString(), redirect: 'manual' });
    visited.push(method === 'GET' ? url.href : `${method} ${url.href}`);
    jar.setFrom(url, res.headers.getSetCookie());
    const text = await res.text();
    const location = res.headers.get('location');
    const result = (finalUrl: string): LoginResult => ({
      finalUrl,
      status: res.status,
      headers: res.headers,
      body: text,
      jar,
      visited,
    });

    if (res.status >= 300 && res.status < 400 && location !== null) {
      const target = new URL(location, url);
      if (options.stopAt?.(target)) return result(target.href);
      const replay = res.status === 307 || res.status === 308;
      // A replayed form post keeps its Origin only while the redirect stays on one origin.
      const origin = next.origin && target.origin !== url.origin ? 'null' : next.origin;
      next = replay
        ? { url: target, method, ...(body ? { body } : {}), ...(origin ? { origin } : {}) }
        : { url: target, method: 'GET' };
      continue;
    }

    const forms = parseForms(text, url);
    const origin = url.origin;
    const login = forms.find((f) => 'username' in f.fields && 'password' in f.fields);
    if (login && !loginSubmitted && res.status === 200) {
      loginSubmitted = true;
      const fields = new URLSearchParams({
        ...login.fields,
        username: user.username,
        password: user.password,
      });
      next = { url: new URL(login.action), method: 'POST', body: fields, origin };
      continue;
    }
    const logout = forms.find((f) => f.id === 'op.logoutForm');
    if (logout && !logoutConfirmed && res.status === 200) {
      logoutConfirmed = true;
      const fields = new URLSearchParams({ ...logout.fields, logout: 'yes' });
      next = { url: new URL(logout.action), method: 'POST', body: fields, origin };
      continue;
    }
    const submission = options.onPage?.({ url, status: res.status, body: text, forms });
    if (submission) {
      const fields = new URLSearchParams(submission.fields);
      const target = new URL(submission.action, url);
      if ((submission.method ?? 'POST') === 'GET') {
        target.search = fields.toString();
        next = { url: target, method: 'GET' };
      } else {
        next = { url: target, method: 'POST', body: fields, origin };
      }
      continue;
    }
    return result(url.href);
  }
  throw new Error(`headless login: no end after ${maxSteps} requests: ${visited.join(' -> ')}`);
}

/**
 * Signs `user` in through the proxy's own browser login (`/login`), stopping once the proxy sends
 * the browser home; the jar then holds the proxy's session cookie.
 */
export async function signInThroughProxy(
  proxyUrl: string,
  user: { username: string; password: string },
  jar = new CookieJar(),
): Promise<CookieJar> {
  await loginThroughBrowserless(`${proxyUrl}/login?rd=%2F`, user, {
    jar,
    stopAt: (target) => target.href === `${proxyUrl}/`,
  });
  if (!jar.list(proxyUrl).some((c) => /mcp_oidc_proxy$/.test(c.name))) {
    throw new Error(`signing in ${user.username} at ${proxyUrl} set no session cookie`);
  }
  return jar;
}
