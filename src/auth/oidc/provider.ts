import type { TraceSpan } from '../../observability/spans.js';

/** Who the upstream provider says the user is, normalised across providers. */
export interface UpstreamIdentity {
  /** Stable subject at the provider (GitHub: the numeric user id). */
  sub: string;
  email?: string;
  emailVerified?: boolean;
  name?: string;
  /** preferred_username (GitHub: login). */
  username?: string;
  groups: string[];
}

export interface UpstreamTokens {
  accessToken: string;
  refreshToken?: string;
  idToken?: string;
  /** Epoch milliseconds when the access token expires, when the provider said. */
  expiresAt?: number;
}

export interface LoginChecks {
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** What a login or a refresh produced. */
export interface UpstreamLogin {
  identity: UpstreamIdentity;
  tokens: UpstreamTokens;
}

/**
 * One upstream identity provider, as the browser login and token refresh use it
 * (oauth2-proxy's Provider: login URL, redeem, enrich, refresh). Presets adjust the
 * generic OIDC provider; GitHub, which is plain OAuth 2, has its own.
 */
export interface Provider {
  readonly name: string;
  /** Resolves once discovery succeeded; rejects with ProviderUnavailableError while it cannot. */
  ready(): Promise<void>;
  /** True once discovery succeeded. */
  isReady(): boolean;
  /** `prompt` (OIDC `login` / `select_account`) asks the provider not to reuse its session. */
  authorizationUrl(checks: LoginChecks & { codeChallenge: string; prompt?: 'login' | 'select_account' }): URL;
  /**
   * Exchanges the code in `callbackUrl` (state, nonce and PKCE verified) and loads the identity.
   * Each call to the provider is a CLIENT span under `trace`, when given.
   */
  redeem(callbackUrl: URL, checks: LoginChecks, trace?: TraceSpan): Promise<UpstreamLogin>;
  /** Uses a refresh token; the identity is reloaded so allow-lists see current groups. */
  refresh(tokens: UpstreamTokens, sub: string, trace?: TraceSpan): Promise<UpstreamLogin>;
  /** RP-initiated logout URL when the provider has an end_session_endpoint. */
  endSessionUrl(idTokenHint: string | undefined, postLogoutRedirectUri: string): URL | undefined;
  close(): void;
}

/** The provider cannot be reached (discovery or a token call failed for network reasons). */
export class ProviderUnavailableError extends Error {
  readonly code = 'IDP_UNAVAILABLE';
  /**
   * Tokens a refresh obtained before a later call failed (userinfo, Microsoft Graph): the provider
   * may have rotated the refresh token already, so the old one is spent and these must be kept.
   */
  tokens: UpstreamTokens | undefined;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ProviderUnavailableError';
  }
}

/** The provider answered, but the login is not acceptable (bad state, invalid token, denied). */
export class LoginRejectedError extends Error {
  readonly code = 'LOGIN_REJECTED';
  /** What the sign-in page tells the user, when more useful than that the response failed checks. */
  readonly userMessage: string | undefined;
  constructor(
    message: string,
    readonly reason: string,
    options?: { cause?: unknown; userMessage?: string },
  ) {
    super(message, options);
    this.name = 'LoginRejectedError';
    this.userMessage = options?.userMessage;
  }
}
