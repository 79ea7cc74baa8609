import * as client from 'openid-client';
import type { Logger } from '../../observability/logger.js';
import { NOOP_SPAN, type SpanAttributes, type TraceSpan, traceCall } from '../../observability/spans.js';
import { claimAtPath, groupsFromClaim } from '../policy/policy.js';
import {
  type LoginChecks,
  LoginRejectedError,
  type Provider,
  ProviderUnavailableError,
  type UpstreamIdentity,
  type UpstreamLogin,
  type UpstreamTokens,
} from './provider.js';

/** What a preset changes about the generic OIDC provider. */
export interface OidcQuirks {
  /** Extra authorization request parameters (Auth0 `audience`, Google `hd`). */
  authParams: Record<string, string>;
  /** Scopes added to OIDC_SCOPES (Entra needs offline_access for a refresh token). */
  extraScopes: string[];
  /** Claim paths whose values are the user's groups, merged (Keycloak: groups and realm roles). */
  groupClaims: string[];
  /** Extra check on the ID token claims (Google: `hd` must be the asked domain). */
  checkClaims?: (claims: Record<string, unknown>) => string | undefined;
  /**
   * Where the groups are when the claims only point to them (Entra ID's groups overage): read
   * with the user's access token; a failure fails the login.
   */
  groupsOverage?: {
    applies(claims: Record<string, unknown>): boolean;
    groups(accessToken: string, trace: TraceSpan): Promise<string[]>;
  };
}

export interface OidcProviderOptions {
  name: string;
  discoveryUrl: URL;
  clientId: string;
  clientSecret: string | undefined;
  redirectUri: string;
  scopes: string[];
  quirks: OidcQuirks;
  logger: Logger;
  /** Seconds for each call to the provider. */
  timeoutSeconds?: number;
  /** Parent of the discovery spans (each begins a trace); none: discovery is not traced. */
  background?: TraceSpan;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Network-level failures: the provider is down, not the login wrong. */
function isNetworkError(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string }; name?: string };
  const code = e.cause?.code ?? e.code ?? '';
  return (
    e.name === 'TimeoutError' ||
    e.name === 'AbortError' ||
    /^(ECONNREFUSED|ECONNRESET|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|UND_ERR_)/.test(code) ||
    (err instanceof TypeError && /fetch failed/.test(err.message))
  );
}

const ENTRA_ORIGIN = 'https://login.microsoftonline.com';
const WELL_KNOWN = '/.well-known/openid-configuration';

/**
 * What to hand openid-client's discovery. Microsoft Entra ID's multi-tenant endpoints (`common`,
 * `organizations`) publish the issuer as a template, `https://login.microsoftonline.com/{tenantid}/v2.0`,
 * and each ID token names its own tenant. openid-client validates such tokens against the
 * template filled with the token's `tid`, but only when it is given the issuer URL rather than the
 * discovery document's URL; so for Entra the `/.well-known/openid-configuration` suffix is dropped
 * (openid-client fetches the same document). Other providers keep the URL exactly as configured.
 */
export function discoveryTarget(discoveryUrl: URL): URL {
  if (discoveryUrl.origin !== ENTRA_ORIGIN || discoveryUrl.search !== '') return discoveryUrl;
  if (!discoveryUrl.pathname.endsWith(WELL_KNOWN)) return discoveryUrl;
  return new URL(discoveryUrl.pathname.slice(0, -WELL_KNOWN.length), ENTRA_ORIGIN);
}

/**
 * Any OpenID Connect provider, through openid-client: discovery (retried with backoff
 * while the provider is unreachable), authorization code with PKCE S256, state and
 * nonce, ID token validation (issuer, audience, expiry, nonce, signature via JWKS),
 * userinfo merged, refresh, RP-initiated logout.
 */
export class OidcProvider implements Provider {
  readonly name: string;
  private config: client.Configuration | undefined;
  private discovering: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelayMs = 1000;
  private lastError: Error | undefined;
  private closed = false;
  /** On every span of a call to the provider. */
  private readonly spanAttributes: SpanAttributes;

  constructor(private readonly options: OidcProviderOptions) {
    this.name = options.name;
    this.spanAttributes = { 'mcp_oidc_proxy.idp': options.name };
  }

  isReady(): boolean {
    return this.config !== undefined;
  }

  /**
   * Fault behaviour, chosen here: an unreachable provider never stops the proxy. The first call
   * (at start) runs discovery; when it fails, ONE background loop retries with backoff (1 s, 2 s,
   * 4 s, ... capped at 30 s) while /health reports 503 and logins answer 503. Requests never start
   * an attempt of their own: they share the one in flight or are refused at once with the last
   * error, so users retrying /login neither wait for a dead provider nor multiply the retries
   * (each failed attempt used to schedule another loop and double the shared delay).
   */
  ready(): Promise<void> {
    if (this.config) return Promise.resolve();
    if (this.discovering) return this.discovering;
    if (this.retryTimer || this.closed) {
      return Promise.reject(
        new ProviderUnavailableError(
          `the identity provider could not be reached at OIDC_DISCOVERY_URL (${this.lastError?.message ?? 'closed'})`,
          { cause: this.lastError },
        ),
      );
    }
    this.discovering = this.discover();
    return this.discovering;
  }

  private async discover(): Promise<void> {
    const { discoveryUrl, clientId, clientSecret, timeoutSeconds = 10 } = this.options;
    // Plain-http issuers are accepted only on loopback (development and tests).
    const insecure =
      discoveryUrl.protocol === 'http:' && LOOPBACK.has(discoveryUrl.host.replace(/:\d+$/, ''));
    try {
      this.config = await traceCall(
        this.options.background ?? NOOP_SPAN,
        'idp.discovery',
        discoveryUrl,
        () =>
          client.discovery(
            discoveryTarget(discoveryUrl),
            clientId,
            clientSecret,
            clientSecret ? client.ClientSecretPost(clientSecret) : client.None(),
            { timeout: timeoutSeconds, ...(insecure ? { execute: [client.allowInsecureRequests] } : {}) },
          ),
        this.spanAttributes,
      );
      this.config.timeout = timeoutSeconds;
      this.retryDelayMs = 1000;
      this.lastError = undefined;
      this.options.logger.info(
        { provider: this.name, issuer: this.config.serverMetadata().issuer },
        'identity provider discovered',
      );
    } catch (err) {
      this.discovering = undefined;
      this.lastError = err as Error;
      const delay = this.retryDelayMs;
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, 30_000);
      this.options.logger.error(
        {
          provider: this.name,
          discovery_url: discoveryUrl.href,
          retry_in_ms: delay,
          err: (err as Error).message,
        },
        'identity provider discovery failed (OIDC_DISCOVERY_URL); retrying',
      );
      if (!this.closed) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.ready().catch(() => {});
        }, delay);
        this.retryTimer.unref();
      }
      throw new ProviderUnavailableError(
        `the identity provider could not be reached at OIDC_DISCOVERY_URL (${(err as Error).message})`,
        { cause: err },
      );
    }
  }

  /** Why the provider is not ready, for /health. */
  get unavailableReason(): string | undefined {
    return this.config ? undefined : (this.lastError?.message ?? 'discovery pending');
  }

  private requireConfig(): client.Configuration {
    if (!this.config) throw new ProviderUnavailableError('the identity provider has not been discovered yet');
    return this.config;
  }

  authorizationUrl(
    checks: LoginChecks & { codeChallenge: string; prompt?: 'login' | 'select_account' },
  ): URL {
    const { redirectUri, scopes, quirks } = this.options;
    const scope = [...new Set([...scopes, ...quirks.extraScopes])].join(' ');
    return client.buildAuthorizationUrl(this.requireConfig(), {
      redirect_uri: redirectUri,
      scope,
      response_type: 'code',
      state: checks.state,
      nonce: checks.nonce,
      code_challenge: checks.codeChallenge,
      code_challenge_method: 'S256',
      ...(checks.prompt ? { prompt: checks.prompt } : {}),
      ...quirks.authParams,
    });
  }

  async redeem(callbackUrl: URL, checks: LoginChecks, trace: TraceSpan = NOOP_SPAN): Promise<UpstreamLogin> {
    const config = this.requireConfig();
    let response: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      response = await traceCall(
        trace,
        'idp.token_exchange',
        config.serverMetadata().token_endpoint,
        () =>
          client.authorizationCodeGrant(config, callbackUrl, {
            pkceCodeVerifier: checks.codeVerifier,
            expectedState: checks.state,
            expectedNonce: checks.nonce,
            idTokenExpected: true,
          }),
        this.spanAttributes,
      );
    } catch (err) {
      throw this.translate(err, 'code exchange');
    }
    return this.loginFrom(config, response, undefined, trace);
  }

  async refresh(tokens: UpstreamTokens, sub: string, trace: TraceSpan = NOOP_SPAN): Promise<UpstreamLogin> {
    const config = this.requireConfig();
    const { refreshToken } = tokens;
    if (!refreshToken) throw new LoginRejectedError('no refresh token', 'no_refresh_token');
    let response: Awaited<ReturnType<typeof client.refreshTokenGrant>>;
    try {
      response = await traceCall(
        trace,
        'idp.refresh',
        config.serverMetadata().token_endpoint,
        () => client.refreshTokenGrant(config, refreshToken),
        this.spanAttributes,
      );
    } catch (err) {
      throw this.translate(err, 'refresh');
    }
    try {
      return await this.loginFrom(config, response, { tokens, sub }, trace);
    } catch (err) {
      if (err instanceof ProviderUnavailableError) err.tokens ??= tokensFrom(response, tokens);
      throw err;
    }
  }

  endSessionUrl(idTokenHint: string | undefined, postLogoutRedirectUri: string): URL | undefined {
    if (!this.config?.serverMetadata().end_session_endpoint) return undefined;
    const params: Record<string, string> = {
      post_logout_redirect_uri: postLogoutRedirectUri,
      client_id: this.options.clientId,
    };
    if (idTokenHint) params.id_token_hint = idTokenHint;
    return client.buildEndSessionUrl(this.config, params);
  }

  close(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  private async loginFrom(
    config: client.Configuration,
    response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers,
    previous: { tokens: UpstreamTokens; sub: string } | undefined,
    trace: TraceSpan,
  ): Promise<UpstreamLogin> {
    const idClaims = response.claims() as Record<string, unknown> | undefined;
    // A refresh response may carry no new ID token: the subject stays the one of the login.
    const sub = (idClaims?.sub as string | undefined) ?? previous?.sub;
    if (previous && idClaims && idClaims.sub !== previous.sub) {
      throw new LoginRejectedError('the refreshed ID token names another subject', 'subject_changed');
    }
    let claims: Record<string, unknown> = { ...(idClaims ?? {}), sub };
    if (config.serverMetadata().userinfo_endpoint && sub) {
      try {
        const info = await traceCall(
          trace,
          'idp.userinfo',
          config.serverMetadata().userinfo_endpoint,
          () => client.fetchUserInfo(config, response.access_token, sub),
          this.spanAttributes,
        );
        claims = { ...info, ...claims, ...pickGroupClaims(info, this.options.quirks.groupClaims) };
      } catch (err) {
        if (isNetworkError(err)) throw this.translate(err, 'userinfo');
        // A provider whose userinfo refuses the token still gave a valid ID token.
        this.options.logger.warn(
          { provider: this.name, err: (err as Error).message },
          'userinfo failed; using the ID token',
        );
      }
    }
    if (typeof sub !== 'string' || sub === '') {
      throw new LoginRejectedError('the provider returned no subject', 'no_subject');
    }
    if (claims.email_verified === undefined && config.serverMetadata().issuer.includes('{tenantid}')) {
      // Entra ID multi-tenant (`common`, `organizations`): the admin of any tenant can give a user
      // any address ("nOAuth"), so the email counts as verified only when Entra says the domain's
      // owner verified it (the optional claim `xms_edov`).
      claims.email_verified = claims.xms_edov === true || claims.xms_edov === 'true' || claims.xms_edov === 1;
    }
    const problem = this.options.quirks.checkClaims?.(claims);
    if (problem) throw new LoginRejectedError(problem, 'claims_rejected');
    const overage = this.options.quirks.groupsOverage;
    if (overage?.applies(claims)) {
      // At login and at every refresh, so the groups stay as current as the tokens.
      claims = { ...claims, groups: await overage.groups(response.access_token, trace) };
    }
    return {
      identity: identityFromClaims(claims, this.options.quirks.groupClaims),
      tokens: tokensFrom(response, previous?.tokens),
    };
  }

  private translate(err: unknown, step: string): Error {
    if (isNetworkError(err)) {
      return new ProviderUnavailableError(`the identity provider could not be reached during ${step}`, {
        cause: err,
      });
    }
    const e = err as { code?: string; error?: string; message?: string };
    const reason = e.error ?? e.code ?? 'invalid_response';
    return new LoginRejectedError(`${step} failed: ${e.message ?? reason}`, reason, { cause: err });
  }
}

/** The tokens of a token response; a refresh response keeps what it does not replace. */
function tokensFrom(
  response: client.TokenEndpointResponse & client.TokenEndpointResponseHelpers,
  previous: UpstreamTokens | undefined,
): UpstreamTokens {
  const expiresIn = response.expiresIn();
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token ?? previous?.refreshToken,
    idToken: response.id_token ?? previous?.idToken,
    expiresAt: expiresIn !== undefined ? Date.now() + expiresIn * 1000 : undefined,
  };
}

function pickGroupClaims(claims: Record<string, unknown>, paths: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const path of paths) {
    const top = path.split('.')[0] as string;
    if (claims[path] !== undefined) out[path] = claims[path];
    else if (claims[top] !== undefined) out[top] = claims[top];
  }
  return out;
}

export function identityFromClaims(claims: Record<string, unknown>, groupClaims: string[]): UpstreamIdentity {
  const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);
  const groups = new Set<string>();
  for (const path of groupClaims) for (const g of groupsFromClaim(claimAtPath(claims, path))) groups.add(g);
  const verified = claims.email_verified;
  return {
    sub: String(claims.sub),
    email: str(claims.email),
    emailVerified: verified === undefined ? undefined : verified === true || verified === 'true',
    name: str(claims.name),
    username: str(claims.preferred_username) ?? str(claims.nickname),
    groups: [...groups],
  };
}
