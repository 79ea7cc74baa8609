import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type {
  OAuthClientInformationFull,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import { approveConsent, CookieJar, loginThroughBrowserless } from './headless-login.js';

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
    onPage: approveConsent,
  });
  return new URL(result.finalUrl);
}

/** An official SDK client that went through the whole authorization (DCR, login, consent, PKCE). */
export interface ConnectedMcpClient {
  client: Client;
  provider: HeadlessOAuthProvider;
  /** The browser that logged in: it holds the user's proxy session cookie. */
  jar: CookieJar;
  clientId: string;
  accessToken: string;
  refreshToken: string;
}

/**
 * Connects the SDK client to `proxyUrl/mcp` as `user`: the first attempt gets 401 and starts
 * discovery and registration, the browser part runs headlessly, and the second attempt connects.
 */
export async function connectMcpClient(
  proxyUrl: string,
  user: { username: string; password: string } = alice,
): Promise<ConnectedMcpClient> {
  const endpoint = new URL(`${proxyUrl}/mcp`);
  const provider = new HeadlessOAuthProvider();
  const probe = new Client({ name: 'mcp-oidc-proxy-tests', version: '1.0.0' });
  const unauthorized = await probe
    .connect(new StreamableHTTPClientTransport(endpoint, { authProvider: provider }))
    .then(
      () => false,
      (err: Error) => /Unauthorized/i.test(err.message),
    );
  if (!unauthorized || !provider.authorizationUrl) {
    throw new Error('the MCP endpoint did not ask the SDK client to authorize');
  }
  const jar = new CookieJar();
  const callback = await authorizeInBrowser(provider.authorizationUrl, jar, user);
  const code = callback.searchParams.get('code');
  if (!code) throw new Error(`the authorization ended without a code: ${callback.href}`);
  await new StreamableHTTPClientTransport(endpoint, { authProvider: provider }).finishAuth(code);
  const client = new Client({ name: 'mcp-oidc-proxy-tests', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(endpoint, { authProvider: provider }));
  return {
    client,
    provider,
    jar,
    clientId: provider.info?.client_id ?? '',
    accessToken: provider.saved?.access_token ?? '',
    refreshToken: provider.saved?.refresh_token ?? '',
  };
}
