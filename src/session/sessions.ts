import type { UpstreamIdentity, UpstreamTokens } from '../auth/oidc/provider.js';
import { STORE_KEY_PREFIXES } from '../store/key-prefixes.js';
import { randomId, type SealingKeys } from '../store/sealing-keys.js';
import type { StateStore } from '../store/state-store.js';

/** A browser session as stored (encrypted) in the StateStore. */
export interface SessionRecord {
  v: 1;
  provider: string;
  identity: UpstreamIdentity;
  tokens: UpstreamTokens;
  /** Epoch ms of the login (absolute timeout). */
  createdAt: number;
}

/** A login under way: what `/callback` needs to finish it, keyed by `state`. */
export interface LoginRecord {
  nonce: string;
  codeVerifier: string;
  /** Where to land afterwards: a same-origin path. */
  returnTo: string;
  /** Ties the login to the browser that started it (the login cookie holds the value). */
  binding: string;
  createdAt: number;
}

export interface CookieOptions {
  secure: boolean;
}

export interface SessionManagerOptions {
  idleTimeoutMs: number;
  maxAgeMs: number;
  cookie: CookieOptions;
  /**
   * How often the idle clock is written back to the store: a session used more often than
   * this is written at most once per interval. Default: a minute, or a tenth of the idle
   * timeout when that is shorter, so a session in use never idles out between two writes.
   */
  touchIntervalMs?: number;
  /** Epoch milliseconds; tests move it. */
  now?: () => number;
}

/** A live session as the admin API lists it (never its tokens' values outside `record`). */
export interface ListedSession {
  id: string;
  record: SessionRecord;
  /** Epoch ms of the last recorded request. */
  lastSeenAt: number;
  /** Epoch ms when the session ends unless used again (idle) or at the latest (absolute). */
  expiresAt: number;
}

export type SessionLookup =
  | { kind: 'none' }
  | { kind: 'invalid' }
  | { kind: 'expired'; reason: 'idle' | 'absolute' | 'gone'; record?: SessionRecord }
  | { kind: 'valid'; id: string; record: SessionRecord; lastSeenAt: number };

const SESSION_PREFIX = STORE_KEY_PREFIXES.session;
const LOGIN_PREFIX = STORE_KEY_PREFIXES.login;
const SEEN_PREFIX = STORE_KEY_PREFIXES.sessionSeen;
const LOGIN_TTL_MS = 10 * 60 * 1000;
/** The idle clock is written back at most this often, not on every request. */
const MAX_TOUCH_INTERVAL_MS = 60 * 1000;
/** Cookies larger than this are ignored unread (ours are ~90 bytes). */
const MAX_COOKIE_VALUE = 512;
/** What each cookie's signature is for: one cookie's value is never accepted as the other. */
const SESSION_PURPOSE = 'session';
const LOGIN_PURPOSE = 'login-binding';

/** Reads one cookie from a Cookie header. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Sessions and logins in progress on top of a StateStore. The cookie carries only a
 * signed random id; the record is encrypted with a key bound to that id. A login always
 * gets a new id (no fixation); idle and absolute timeouts are enforced on every load.
 */
export class SessionManager {
  readonly cookieName: string;
  readonly loginCookieName: string;
  private readonly touchIntervalMs: number;
  private readonly now: () => number;

  constructor(
    private readonly store: StateStore,
    private readonly keys: SealingKeys,
    private readonly options: SessionManagerOptions,
  ) {
    this.touchIntervalMs =
      options.touchIntervalMs ??
      Math.max(1, Math.min(MAX_TOUCH_INTERVAL_MS, Math.floor(options.idleTimeoutMs / 10)));
    this.now = options.now ?? Date.now;
    // __Host- makes the browser insist on Secure, Path=/ and no Domain: no subdomain can plant it.
    const prefix = options.cookie.secure ? '__Host-' : '';
    this.cookieName = `${prefix}mcp_oidc_proxy`;
    this.loginCookieName = `${prefix}mcp_oidc_proxy_login`;
  }

  get cookieNames(): ReadonlySet<string> {
    return new Set([this.cookieName, this.loginCookieName]);
  }

  async create(
    provider: string,
    identity: UpstreamIdentity,
    tokens: UpstreamTokens,
  ): Promise<{ id: string; setCookie: string }> {
    const id = randomId();
    const now = this.now();
    await this.save(id, { v: 1, provider, identity, tokens, createdAt: now });
    await this.touch(id, now);
    return {
      id,
      setCookie: this.cookie(this.cookieName, this.keys.sign(id, SESSION_PURPOSE), this.options.maxAgeMs),
    };
  }

  /** The session id a request's cookie names, when the signature holds; nothing is loaded. */
  idFromCookie(cookieHeader: string | undefined): string | undefined {
    const raw = readCookie(cookieHeader, this.cookieName);
    if (raw === undefined || raw.length > MAX_COOKIE_VALUE) return undefined;
    return this.keys.unsign(raw, SESSION_PURPOSE);
  }

  /** Looks up the session a request's cookies name. Store failures propagate (callers answer 503). */
  async load(cookieHeader: string | undefined): Promise<SessionLookup> {
    if (readCookie(cookieHeader, this.cookieName) === undefined) return { kind: 'none' };
    const id = this.idFromCookie(cookieHeader);
    if (!id) return { kind: 'invalid' };
    const [sealed, seen] = await Promise.all([
      this.store.get(SESSION_PREFIX + id),
      this.store.get(SEEN_PREFIX + id),
    ]);
    if (sealed === undefined) return { kind: 'expired', reason: 'gone' };
    const record = this.open(id, sealed);
    if (!record) return { kind: 'invalid' };
    const now = this.now();
    if (now - record.createdAt >= this.options.maxAgeMs) {
      await this.destroy(id);
      return { kind: 'expired', reason: 'absolute', record };
    }
    // The idle clock lives in its own key (its TTL outlasts the idle timeout): a missing key
    // means the session sat idle that long.
    const lastSeenAt = seen === undefined ? Number.NEGATIVE_INFINITY : Number(seen);
    if (now - lastSeenAt >= this.options.idleTimeoutMs) {
      await this.destroy(id);
      return { kind: 'expired', reason: 'idle', record };
    }
    if (now - lastSeenAt >= this.touchIntervalMs) await this.touch(id, now);
    return {
      kind: 'valid',
      id,
      record,
      lastSeenAt: now - lastSeenAt >= this.touchIntervalMs ? now : lastSeenAt,
    };
  }

  /**
   * The record as stored now, without timeouts or touching: what another request may have
   * written since this one loaded it (a refresh that already happened).
   */
  async peek(id: string): Promise<SessionRecord | undefined> {
    const sealed = await this.store.get(SESSION_PREFIX + id);
    return sealed === undefined ? undefined : this.open(id, sealed);
  }

  private open(id: string, sealed: string): SessionRecord | undefined {
    const json = this.keys.decrypt(sealed, SESSION_PREFIX + id);
    return json === undefined ? undefined : (JSON.parse(json) as SessionRecord);
  }

  /**
   * Writes the record (after login or a token refresh) until the absolute timeout. The idle
   * clock is kept apart, so a request touching it can never write back stale tokens over a
   * refresh that another request just saved.
   */
  async save(id: string, record: SessionRecord): Promise<void> {
    const ttl = record.createdAt + this.options.maxAgeMs - this.now();
    if (ttl <= 0) return this.destroy(id);
    await this.store.set(
      SESSION_PREFIX + id,
      this.keys.encrypt(JSON.stringify(record), SESSION_PREFIX + id),
      ttl,
    );
  }

  private touch(id: string, now: number): Promise<void> {
    return this.store.set(SEEN_PREFIX + id, String(now), this.options.idleTimeoutMs + this.touchIntervalMs);
  }

  async destroy(id: string): Promise<void> {
    await Promise.all([this.store.delete(SESSION_PREFIX + id), this.store.delete(SEEN_PREFIX + id)]);
  }

  count(): Promise<number> {
    return this.store.count(SESSION_PREFIX);
  }

  /**
   * Every live session (for the admin API). Read only: a session past a timeout is left out,
   * not destroyed, and the idle clock is not touched. One store read per key, so this is for
   * occasional use, not the request path.
   */
  async list(): Promise<ListedSession[]> {
    const now = this.now();
    const keys = await this.store.keys(SESSION_PREFIX);
    const found = await Promise.all(
      keys.map(async (key): Promise<ListedSession | undefined> => {
        const id = key.slice(SESSION_PREFIX.length);
        const [sealed, seen] = await Promise.all([this.store.get(key), this.store.get(SEEN_PREFIX + id)]);
        const record = sealed === undefined ? undefined : this.open(id, sealed);
        if (!record || seen === undefined) return undefined;
        const lastSeenAt = Number(seen);
        const expiresAt = Math.min(
          record.createdAt + this.options.maxAgeMs,
          lastSeenAt + this.options.idleTimeoutMs,
        );
        return expiresAt > now ? { id, record, lastSeenAt, expiresAt } : undefined;
      }),
    );
    return found.filter((s): s is ListedSession => s !== undefined);
  }

  /** Ends every session of the user `sub` (admin "revoke user"); how many there were. */
  async destroySubject(sub: string): Promise<number> {
    const mine = (await this.list()).filter((s) => s.record.identity.sub === sub);
    await Promise.all(mine.map((s) => this.destroy(s.id)));
    return mine.length;
  }

  /** A lock so only one instance refreshes a session's upstream tokens at a time. */
  lockRefresh(id: string): Promise<boolean> {
    return this.store.setIfAbsent(`refresh-lock:${id}`, '1', 15_000);
  }

  unlockRefresh(id: string): Promise<void> {
    return this.store.delete(`refresh-lock:${id}`);
  }

  /**
   * Starts a login; returns the state and the login cookie that binds it to this browser.
   * A browser keeps its binding across logins (several tabs may sign in at once), and the
   * cookie is set again each time so it outlives the newest login record, not the first.
   */
  async startLogin(
    cookieHeader: string | undefined,
    login: Omit<LoginRecord, 'binding' | 'createdAt'>,
  ): Promise<{ state: string; setCookie: string }> {
    const binding = this.bindingFromCookie(cookieHeader) ?? randomId();
    const state = randomId();
    const record: LoginRecord = { ...login, binding, createdAt: this.now() };
    await this.store.set(
      LOGIN_PREFIX + state,
      this.keys.encrypt(JSON.stringify(record), LOGIN_PREFIX + state),
      LOGIN_TTL_MS,
    );
    return {
      state,
      setCookie: this.cookie(this.loginCookieName, this.keys.sign(binding, LOGIN_PURPOSE), LOGIN_TTL_MS),
    };
  }

  private bindingFromCookie(cookieHeader: string | undefined): string | undefined {
    const raw = readCookie(cookieHeader, this.loginCookieName);
    if (raw === undefined || raw.length > MAX_COOKIE_VALUE) return undefined;
    return this.keys.unsign(raw, LOGIN_PURPOSE);
  }

  /**
   * Takes (single use) the login a callback's `state` names, if this browser started it.
   * A replayed callback finds nothing; another browser's callback fails the binding.
   */
  async finishLogin(
    cookieHeader: string | undefined,
    state: string,
  ): Promise<{ ok: true; login: LoginRecord } | { ok: false; reason: 'unknown_state' | 'browser_mismatch' }> {
    if (state.length > 128) return { ok: false, reason: 'unknown_state' };
    const sealed = await this.store.take(LOGIN_PREFIX + state);
    const json = sealed === undefined ? undefined : this.keys.decrypt(sealed, LOGIN_PREFIX + state);
    if (!json) return { ok: false, reason: 'unknown_state' };
    const login = JSON.parse(json) as LoginRecord;
    const binding = this.bindingFromCookie(cookieHeader);
    if (binding !== login.binding) return { ok: false, reason: 'browser_mismatch' };
    return { ok: true, login };
  }

  /** A Set-Cookie value that deletes the session cookie (not a login in progress). */
  clearSessionCookie(): string {
    return this.cookie(this.cookieName, '', 0);
  }

  clearCookies(): string[] {
    return [this.cookie(this.cookieName, '', 0), this.cookie(this.loginCookieName, '', 0)];
  }

  private cookie(name: string, value: string, maxAgeMs: number): string {
    const parts = [
      `${name}=${value}`,
      'Path=/',
      'HttpOnly',
      'SameSite=Lax',
      `Max-Age=${Math.floor(maxAgeMs / 1000)}`,
    ];
    if (this.options.cookie.secure) parts.push('Secure');
    return parts.join('; ');
  }
}
