import * as client from 'openid-client';
import type { Logger } from '../../observability/logger.js';
import { NOOP_SPAN, type TraceSpan, traceCall } from '../../observability/spans.js';
import {
  type LoginChecks,
  LoginRejectedError,
  type Provider,
  ProviderUnavailableError,
  type UpstreamIdentity,
  type UpstreamLogin,
  type UpstreamTokens,
} from './provider.js';

export interface GitHubProviderOptions {
  clientId: string;
  clientSecret: string | undefined;
  redirectUri: string;
  /** https://github.com, or a GitHub Enterprise Server URL. */
  webUrl: URL;
  /** https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. */
  apiUrl: URL;
  /**
   * Whether to ask for read:org, needed to list organisations and teams (for ALLOWED_GROUPS);
   * asked at every login, so a reloaded ALLOWED_GROUPS applies to the next one.
   */
  readOrgs: () => boolean;
  logger: Logger;
}

interface GitHubUser {
  id: number;
  login: string;
  name: string | null;
}
interface GitHubEmail {
  email: string;
  primary: boolean;
  verified: boolean;
}
interface GitHubTeam {
  slug: string;
  organization: { login: string };
}
interface GitHubOrg {
  login: string;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
/** Pages of 100 read from a list endpoint at most (orgs, teams, emails). */
const MAX_PAGES = 10;

/**
 * GitHub is plain OAuth 2 (no ID token, no discovery): the identity comes from its REST
 * API — `GET /user` for the id and login, `GET /user/emails` for the verified primary
 * email, and with read:org `GET /user/orgs` and `GET /user/teams` for groups, named
 * `org` and `org/team-slug` so ALLOWED_GROUPS can hold either.
 */
export class GitHubProvider implements Provider {
  readonly name = 'github';
  private readonly config: client.Configuration;
  /** On every span of a call to GitHub. */
  private readonly spanAttributes = { 'mcp_oidc_proxy.idp': 'github' };

  constructor(private readonly options: GitHubProviderOptions) {
    const web = options.webUrl.href.replace(/\/+$/, '');
    this.config = new client.Configuration(
      {
        issuer: web,
        authorization_endpoint: `${web}/login/oauth/authorize`,
        token_endpoint: `${web}/login/oauth/access_token`,
      },
      options.clientId,
      options.clientSecret,
      options.clientSecret ? client.ClientSecretPost(options.clientSecret) : client.None(),
    );
    this.config.timeout = 10;
    // Plain http only for a loopback simulator (tests).
    if (options.webUrl.protocol === 'http:' && LOOPBACK.has(options.webUrl.hostname)) {
      client.allowInsecureRequests(this.config);
    }
  }

  isReady(): boolean {
    return true;
  }

  async ready(): Promise<void> {}

  authorizationUrl(
    checks: LoginChecks & { codeChallenge: string; prompt?: 'login' | 'select_account' },
  ): URL {
    return client.buildAuthorizationUrl(this.config, {
      redirect_uri: this.options.redirectUri,
      scope: this.options.readOrgs() ? 'read:user user:email read:org' : 'read:user user:email',
      state: checks.state,
      code_challenge: checks.codeChallenge,
      code_challenge_method: 'S256',
      allow_signup: 'false',
      // GitHub's documented prompt value shows the account picker.
      ...(checks.prompt ? { prompt: 'select_account' } : {}),
    });
  }

  async redeem(callbackUrl: URL, checks: LoginChecks, trace: TraceSpan = NOOP_SPAN): Promise<UpstreamLogin> {
    let response: client.TokenEndpointResponse;
    try {
      response = await traceCall(
        trace,
        'idp.token_exchange',
        this.config.serverMetadata().token_endpoint,
        () =>
          client.authorizationCodeGrant(this.config, callbackUrl, {
            pkceCodeVerifier: checks.codeVerifier,
            expectedState: checks.state,
            idTokenExpected: false,
          }),
        this.spanAttributes,
      );
    } catch (err) {
      throw translate(err, 'code exchange');
    }
    return this.loginWith(
      tokensFrom(response.access_token, response.refresh_token, response.expires_in),
      undefined,
      trace,
    );
  }

  async refresh(tokens: UpstreamTokens, sub: string, trace: TraceSpan = NOOP_SPAN): Promise<UpstreamLogin> {
    // OAuth apps' tokens do not expire; GitHub Apps' user tokens do and come with a refresh token.
    const { refreshToken } = tokens;
    if (!refreshToken) return this.loginWith({ accessToken: tokens.accessToken }, sub, trace);
    let response: client.TokenEndpointResponse;
    try {
      response = await traceCall(
        trace,
        'idp.refresh',
        this.config.serverMetadata().token_endpoint,
        () => client.refreshTokenGrant(this.config, refreshToken),
        this.spanAttributes,
      );
    } catch (err) {
      throw translate(err, 'refresh');
    }
    const rotated = tokensFrom(
      response.access_token,
      response.refresh_token ?? refreshToken,
      response.expires_in,
    );
    try {
      return await this.loginWith(rotated, sub, trace);
    } catch (err) {
      // GitHub Apps rotate the refresh token at each use: the one just sent is spent, so when
      // reading the identity fails for an outage the session must keep the new pair.
      if (err instanceof ProviderUnavailableError) err.tokens ??= rotated;
      throw err;
    }
  }

  endSessionUrl(): URL | undefined {
    return undefined;
  }

  close(): void {}

  private async loginWith(
    tokens: UpstreamTokens,
    expectedSub: string | undefined,
    trace: TraceSpan,
  ): Promise<UpstreamLogin> {
    const { accessToken } = tokens;
    const { body: user } = await this.api<GitHubUser>('/user', accessToken, trace);
    const sub = String(user.id);
    if (expectedSub && sub !== expectedSub) {
      throw new LoginRejectedError('the refreshed token belongs to another GitHub user', 'subject_changed');
    }
    const emails = await this.list<GitHubEmail>('/user/emails', accessToken, trace);
    // Only the primary address, and only when GitHub verified it: an unverified address is one
    // anybody could have typed, so it must not reach ALLOWED_EMAILS or the backend.
    const primary = emails.find((e) => e.primary && e.verified);
    const groups: string[] = [];
    if (this.options.readOrgs()) {
      const [orgs, teams] = await Promise.all([
        this.list<GitHubOrg>('/user/orgs', accessToken, trace),
        this.list<GitHubTeam>('/user/teams', accessToken, trace),
      ]);
      for (const org of orgs) groups.push(org.login);
      for (const team of teams) groups.push(`${team.organization.login}/${team.slug}`);
    }
    const identity: UpstreamIdentity = {
      sub,
      email: primary?.email,
      emailVerified: primary ? true : undefined,
      name: user.name ?? undefined,
      username: user.login,
      groups: [...new Set(groups)],
    };
    return { identity, tokens };
  }

  /** One API call; `next` is the URL of the following page (the `Link` header's rel="next"). */
  private async api<T>(
    pathOrUrl: string | URL,
    accessToken: string,
    trace: TraceSpan,
  ): Promise<{ body: T; next: URL | undefined }> {
    const url =
      typeof pathOrUrl === 'string'
        ? new URL(this.options.apiUrl.href.replace(/\/+$/, '') + pathOrUrl)
        : pathOrUrl;
    const path = url.pathname;
    let res: Response;
    try {
      res = await traceCall(
        trace,
        'idp.api',
        url,
        () =>
          fetch(url, {
            headers: {
              authorization: `Bearer ${accessToken}`,
              accept: 'application/vnd.github+json',
              'x-github-api-version': '2022-11-28',
              'user-agent': 'mcp-oidc-proxy',
            },
            signal: AbortSignal.timeout(10_000),
          }),
        { ...this.spanAttributes, 'url.path': path },
      );
    } catch (err) {
      throw new ProviderUnavailableError(`GitHub's API could not be reached (${path})`, { cause: err });
    }
    if (!res.ok) {
      const message = await res
        .json()
        .then((b) => String((b as { message?: unknown }).message ?? ''))
        .catch(() => '');
      const detail = `GitHub's API answered ${res.status} for ${path}${message ? ` (${message})` : ''}`;
      if (res.status === 401)
        throw new LoginRejectedError(`GitHub refused the token: ${detail}`, 'invalid_token');
      // Rate limits (429, or 403 with no requests left or a Retry-After for the secondary limits)
      // and server errors: GitHub is unavailable for now.
      const rateLimited =
        res.status === 429 ||
        (res.status === 403 &&
          (res.headers.get('x-ratelimit-remaining') === '0' || res.headers.has('retry-after')));
      if (rateLimited || res.status >= 500) throw new ProviderUnavailableError(detail);
      // 403/404: the token may not read this (missing scope: read:org for orgs and teams, user:email
      // for emails; or a GitHub App without the permission). A configuration problem, not an outage.
      throw new LoginRejectedError(
        `${detail}; the token lacks the scope or permission (granted: ${res.headers.get('x-oauth-scopes') ?? 'unknown'})`,
        'insufficient_scope',
      );
    }
    return { body: (await res.json()) as T, next: this.nextPage(res.headers.get('link')) };
  }

  /** Every page of a list endpoint (100 per page, following `Link: <...>; rel="next"`). */
  private async list<T>(path: string, accessToken: string, trace: TraceSpan): Promise<T[]> {
    const items: T[] = [];
    let page: string | URL | undefined = `${path}?per_page=100`;
    for (let n = 0; page !== undefined; n++) {
      if (n === MAX_PAGES) {
        this.options.logger.warn({ path, max_pages: MAX_PAGES }, 'GitHub list truncated');
        break;
      }
      const { body, next }: { body: T[]; next: URL | undefined } = await this.api<T[]>(
        page,
        accessToken,
        trace,
      );
      if (!Array.isArray(body))
        throw new LoginRejectedError(`GitHub's ${path} is not a list`, 'invalid_response');
      items.push(...body);
      page = next;
    }
    return items;
  }

  /** The rel="next" URL of a Link header, only when it stays on the API's origin (it carries the token). */
  private nextPage(link: string | null): URL | undefined {
    if (!link) return undefined;
    for (const part of link.split(',')) {
      const m = /^\s*<([^>]+)>(.*)$/.exec(part);
      const rel = /;\s*rel="?([^";]*)"?/i.exec(m?.[2] ?? '')?.[1] ?? '';
      if (!m || !rel.split(/\s+/).includes('next')) continue;
      try {
        const next = new URL(m[1] ?? '', this.options.apiUrl);
        return next.origin === this.options.apiUrl.origin ? next : undefined;
      } catch {
        return undefined;
      }
    }
    return undefined;
  }
}

/** The tokens of a token response (`expires_in` only for GitHub Apps' expiring user tokens). */
function tokensFrom(
  accessToken: string,
  refreshToken: string | undefined,
  expiresIn: number | undefined,
): UpstreamTokens {
  return {
    accessToken,
    refreshToken,
    expiresAt: expiresIn !== undefined ? Date.now() + expiresIn * 1000 : undefined,
  };
}

/**
 * GitHub answers token request errors with HTTP 200 and `{error, error_description, error_uri}`
 * in the body (e.g. `bad_verification_code`), which openid-client reports as a response without
 * an access_token; the body is in the error's cause chain.
 */
function gitHubError(err: unknown): { error: string; description: string | undefined } | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e && typeof e === 'object'; depth++) {
    const { body, cause } = e as { body?: { error?: unknown; error_description?: unknown }; cause?: unknown };
    if (body && typeof body.error === 'string') {
      return {
        error: body.error,
        description: typeof body.error_description === 'string' ? body.error_description : undefined,
      };
    }
    e = cause;
  }
  return undefined;
}

function translate(err: unknown, step: string): Error {
  const e = err as {
    code?: string;
    error?: string;
    message?: string;
    name?: string;
    cause?: { code?: string };
  };
  if (
    (err instanceof TypeError && /fetch failed/.test(err.message)) ||
    e.name === 'TimeoutError' ||
    e.name === 'AbortError' ||
    /^(ECONN|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|UND_ERR_)/.test(e.cause?.code ?? '')
  ) {
    return new ProviderUnavailableError(`GitHub could not be reached during ${step}`, { cause: err });
  }
  // An HTTP error status (GitHub's own errors are 200): openid-client puts the Response in `cause`.
  if (e.cause instanceof Response && (e.cause.status >= 500 || e.cause.status === 429)) {
    return new ProviderUnavailableError(`GitHub answered ${e.cause.status} during ${step}`, { cause: err });
  }
  const github = gitHubError(err);
  if (github) {
    return new LoginRejectedError(
      `${step} failed: GitHub answered ${github.error}${github.description ? ` (${github.description})` : ''}`,
      github.error,
      { cause: err },
    );
  }
  return new LoginRejectedError(
    `${step} failed: ${e.message ?? 'error'}`,
    e.error ?? e.code ?? 'invalid_response',
    {
      cause: err,
    },
  );
}
