import * as client from 'openid-client';
import type { Logger } from '../../observability/logger.js';
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
  /** Ask for read:org, needed to list organisations and teams (for ALLOWED_GROUPS). */
  readOrgs: boolean;
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

/**
 * GitHub is plain OAuth 2 (no ID token, no discovery): the identity comes from its REST
 * API — `GET /user` for the id and login, `GET /user/emails` for the verified primary
 * email, and with read:org `GET /user/orgs` and `GET /user/teams` for groups, named
 * `org` and `org/team-slug` so ALLOWED_GROUPS can hold either.
 */
export class GitHubProvider implements Provider {
  readonly name = 'github';
  private readonly config: client.Configuration;

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

  authorizationUrl(checks: LoginChecks & { codeChallenge: string }): URL {
    return client.buildAuthorizationUrl(this.config, {
      redirect_uri: this.options.redirectUri,
      scope: this.options.readOrgs ? 'read:user user:email read:org' : 'read:user user:email',
      state: checks.state,
      code_challenge: checks.codeChallenge,
      code_challenge_method: 'S256',
      allow_signup: 'false',
    });
  }

  async redeem(callbackUrl: URL, checks: LoginChecks): Promise<UpstreamLogin> {
    let response: client.TokenEndpointResponse;
    try {
      response = await client.authorizationCodeGrant(this.config, callbackUrl, {
        pkceCodeVerifier: checks.codeVerifier,
        expectedState: checks.state,
        idTokenExpected: false,
      });
    } catch (err) {
      throw translate(err, 'code exchange');
    }
    return this.loginWith(response.access_token, response.refresh_token, response.expires_in);
  }

  async refresh(tokens: UpstreamTokens, sub: string): Promise<UpstreamLogin> {
    // OAuth apps' tokens do not expire; GitHub Apps' user tokens do and come with a refresh token.
    if (!tokens.refreshToken) return this.loginWith(tokens.accessToken, undefined, undefined, sub);
    let response: client.TokenEndpointResponse;
    try {
      response = await client.refreshTokenGrant(this.config, tokens.refreshToken);
    } catch (err) {
      throw translate(err, 'refresh');
    }
    return this.loginWith(
      response.access_token,
      response.refresh_token ?? tokens.refreshToken,
      response.expires_in,
      sub,
    );
  }

  endSessionUrl(): URL | undefined {
    return undefined;
  }

  close(): void {}

  private async loginWith(
    accessToken: string,
    refreshToken: string | undefined,
    expiresIn: number | undefined,
    expectedSub?: string,
  ): Promise<UpstreamLogin> {
    const user = await this.api<GitHubUser>('/user', accessToken);
    const sub = String(user.id);
    if (expectedSub && sub !== expectedSub) {
      throw new LoginRejectedError('the refreshed token belongs to another GitHub user', 'subject_changed');
    }
    const emails = await this.api<GitHubEmail[]>('/user/emails', accessToken);
    const primary = emails.find((e) => e.primary && e.verified);
    const groups: string[] = [];
    if (this.options.readOrgs) {
      const [orgs, teams] = await Promise.all([
        this.api<GitHubOrg[]>('/user/orgs?per_page=100', accessToken),
        this.api<GitHubTeam[]>('/user/teams?per_page=100', accessToken),
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
    return {
      identity,
      tokens: {
        accessToken,
        refreshToken,
        expiresAt: expiresIn !== undefined ? Date.now() + expiresIn * 1000 : undefined,
      },
    };
  }

  private async api<T>(path: string, accessToken: string): Promise<T> {
    const url = new URL(this.options.apiUrl.href.replace(/\/+$/, '') + path);
    let res: Response;
    try {
      res = await fetch(url, {
        headers: {
          authorization: `Bearer ${accessToken}`,
          accept: 'application/vnd.github+json',
          'x-github-api-version': '2022-11-28',
          'user-agent': 'mcp-oidc-proxy',
        },
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new ProviderUnavailableError(`GitHub's API could not be reached (${path})`, { cause: err });
    }
    if (res.status === 401) throw new LoginRejectedError('GitHub refused the token', 'invalid_token');
    if (!res.ok) {
      throw new ProviderUnavailableError(`GitHub's API answered ${res.status} for ${url.pathname}`);
    }
    return (await res.json()) as T;
  }
}

function translate(err: unknown, step: string): Error {
  const e = err as {
    code?: string;
    error?: string;
    message?: string;
    name?: string;
    cause?: { code?: string };
  };
  if (err instanceof TypeError || e.name === 'TimeoutError' || e.cause?.code?.startsWith('ECONN')) {
    return new ProviderUnavailableError(`GitHub could not be reached during ${step}`, { cause: err });
  }
  return new LoginRejectedError(
    `${step} failed: ${e.message ?? 'error'}`,
    e.error ?? e.code ?? 'invalid_response',
    {
      cause: err,
    },
  );
}
