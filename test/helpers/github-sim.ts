/**
 * A local GitHub: the OAuth web application flow and the few REST endpoints the proxy's GitHub
 * provider calls, for tests.
 *
 * GitHub itself cannot be reached from the test environment (no network), so this server follows
 * GitHub's public documentation, endpoint by endpoint:
 * - Web application flow, `GET /login/oauth/authorize` and `POST /login/oauth/access_token`,
 *   PKCE (`code_challenge`, `code_challenge_method=S256` only), codes that expire after 10 minutes,
 *   the `Accept: application/json` answer and the redirect URL rules (same host and port as the
 *   registered callback URL, path the same or a subdirectory):
 *   https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps
 * - Authorization errors sent back to the callback (`access_denied`, `redirect_uri_mismatch`):
 *   https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-authorization-request-errors
 * - Token request errors (`incorrect_client_credentials`, `redirect_uri_mismatch`,
 *   `bad_verification_code`), which GitHub answers with HTTP 200 and an `error` member:
 *   https://docs.github.com/en/apps/oauth-apps/maintaining-oauth-apps/troubleshooting-oauth-app-access-token-request-errors
 * - REST API (GitHub.com at https://api.github.com; GitHub Enterprise Server at
 *   https://HOSTNAME/api/v3, the form used here, on the same server as the web flow):
 *   `GET /user` https://docs.github.com/en/rest/users/users#get-the-authenticated-user
 *   `GET /user/emails` https://docs.github.com/en/rest/users/emails#list-email-addresses-for-the-authenticated-user
 *   `GET /user/orgs` https://docs.github.com/en/rest/orgs/orgs#list-organizations-for-the-authenticated-user
 *     ("requires at least user or read:org scope ... insufficient scope will receive a 403")
 *   `GET /user/teams` https://docs.github.com/en/rest/teams/teams#list-teams-for-the-authenticated-user
 *     (needs the user, repo or read:org scope)
 *   pagination (`per_page` default 30, max 100; `Link` header):
 *   https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api
 *   scopes and what they imply (`user` covers `read:user` and `user:email`; `admin:org` and
 *   `write:org` cover `read:org`), `X-OAuth-Scopes`:
 *   https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps
 * - GitHub Apps' user access tokens that expire (`ghu_`, with a `ghr_` refresh token, `expires_in`
 *   28800 and `refresh_token_expires_in` 15897600), refreshed with `grant_type=refresh_token`;
 *   "once you use a refresh token, that refresh token and the old user access token will no longer
 *   work":
 *   https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/refreshing-user-access-tokens
 *
 * Where the documentation is silent the choice is marked "assumption" below. The simulated user is
 * already signed in to GitHub and approves at once (no page), or denies when told to.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type Listening, listen } from './servers.js';

export interface GitHubSimEmail {
  email: string;
  primary: boolean;
  verified: boolean;
  visibility?: 'public' | 'private' | null;
}

export interface GitHubSimUser {
  id: number;
  login: string;
  name: string | null;
  emails: GitHubSimEmail[];
  /** Organisation logins. */
  orgs?: string[];
  /** Team memberships: organisation login and team slug (the name defaults to the slug). */
  teams?: Array<{ org: string; slug: string; name?: string }>;
}

/** A registered OAuth app. */
export interface GitHubSimApp {
  clientId: string;
  clientSecret: string;
  /** The "Authorization callback URL" of the app's settings. */
  callbackUrl: string;
  /**
   * A GitHub App with "User-to-server token expiration" on: its user tokens expire and come with a
   * refresh token that rotates at each use. Otherwise an OAuth app, whose tokens never expire.
   */
  expiringUserTokens?: boolean;
}

export interface GitHubSimOptions {
  apps: GitHubSimApp[];
  users: GitHubSimUser[];
  /** Login of the user signed in to the simulated GitHub; default the first user. */
  signedIn?: string;
  /** REST API prefix; default `/api/v3` (GitHub Enterprise Server's form). */
  apiPrefix?: string;
  /**
   * Lifetime of expiring user access tokens, in seconds. GitHub's is always 28800 (8 hours), the
   * default; a test may shorten it so the proxy refreshes without waiting hours (a deviation).
   */
  userTokenLifetimeSeconds?: number;
}

export interface GitHubSimRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  /** The parsed form body of a POST. */
  form?: URLSearchParams;
}

export interface GitHubSim {
  /** The web URL (GITHUB_URL). */
  url: string;
  /** The REST API base (GITHUB_API_URL): `url + apiPrefix`. */
  apiUrl: string;
  /** Every request received, in order. */
  requests: GitHubSimRequest[];
  /** Who is signed in to the simulated GitHub from now on. */
  signIn(login: string): void;
  /** What the signed-in user answers on the authorization page from now on. */
  decide(decision: 'approve' | 'deny'): void;
  /**
   * Scopes the issued tokens carry from now on, whatever was asked (e.g. a GitHub App's user
   * token, whose permissions come from the app, not from `scope`); undefined = what was asked.
   */
  grantOnly(scopes: string[] | undefined): void;
  /** Moves the simulated clock forward (codes expire after 10 minutes). */
  advanceTime(ms: number): void;
  /**
   * From now on the token endpoint, the API or both answer this HTTP status (an outage behind the
   * browser-facing pages: the authorize step still works); undefined = normal service.
   */
  failBackChannel(status: number | undefined, part?: 'token' | 'api' | 'both'): void;
  /**
   * The next `times` requests to `path` (a web path such as `/login/oauth/access_token`, or an API
   * path without the prefix such as `/user/teams`) answer this HTTP status, as a passing outage
   * does; the requests after them are served normally.
   */
  failNext(path: string, status: number, times?: number): void;
  /** Revokes every token issued so far (the API then answers 401 Bad credentials). */
  revokeTokens(): void;
  close(): Promise<void>;
}

interface IssuedCode {
  clientId: string;
  /** The redirect_uri given to the authorize endpoint, if any. */
  redirectUri: string | undefined;
  codeChallenge: string | undefined;
  scopes: string[];
  userId: number;
  expiresAt: number;
}

interface IssuedToken {
  userId: number;
  scopes: string[];
  clientId: string;
  /** Simulated epoch milliseconds; undefined = never expires (OAuth apps). */
  expiresAt?: number;
}

/** A GitHub App's refresh token: single use, six months. */
interface IssuedRefreshToken extends IssuedToken {
  /** The access token issued with it, which stops working once this is used. */
  accessToken: string;
  expiresAt: number;
}

const CODE_TTL_MS = 10 * 60 * 1000;
const USER_TOKEN_TTL_SECONDS = 28_800;
const REFRESH_TOKEN_TTL_SECONDS = 15_897_600;
const DOCS = 'https://docs.github.com';
const AUTHORIZE_ERRORS = `${DOCS}/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/`;
const TOKEN_ERRORS = '/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/';

/** Scopes that include others (GitHub's scope hierarchy). */
const IMPLIED: Record<string, string[]> = {
  user: ['read:user', 'user:email', 'user:follow'],
  'admin:org': ['write:org', 'read:org'],
  'write:org': ['read:org'],
  repo: ['repo:status', 'repo_deployment', 'public_repo', 'repo:invite', 'security_events'],
};

function hasAnyScope(granted: readonly string[], wanted: readonly string[]): boolean {
  const all = new Set(granted.flatMap((s) => [s, ...(IMPLIED[s] ?? [])]));
  return wanted.some((w) => all.has(w));
}

/** The documented redirect URL rule: same scheme, host and port; path the same or below. */
function redirectMatches(redirectUri: string, callbackUrl: string): boolean {
  let given: URL;
  let registered: URL;
  try {
    given = new URL(redirectUri);
    registered = new URL(callbackUrl);
  } catch {
    return false;
  }
  // Assumption: the documented loopback exception (any port on 127.0.0.1 for native apps) is left
  // out on purpose: every test server is on loopback, and the exception would hide a wrong port.
  if (given.protocol !== registered.protocol || given.host !== registered.host) return false;
  const base = registered.pathname.replace(/\/+$/, '');
  return given.pathname === registered.pathname || given.pathname.startsWith(`${base}/`);
}

function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', ...headers });
  res.end(JSON.stringify(body));
}

export async function startGitHubSim(options: GitHubSimOptions): Promise<GitHubSim> {
  const apiPrefix = (options.apiPrefix ?? '/api/v3').replace(/\/+$/, '');
  const apps = new Map(options.apps.map((a) => [a.clientId, a]));
  const users = new Map(options.users.map((u) => [u.login, u]));
  const byId = new Map(options.users.map((u) => [u.id, u]));
  const codes = new Map<string, IssuedCode>();
  const tokens = new Map<string, IssuedToken>();
  const refreshTokens = new Map<string, IssuedRefreshToken>();
  const failures = new Map<string, { status: number; left: number }>();
  const userTokenTtl = options.userTokenLifetimeSeconds ?? USER_TOKEN_TTL_SECONDS;
  const requests: GitHubSimRequest[] = [];
  let signedIn = options.signedIn ?? options.users[0]?.login;
  let decision: 'approve' | 'deny' = 'approve';
  let grantOnly: string[] | undefined;
  let clockOffset = 0;
  let backChannelStatus: number | undefined;
  let backChannelPart: 'token' | 'api' | 'both' = 'both';
  let baseUrl = '';
  const now = (): number => Date.now() + clockOffset;

  const authorize = (res: ServerResponse, query: URLSearchParams): void => {
    const app = apps.get(query.get('client_id') ?? '');
    if (!app) {
      // GitHub shows a 404 page for an unknown client_id.
      res.writeHead(404, { 'content-type': 'text/html; charset=utf-8' }).end('<h1>404 Not Found</h1>');
      return;
    }
    const state = query.get('state');
    const back = (target: string, params: Record<string, string>): void => {
      const url = new URL(target);
      for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
      if (state !== null) url.searchParams.set('state', state);
      res.writeHead(302, { location: url.href }).end();
    };
    const redirectUri = query.get('redirect_uri') ?? undefined;
    if (redirectUri !== undefined && !redirectMatches(redirectUri, app.callbackUrl)) {
      // Documented: the error goes to the registered callback URL.
      back(app.callbackUrl, {
        error: 'redirect_uri_mismatch',
        error_description: 'The redirect_uri MUST match the registered callback URL for this application.',
        error_uri: `${AUTHORIZE_ERRORS}#redirect-uri-mismatch`,
      });
      return;
    }
    const target = redirectUri ?? app.callbackUrl;
    const challenge = query.get('code_challenge') ?? undefined;
    const method = query.get('code_challenge_method') ?? undefined;
    if (
      (method !== undefined && (method !== 'S256' || challenge === undefined)) ||
      (challenge !== undefined && !/^[A-Za-z0-9_-]{43}$/.test(challenge))
    ) {
      // Assumption: the docs say only that the method must be S256 and the challenge a 43-character
      // SHA-256 hash; the answer to a bad one is not documented. A 400 page stops the flow visibly.
      res
        .writeHead(400, { 'content-type': 'text/html; charset=utf-8' })
        .end('<h1>Invalid PKCE parameters</h1>');
      return;
    }
    const user = signedIn ? users.get(signedIn) : undefined;
    if (!user) {
      // GitHub would show its sign-in page; the simulator has no form, so the flow ends here.
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end('<h1>Sign in to GitHub</h1><p>(simulator: nobody is signed in)</p>');
      return;
    }
    if (decision === 'deny') {
      back(target, {
        error: 'access_denied',
        error_description: 'The user has denied your application access.',
        error_uri: `${AUTHORIZE_ERRORS}#access-denied`,
      });
      return;
    }
    // The scope parameter is space-delimited; GitHub tolerates commas too (assumption).
    const scopes = [...new Set((query.get('scope') ?? '').split(/[\s,]+/).filter(Boolean))];
    const code = randomBytes(10).toString('hex');
    codes.set(code, {
      clientId: app.clientId,
      redirectUri,
      codeChallenge: challenge,
      scopes,
      userId: user.id,
      expiresAt: now() + CODE_TTL_MS,
    });
    back(target, { code });
  };

  const accessToken = (req: IncomingMessage, res: ServerResponse, form: URLSearchParams): void => {
    const json = /\bapplication\/json\b/i.test(req.headers.accept ?? '');
    const answer = (body: Record<string, string>): void => {
      // Errors too are HTTP 200: GitHub puts them in the body.
      if (json) sendJson(res, 200, body);
      else {
        res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' });
        res.end(new URLSearchParams(body).toString());
      }
    };
    const fail = (error: string, description: string, anchor: string): void =>
      answer({ error, error_description: description, error_uri: `${TOKEN_ERRORS}#${anchor}` });

    const app = apps.get(form.get('client_id') ?? '');
    if (!app || form.get('client_secret') !== app.clientSecret) {
      return fail(
        'incorrect_client_credentials',
        'The client_id and/or client_secret passed are incorrect.',
        'incorrect-client-credentials',
      );
    }
    if (form.get('grant_type') === 'refresh_token') return refreshGrant(app, form, answer);
    const badCode = (): void =>
      fail('bad_verification_code', 'The code passed is incorrect or expired.', 'bad-verification-code');
    const codeValue = form.get('code') ?? '';
    const code = codes.get(codeValue);
    // Single use: a code is gone once presented, whatever happens next.
    codes.delete(codeValue);
    if (!code || code.clientId !== app.clientId || code.expiresAt <= now()) return badCode();
    const redirectUri = form.get('redirect_uri');
    // The token request's redirect_uri, when given, is the one of the authorization request (or,
    // when that had none, one the registered callback URL allows).
    if (
      redirectUri !== null &&
      (code.redirectUri !== undefined
        ? redirectUri !== code.redirectUri
        : !redirectMatches(redirectUri, app.callbackUrl))
    ) {
      return fail(
        'redirect_uri_mismatch',
        'The redirect_uri MUST match the registered callback URL for this application.',
        'redirect-uri-mismatch2',
      );
    }
    if (code.codeChallenge !== undefined) {
      // Assumption: GitHub does not document its answer to a wrong code_verifier; the code "doesn't
      // match what you received in the first request", so bad_verification_code.
      const verifier = form.get('code_verifier');
      if (verifier === null || s256(verifier) !== code.codeChallenge) return badCode();
    }
    answer(issue(app, code.userId, grantOnly ?? code.scopes));
  };

  /** A token response: an OAuth app's lasting token, or a GitHub App's expiring pair. */
  const issue = (app: GitHubSimApp, userId: number, scopes: string[]): Record<string, string> => {
    const random = (): string => randomBytes(18).toString('base64url');
    if (!app.expiringUserTokens) {
      const token = `gho_${random()}`;
      tokens.set(token, { userId, scopes, clientId: app.clientId });
      return { access_token: token, token_type: 'bearer', scope: scopes.join(',') };
    }
    const token = `ghu_${random()}`;
    const refresh = `ghr_${random()}`;
    const grant = { userId, scopes, clientId: app.clientId };
    tokens.set(token, { ...grant, expiresAt: now() + userTokenTtl * 1000 });
    refreshTokens.set(refresh, {
      ...grant,
      accessToken: token,
      expiresAt: now() + REFRESH_TOKEN_TTL_SECONDS * 1000,
    });
    return {
      access_token: token,
      expires_in: String(userTokenTtl),
      refresh_token: refresh,
      refresh_token_expires_in: String(REFRESH_TOKEN_TTL_SECONDS),
      token_type: 'bearer',
      scope: scopes.join(','),
    };
  };

  /** `grant_type=refresh_token`: a new pair; the refresh token used and its access token die. */
  const refreshGrant = (
    app: GitHubSimApp,
    form: URLSearchParams,
    answer: (body: Record<string, string>) => void,
  ): void => {
    const value = form.get('refresh_token') ?? '';
    const issued = refreshTokens.get(value);
    refreshTokens.delete(value);
    if (!issued || issued.clientId !== app.clientId || issued.expiresAt <= now()) {
      // Assumption: the refresh documentation lists no errors; this is the answer GitHub gives for
      // a spent or unknown refresh token (HTTP 200, like its other token errors).
      return answer({
        error: 'bad_refresh_token',
        error_description: 'The refresh token passed is incorrect or expired.',
        error_uri: `${DOCS}/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors`,
      });
    }
    tokens.delete(issued.accessToken);
    answer(issue(app, issued.userId, issued.scopes));
  };

  const api = (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): void => {
    const m = /^(?:bearer|token)\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const found = m ? tokens.get(m[1]!) : undefined;
    // An expired user token is refused like an unknown one.
    const issued = found && (found.expiresAt === undefined || found.expiresAt > now()) ? found : undefined;
    const user = issued ? byId.get(issued.userId) : undefined;
    if (!m) {
      return sendJson(res, 401, {
        message: 'Requires authentication',
        documentation_url: `${DOCS}/rest`,
        status: '401',
      });
    }
    if (!issued || !user) {
      return sendJson(res, 401, {
        message: 'Bad credentials',
        documentation_url: `${DOCS}/rest`,
        status: '401',
      });
    }
    const scopeHeaders = (accepted: string): Record<string, string> => ({
      'x-oauth-scopes': issued.scopes.join(', '),
      'x-accepted-oauth-scopes': accepted,
    });
    const list = (items: unknown[], accepted: string): void => {
      // Pagination: per_page (default 30, max 100) and page, with a Link header.
      const perPage = Math.min(Math.max(Number.parseInt(query.get('per_page') ?? '30', 10) || 30, 1), 100);
      const page = Math.max(Number.parseInt(query.get('page') ?? '1', 10) || 1, 1);
      const last = Math.max(Math.ceil(items.length / perPage), 1);
      const link = (p: number): string => {
        const u = new URL(`${baseUrl}${apiPrefix}${path}`);
        for (const [k, v] of query) if (k !== 'page') u.searchParams.set(k, v);
        u.searchParams.set('page', String(p));
        return u.href;
      };
      const links: string[] = [];
      if (page > 1) links.push(`<${link(page - 1)}>; rel="prev"`);
      if (page < last) links.push(`<${link(page + 1)}>; rel="next"`, `<${link(last)}>; rel="last"`);
      if (page > 1) links.push(`<${link(1)}>; rel="first"`);
      const headers = scopeHeaders(accepted);
      if (links.length > 0) headers.link = links.join(', ');
      sendJson(res, 200, items.slice((page - 1) * perPage, page * perPage), headers);
    };
    const orgObject = (login: string) => ({
      login,
      id: orgId(login),
      node_id: Buffer.from(`Organization${orgId(login)}`).toString('base64'),
      url: `${baseUrl}${apiPrefix}/orgs/${login}`,
      description: null,
    });

    switch (path) {
      case '/user': {
        const publicEmail = user.emails.find((e) => e.visibility === 'public')?.email ?? null;
        return sendJson(
          res,
          200,
          {
            login: user.login,
            id: user.id,
            node_id: Buffer.from(`User${user.id}`).toString('base64'),
            type: 'User',
            site_admin: false,
            name: user.name,
            company: null,
            blog: '',
            location: null,
            email: publicEmail,
            html_url: `${baseUrl}/${user.login}`,
          },
          scopeHeaders(''),
        );
      }
      case '/user/emails':
        if (!hasAnyScope(issued.scopes, ['user:email'])) {
          // Assumption: a token without user:email gets GitHub's usual 404 for what it may not see
          // (404 is among the documented responses of this endpoint).
          return sendJson(
            res,
            404,
            {
              message: 'Not Found',
              documentation_url: `${DOCS}/rest/users/emails#list-email-addresses-for-the-authenticated-user`,
              status: '404',
            },
            scopeHeaders('user, user:email'),
          );
        }
        return list(
          user.emails.map((e) => ({
            email: e.email,
            primary: e.primary,
            verified: e.verified,
            visibility: e.visibility ?? (e.primary ? 'private' : null),
          })),
          'user, user:email',
        );
      case '/user/orgs':
        if (!hasAnyScope(issued.scopes, ['user', 'read:org'])) {
          return sendJson(
            res,
            403,
            {
              message: 'You need at least read:org scope or user scope to list your organizations.',
              documentation_url: `${DOCS}/rest/orgs/orgs#list-organizations-for-the-authenticated-user`,
              status: '403',
            },
            scopeHeaders('admin:org, read:org, repo, user, write:org'),
          );
        }
        return list((user.orgs ?? []).map(orgObject), 'admin:org, read:org, repo, user, write:org');
      case '/user/teams':
        if (!hasAnyScope(issued.scopes, ['user', 'repo', 'read:org'])) {
          return sendJson(
            res,
            403,
            {
              message: 'You need at least read:org scope, repo scope or user scope to list your teams.',
              documentation_url: `${DOCS}/rest/teams/teams#list-teams-for-the-authenticated-user`,
              status: '403',
            },
            scopeHeaders('admin:org, read:org, repo, user, write:org'),
          );
        }
        return list(
          (user.teams ?? []).map((t, i) => ({
            id: 1000 + i,
            slug: t.slug,
            name: t.name ?? t.slug,
            privacy: 'closed',
            permission: 'pull',
            organization: orgObject(t.org),
          })),
          'admin:org, read:org, repo, user, write:org',
        );
      default:
        return sendJson(res, 404, { message: 'Not Found', documentation_url: `${DOCS}/rest`, status: '404' });
    }
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sim.invalid');
    const record: GitHubSimRequest = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
    };
    requests.push(record);
    void (async () => {
      if (url.pathname === '/login/oauth/authorize' && req.method === 'GET') {
        return authorize(res, url.searchParams);
      }
      const isToken = url.pathname === '/login/oauth/access_token';
      const isApi = url.pathname.startsWith(`${apiPrefix}/`);
      const failing =
        backChannelStatus !== undefined &&
        ((isToken && backChannelPart !== 'api') || (isApi && backChannelPart !== 'token'));
      const failure = failures.get(isApi ? url.pathname.slice(apiPrefix.length) : url.pathname);
      const status = failing ? backChannelStatus : failure && failure.left > 0 ? failure.status : undefined;
      if (status !== undefined) {
        if (!failing && failure) failure.left--;
        await readBody(req);
        if (isApi) return sendJson(res, status, { message: 'Server Error' });
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
        return void res.end('<h1>Unicorn!</h1><p>This page is taking too long to load.</p>');
      }
      if (url.pathname === '/login/oauth/access_token' && req.method === 'POST') {
        const body = await readBody(req);
        // A form body, as documented; a JSON body is accepted too (assumption).
        const form = /\bapplication\/json\b/i.test(req.headers['content-type'] ?? '')
          ? new URLSearchParams(JSON.parse(body || '{}') as Record<string, string>)
          : new URLSearchParams(body);
        record.form = form;
        return accessToken(req, res, form);
      }
      if (url.pathname.startsWith(`${apiPrefix}/`) && req.method === 'GET') {
        return api(req, res, url.pathname.slice(apiPrefix.length), url.searchParams);
      }
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found');
    })().catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`simulator error: ${String(err)}`);
    });
  });
  const listening: Listening = await listen(server);
  baseUrl = listening.url;

  return {
    url: listening.url,
    apiUrl: `${listening.url}${apiPrefix}`,
    requests,
    signIn(login) {
      if (!users.has(login)) throw new Error(`github sim: no user ${login}`);
      signedIn = login;
    },
    decide(d) {
      decision = d;
    },
    grantOnly(scopes) {
      grantOnly = scopes;
    },
    advanceTime(ms) {
      clockOffset += ms;
    },
    failBackChannel(status, part = 'both') {
      backChannelStatus = status;
      backChannelPart = part;
    },
    failNext(path, status, times = 1) {
      failures.set(path, { status, left: times });
    },
    revokeTokens() {
      tokens.clear();
      refreshTokens.clear();
    },
    close: () => listening.close(),
  };
}

/** A stable numeric id per organisation login. */
function orgId(login: string): number {
  return createHash('sha256').update(login).digest().readUInt32BE(0) % 10_000_000;
}
