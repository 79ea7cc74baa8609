import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AuditLog } from '../auth/audit.js';
import type { AuthContext } from '../auth/authenticator.js';
import type { BrowserAuthResult } from '../auth/browser/browser-login.js';
import { addressBudget, type RateLimiter } from '../limits/rate-limit.js';

/** Who called the admin API: the holder of ADMIN_TOKEN, or a signed-in member of ADMIN_GROUPS. */
export type AdminCaller =
  | { kind: 'token' }
  | { kind: 'session'; sub: string; email?: string; name?: string; groups: readonly string[] };

/** A refusal, written by the caller as an OAuth-style JSON error. */
export interface AdminRefusal {
  status: 400 | 401 | 403 | 429 | 503;
  error: string;
  description: string;
  headers: Array<[string, string]>;
}

export type AdminAuthResult = { ok: true; caller: AdminCaller } | { ok: false; refusal: AdminRefusal };

/** Failed token attempts allowed per client IP per minute; past it every admin request of that IP gets 429. */
export const ADMIN_FAILED_AUTH_PER_MINUTE = 10;

/** Most client IPs remembered as blocked at once (an attacker with many addresses cannot grow it). */
const MAX_BLOCKED_ADDRESSES = 10_000;

export interface AdminAuthOptions {
  /** ADMIN_TOKEN. */
  token: string | undefined;
  /** ADMIN_GROUPS; empty = browser sessions never grant admin. */
  groups: readonly string[];
  /** The browser session check (AUTH_MODE=oidc); absent in bypass mode. */
  browser?: { authenticateBrowser(req: IncomingMessage, ctx: AuthContext): Promise<BrowserAuthResult> };
  /** Counts failed token attempts per client IP (ADMIN_FAILED_AUTH_PER_MINUTE). */
  failures: RateLimiter | undefined;
  audit: AuditLog;
  /** PUBLIC_URL's origin: cookie-authenticated changes must come from a page of it. */
  publicOrigin: string;
  /** Epoch ms; tests move it. */
  now?: () => number;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

const CHALLENGE = 'Bearer realm="admin"';

/**
 * Authenticates admin API callers.
 *
 * - `Authorization: Bearer <ADMIN_TOKEN>`: compared as SHA-256 digests with timingSafeEqual, so
 *   neither the length nor a matching prefix shows in the timing. Any other bearer value (a wrong
 *   or short token, one of the proxy's MCP access tokens) is a failure: 401, audited, and counted
 *   per client IP; past ADMIN_FAILED_AUTH_PER_MINUTE the address gets 429 for the rest of the
 *   window, whatever it presents, so the token cannot be guessed online.
 * - Otherwise the browser session (cookie), when its user is in ADMIN_GROUPS: 403 for a signed-in
 *   user who is not. Changes (anything but GET/HEAD) made with a cookie must come from the proxy's
 *   own origin (`Origin`, or `Sec-Fetch-Site: same-origin`), against cross-site request forgery.
 */
export class AdminAuthenticator {
  private readonly token: Buffer | undefined;
  private readonly groups: ReadonlySet<string>;
  /** Client IP -> epoch ms until which it is refused; kept per instance, counted (maybe) in Redis. */
  private readonly blocked = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly options: AdminAuthOptions) {
    this.token = options.token === undefined ? undefined : digest(options.token);
    this.groups = new Set(options.groups);
    this.now = options.now ?? Date.now;
  }

  async authenticate(req: IncomingMessage, ctx: AuthContext): Promise<AdminAuthResult> {
    const blockedFor = this.blockedFor(addressBudget(ctx.clientIp));
    if (blockedFor > 0) return { ok: false, refusal: tooMany(blockedFor) };
    const authorization = req.headers.authorization;
    if (authorization !== undefined && authorizationFields(req) > 1) {
      // Node keeps only the first one; a proxy in front may act on another. Refused, not guessed
      // at (nothing presented is compared, so this is no way around the failure count either).
      return {
        ok: false,
        refusal: {
          status: 400,
          error: 'invalid_request',
          description: 'Send one Authorization header, not several.',
          headers: [],
        },
      };
    }
    if (authorization !== undefined) return this.byToken(authorization, ctx);
    const caller = await this.bySession(req, ctx);
    if (!caller.ok) return caller;
    if (!this.sameOrigin(req)) {
      return {
        ok: false,
        refusal: {
          status: 403,
          error: 'forbidden',
          description:
            'cross-site request refused: a change made with the session cookie must come from the admin page (same Origin)',
          headers: [],
        },
      };
    }
    return caller;
  }

  private async byToken(authorization: string, ctx: AuthContext): Promise<AdminAuthResult> {
    const bearer = /^bearer +/i.exec(authorization);
    const presented = bearer ? authorization.slice(bearer[0].length).trim() : undefined;
    // The digest comparison runs whatever was presented, so every path costs the same.
    const matches =
      timingSafeEqual(digest(presented ?? ''), this.token ?? digest('')) &&
      this.token !== undefined &&
      presented !== undefined &&
      presented !== '';
    if (matches) return { ok: true, caller: { kind: 'token' } };
    this.options.audit.record('admin_auth_failure', {
      reason: bearer ? 'wrong_token' : 'not_a_bearer_token',
      ip: ctx.clientIp,
    });
    const budget = addressBudget(ctx.clientIp);
    const verdict = await this.options.failures?.consume(budget);
    if (verdict && !verdict.allowed) {
      this.block(budget, verdict.retryAfterSeconds);
      return { ok: false, refusal: tooMany(verdict.retryAfterSeconds) };
    }
    return {
      ok: false,
      refusal: {
        status: 401,
        error: 'invalid_token',
        description: bearer
          ? 'The admin token is not valid.'
          : 'Send the admin token as Authorization: Bearer <ADMIN_TOKEN>.',
        headers: [['www-authenticate', `${CHALLENGE}, error="invalid_token"`]],
      },
    };
  }

  private async bySession(req: IncomingMessage, ctx: AuthContext): Promise<AdminAuthResult> {
    const unauthorized: AdminAuthResult = {
      ok: false,
      refusal: {
        status: 401,
        error: 'unauthorized',
        description:
          this.groups.size > 0 && this.options.browser
            ? 'Sign in as a member of ADMIN_GROUPS, or send Authorization: Bearer <ADMIN_TOKEN>.'
            : 'Send Authorization: Bearer <ADMIN_TOKEN>.',
        headers: [['www-authenticate', CHALLENGE]],
      },
    };
    const { browser } = this.options;
    if (!browser || this.groups.size === 0) return unauthorized;
    const result = await browser.authenticateBrowser(req, ctx);
    if (result.kind === 'challenge') {
      const { status } = result.challenge;
      if (status === 503) {
        return {
          ok: false,
          refusal: {
            status: 503,
            error: 'temporarily_unavailable',
            description: 'Sessions cannot be checked right now (the session store is unavailable).',
            headers: [['retry-after', '5']],
          },
        };
      }
      // 403: the allow-lists refuse this user (already audited as access_denied).
      if (status === 403) return { ok: false, refusal: notAdmin('you are not allowed to use this server') };
      return unauthorized;
    }
    const { identity, session } = result;
    const groups = identity.groups ?? [];
    if (!groups.some((group) => this.groups.has(group))) {
      this.options.audit.record('admin_auth_failure', {
        reason: 'not_in_admin_groups',
        sub: identity.user,
        email: identity.email,
        ip: ctx.clientIp,
      });
      return { ok: false, refusal: notAdmin(`${identity.email ?? identity.user} is not in ADMIN_GROUPS`) };
    }
    return {
      ok: true,
      caller: {
        kind: 'session',
        sub: identity.user,
        email: identity.email,
        name: session.identity.name,
        groups,
      },
    };
  }

  /** GET and HEAD change nothing; anything else needs proof it comes from a page of this origin. */
  private sameOrigin(req: IncomingMessage): boolean {
    if (req.method === 'GET' || req.method === 'HEAD') return true;
    const origin = req.headers.origin;
    if (origin === this.options.publicOrigin) return true;
    // Browsers send `Origin: null` under some referrer policies; Sec-Fetch-Site cannot be forged by a page.
    return (origin === undefined || origin === 'null') && req.headers['sec-fetch-site'] === 'same-origin';
  }

  private blockedFor(ip: string): number {
    const until = this.blocked.get(ip);
    if (until === undefined) return 0;
    const left = until - this.now();
    if (left > 0) return Math.ceil(left / 1000);
    this.blocked.delete(ip);
    return 0;
  }

  private block(ip: string, seconds: number): void {
    const now = this.now();
    if (this.blocked.size >= MAX_BLOCKED_ADDRESSES) {
      for (const [address, until] of this.blocked) if (until <= now) this.blocked.delete(address);
      // Still full: forget the oldest entry (Maps iterate in insertion order).
      if (this.blocked.size >= MAX_BLOCKED_ADDRESSES) {
        this.blocked.delete(this.blocked.keys().next().value as string);
      }
    }
    this.blocked.set(ip, now + seconds * 1000);
  }
}

/** How many Authorization fields the request has (RFC 9110 §11.6.2 allows one). */
function authorizationFields(req: IncomingMessage): number {
  let count = 0;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]?.toLowerCase() === 'authorization') count++;
  return count;
}

function notAdmin(why: string): AdminRefusal {
  return {
    status: 403,
    error: 'access_denied',
    description: `Signed in, but not an administrator: ${why}.`,
    headers: [],
  };
}

function tooMany(retryAfterSeconds: number): AdminRefusal {
  const seconds = Math.max(1, Math.ceil(retryAfterSeconds));
  return {
    status: 429,
    error: 'rate_limited',
    description: `Too many failed admin authentication attempts; retry after ${seconds} s.`,
    headers: [['retry-after', String(seconds)]],
  };
}
