import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type {
  OAuthClientInformationFull,
  OAuthClientMetadata,
  OAuthTokens,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';

const alice = { username: 'alice', password: 'alice-password' };
const REDIRECT_URL = 'http://127.0.0.1:39871/oauth/callback';

/** The official SDK's OAuth client side, driving the browser part headlessly. */
class HeadlessOAuthProvider implements OAuthClientProvider {
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

/** Logs the user in at the IdP, approves the proxy's consent page, and returns the code. */
async function authorizeInBrowser(url: URL, jar: CookieJar): Promise<URL> {
  const result = await loginThroughBrowserless(url.href, alice, {
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

describe('the official MCP SDK client logs in through the proxy (OAuth 2.1, DCR, PKCE)', () => {
  let stack: OidcStack;

  beforeAll(async () => {
    stack = await startOidcStack({}, {}, startMcpServer);
  });
  afterAll(async () => {
    await stack.close();
  });

  it('discovers, registers, authorizes, calls tools with streamed progress, refreshes and deletes the session', async () => {
    const provider = new HeadlessOAuthProvider();
    const first = new StreamableHTTPClientTransport(new URL(`${stack.url}/mcp`), { authProvider: provider });
    const client = new Client({ name: 'sdk-test', version: '1.0.0' });
    await expect(client.connect(first)).rejects.toThrow(/Unauthorized/i);
    expect(provider.info?.client_id).toEqual(expect.any(String));
    const authUrl = provider.authorizationUrl as URL;
    expect(authUrl.origin).toBe(stack.url);
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authUrl.searchParams.get('resource')).toBe(`${stack.url}/mcp`);

    const jar = new CookieJar();
    const callback = await authorizeInBrowser(authUrl, jar);
    expect(callback.searchParams.get('iss')).toBe(stack.url);
    expect(callback.searchParams.get('state')).toBe(authUrl.searchParams.get('state'));
    await first.finishAuth(callback.searchParams.get('code') as string);
    expect(provider.saved?.access_token).toEqual(expect.any(String));
    expect(provider.saved?.refresh_token).toEqual(expect.any(String));

    const transport = new StreamableHTTPClientTransport(new URL(`${stack.url}/mcp`), {
      authProvider: provider,
    });
    const connected = new Client({ name: 'sdk-test', version: '1.0.0' });
    await connected.connect(transport);
    const whoami = await connected.callTool({ name: 'whoami', arguments: {} });
    expect(JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}')).toMatchObject({
      user: 'alice',
      email: 'alice@example.com',
    });
    const progress: number[] = [];
    const counted = await connected.callTool({ name: 'count', arguments: { n: 3, delayMs: 50 } }, undefined, {
      onprogress: (p) => progress.push(p.progress),
    });
    expect(counted.content).toEqual([{ type: 'text', text: 'counted to 3' }]);
    expect(progress).toEqual([1, 2, 3]);

    // The backend never sees the client's token.
    const seen = stack.backend as unknown as { received: Array<Record<string, string>> };
    expect(seen.received.some((h) => h.authorization !== undefined)).toBe(false);

    // Refresh with rotation: the old refresh token stops working, the new one works.
    const oldRefresh = provider.saved?.refresh_token as string;
    const refreshed = await fetch(`${stack.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: oldRefresh,
        client_id: provider.info?.client_id as string,
      }),
    });
    expect(refreshed.status).toBe(200);
    expect(refreshed.headers.get('cache-control')).toMatch(/no-store/);
    const rotated = (await refreshed.json()) as { access_token: string; refresh_token: string };
    expect(rotated.refresh_token).not.toBe(oldRefresh);

    // Each step counts, labelled by the client's registered name.
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    for (const event of ['client_registered', 'consent_granted', 'token_issued', 'token_refreshed']) {
      expect(metrics, event).toMatch(
        new RegExp(`mcp_oidc_proxy_auth_events_total\\{event="${event}",client="SDK test client"\\} 1`),
      );
    }
    expect(metrics).toMatch(/mcp_oidc_proxy_auth_events_total\{event="login_success",client="browser"\} 1/);

    await transport.terminateSession();
    await connected.close();
  });
});
