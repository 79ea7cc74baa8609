import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type {
  OAuthClientInformationFull,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import { approveConsent, CookieJar, loginThroughBrowserless } from './headless-login.js';

/** An MCP `initialize` POST carrying `accessToken` as a bearer token, as a client would send it. */
export function initializeWithBearer(url: string, accessToken: string): Promise<Response> {
  return fetch(`${url}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${accessToken}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
}

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
  return (await walkAuthorization(url, jar, user)).callback;
}

/** Where the browser part of an authorization ended, and the requests it took to get there. */
export interface AuthorizationWalk {
  /** The client's redirect URL, with `code` or `error`. */
  callback: URL;
  /** Every URL requested, in order ("POST " prefixed for form submissions). */
  visited: string[];
}

/**
 * The browser part of an authorization: signs the user in at the IdP when the browser has no
 * proxy session yet, approves the consent page when one is shown, and stops at the redirect
 * back to the client (with a code, or an error).
 */
export async function walkAuthorization(
  url: URL,
  jar: CookieJar,
  user: { username: string; password: string } = alice,
): Promise<AuthorizationWalk> {
  const result = await loginThroughBrowserless(url.href, user, {
    jar,
    stopAt: (target) => target.href.startsWith(REDIRECT_URL),
    onPage: approveConsent,
  });
  return { callback: new URL(result.finalUrl), visited: result.visited };
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
  /** The browser's requests during the authorization (IdP login, consent page: or not). */
  visited: string[];
}

export interface ConnectOptions {
  /** The MCP endpoint's path on the proxy; `/mcp` unless told. */
  path?: string;
  /** A browser that may already hold a proxy session (a second server behind the same login). */
  jar?: CookieJar;
  /** A registration the client already has (no DCR then), e.g. one made for another server. */
  clientInformation?: OAuthClientInformationFull;
}

/**
 * The SDK client's first attempt at `endpoint`: refused with 401, it discovers the protected
 * resource and the authorization server, registers unless it already is, and asks the user to
 * authorize. Returns the authorization URL it would open in a browser.
 */
export async function requestAuthorization(endpoint: URL, provider: HeadlessOAuthProvider): Promise<URL> {
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
  return provider.authorizationUrl;
}

/**
 * Connects the SDK client to `proxyUrl` + path (`/mcp`) as `user`: the first attempt gets 401
 * and starts discovery and registration, the browser part runs headlessly, and the second
 * attempt connects.
 */
export async function connectMcpClient(
  proxyUrl: string,
  user: { username: string; password: string } = alice,
  { path = '/mcp', jar = new CookieJar(), clientInformation }: ConnectOptions = {},
): Promise<ConnectedMcpClient> {
  const endpoint = new URL(`${proxyUrl}${path}`);
  const provider = new HeadlessOAuthProvider();
  provider.info = clientInformation;
  const { callback, visited } = await walkAuthorization(
    await requestAuthorization(endpoint, provider),
    jar,
    user,
  );
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
    visited,
  };
}
