import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type {
  OAuthClientInformationFull,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import { type CookieJar, loginThroughBrowserless } from './headless-login.js';

export const alice = { username: 'alice', password: 'alice-password' };
export const REDIRECT_URL = 'http://127.0.0.1:39871/oauth/callback';

/** The official SDK's OAuth client side, with the browser part driven headlessly. */
export class HeadlessOAuthProvider implements OAuthClientProvider {
  info: OAuthClientInformationFull | undefined;
  saved: OAuthTokens | undefined;
  verifier = '';
  authorizationUrl: URL | undefined;

  get redirectUrl(): string {
    return REDIRECT_URL;
  }

  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: 'SDK test client',
      redirect_uris: [REDIRECT_URL],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }

  clientInformation(): OAuthClientInformationFull | undefined {
    return this.info;
  }
  saveClientInformation(info: OAuthClientInformationFull): void {
    this.info = info;
  }
  tokens(): OAuthTokens | undefined {
    return this.saved;
  }
  saveTokens(tokens: OAuthTokens): void {
    this.saved = tokens;
  }
  redirectToAuthorization(url: URL): void {
    this.authorizationUrl = url;
  }
  saveCodeVerifier(verifier: string): void {
    this.verifier = verifier;
  }
  codeVerifier(): string {
    return this.verifier;
  }
}

/** Logs the user in at the IdP, approves the proxy's consent page, and returns the callback URL. */
export async function authorizeInBrowser(
  url: URL,
  jar: CookieJar,
  user: { username: string; password: string } = alice,
): Promise<URL> {
  const result = await loginThroughBrowserless(url.href, user, {
    jar,
    stopAt: (target) => target.href.startsWith(REDIRECT_URL),
    onPage: ({ forms }) => {
      const consent = forms.find((f) => new URL(f.action).pathname === '/authorize');
      return consent
        ? { action: consent.action, fields: { ...consent.fields, decision: 'approve' } }
        : undefined;
    },
  });
  return new URL(result.finalUrl);
}
