import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CookieJar } from '../helpers/headless-login.js';
import { authorizeInBrowser, HeadlessOAuthProvider } from '../helpers/mcp-oauth-client.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';

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
