/**
 * Attacks on the OAuth facade, through the whole proxy (pipeline, Origin guard, CORS) with the dev
 * IdP and the sample MCP server behind it: forged consent, SSRF through metadata-document client
 * ids, oversized and broken registrations, foreign resources, tokens where they do not belong,
 * revocation, and the MCP session's DELETE.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  approveConsent,
  CookieJar,
  consentForm,
  type HtmlForm,
  loginThroughBrowserless,
} from '../helpers/headless-login.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';

const alice = { username: 'alice', password: 'alice-password' };
const REDIRECT_URI = 'http://127.0.0.1:39873/cb';
const FOREIGN_ORIGIN = 'https://evil.example';

interface Tokens {
  access_token: string;
  refresh_token: string;
}

describe('attacks on the OAuth facade, through the full proxy', () => {
  let stack: OidcStack;
  let resource: string;
  let clientId: string;

  beforeAll(async () => {
    stack = await startOidcStack({}, {}, startMcpServer);
    resource = `${stack.url}/mcp`;
    clientId = (await register({ client_name: 'Attack test client' })).client_id;
  });
  afterAll(async () => {
    await stack.close();
  });

  async function register(extra: Record<string, unknown> = {}): Promise<{ client_id: string }> {
    const res = await fetch(`${stack.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'none',
        ...extra,
      }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as { client_id: string };
  }

  function authorizeUrl(overrides: Record<string, string> = {}): { url: string; verifier: string } {
    const verifier = randomBytes(32).toString('base64url');
    const params = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT_URI,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      state: 'st-123',
      resource,
      scope: 'mcp',
      ...overrides,
    });
    return { url: `${stack.url}/authorize?${params}`, verifier };
  }

  /**
   * Signs alice in for a newly registered client (so nothing is remembered yet) and stops on the
   * consent page, returning its form and the browser's cookies.
   */
  async function reachConsent(): Promise<{ jar: CookieJar; form: HtmlForm }> {
    const fresh = await register({ client_name: 'Consent target' });
    const { url } = authorizeUrl({ client_id: fresh.client_id });
    const jar = new CookieJar();
    let consent: HtmlForm | undefined;
    await loginThroughBrowserless(url, alice, {
      jar,
      stopAt: (target) => target.href.startsWith(REDIRECT_URI),
      onPage: ({ forms }) => {
        consent = consentForm(forms);
        return undefined;
      },
    });
    expect(consent, 'the consent form').toBeDefined();
    return { jar, form: consent as HtmlForm };
  }

  function postConsent(jar: CookieJar, form: HtmlForm, decision: string, origin: string) {
    return fetch(form.action, {
      method: 'POST',
      redirect: 'manual',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        cookie: jar.get(form.action),
        origin,
      },
      body: new URLSearchParams({ ...form.fields, decision }),
    });
  }

  /** The whole flow for `clientId`, approving the consent page when it is shown. */
  async function obtainTokens(): Promise<Tokens> {
    const { url, verifier } = authorizeUrl();
    const result = await loginThroughBrowserless(url, alice, {
      stopAt: (target) => target.href.startsWith(REDIRECT_URI),
      onPage: approveConsent,
    });
    const callback = new URL(result.finalUrl);
    expect(callback.href.startsWith(REDIRECT_URI), result.finalUrl).toBe(true);
    const res = await token({
      grant_type: 'authorization_code',
      code: callback.searchParams.get('code') as string,
      redirect_uri: REDIRECT_URI,
      client_id: clientId,
      code_verifier: verifier,
    });
    expect(res.status).toBe(200);
    const tokens = (await res.json()) as Tokens;
    expect(tokens.refresh_token).toEqual(expect.any(String));
    return tokens;
  }

  function token(fields: Record<string, string>) {
    return fetch(`${stack.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields),
    });
  }

  const initialize = (accessToken: string, extra: Record<string, string> = {}) =>
    fetch(`${stack.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${accessToken}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...extra,
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: {},
          clientInfo: { name: 'attack-test', version: '1.0.0' },
        },
      }),
    });

  it('refuses a consent POST from a foreign Origin, without a code, and the request stays answerable', async () => {
    const { jar, form } = await reachConsent();
    for (const origin of [FOREIGN_ORIGIN, 'null']) {
      const forged = await postConsent(jar, form, 'approve', origin);
      expect(forged.status).toBe(403);
      expect(forged.headers.get('location')).toBeNull();
      expect(await forged.text()).not.toMatch(/code=/);
    }
    // The genuine page's own submission still works.
    const genuine = await postConsent(jar, form, 'approve', stack.url);
    expect(genuine.status).toBe(303);
    expect(new URL(genuine.headers.get('location') as string).searchParams.get('code')).toEqual(
      expect.any(String),
    );
  });

  it('refuses metadata-document client ids on loopback or link-local addresses without fetching them', async () => {
    const connections: Socket[] = [];
    const trap = createServer((socket) => {
      connections.push(socket);
      socket.destroy();
    });
    await new Promise<void>((resolve) => trap.listen(0, '127.0.0.1', resolve));
    const { port } = trap.address() as { port: number };
    try {
      for (const id of [
        `https://127.0.0.1:${port}/oauth/client.json`,
        'https://169.254.169.254/latest/meta-data/client.json',
        'https://[::ffff:7f00:1]/client.json',
      ]) {
        const res = await fetch(authorizeUrl({ client_id: id }).url, { redirect: 'manual' });
        expect(res.status, id).toBe(400);
        expect(res.headers.get('location')).toBeNull();
        expect(res.headers.get('content-type')).toMatch(/text\/html/);
        const page = await res.text();
        expect(page).toContain('Unknown application');
        expect(page).toContain('not a public internet address');
      }
      expect(connections).toHaveLength(0);
    } finally {
      await new Promise<void>((resolve) => trap.close(() => resolve()));
    }
  });

  it('answers an oversized or malformed registration with 400 invalid_client_metadata', async () => {
    const big = await fetch(`${stack.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        redirect_uris: [REDIRECT_URI],
        token_endpoint_auth_method: 'none',
        client_name: 'x'.repeat(70 * 1024),
      }),
    });
    expect(big.status).toBe(400);
    expect(await big.json()).toMatchObject({ error: 'invalid_client_metadata' });

    for (const body of ['{"redirect_uris": [', 'not json', '']) {
      const res = await fetch(`${stack.url}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      expect(res.status, body).toBe(400);
      expect(await res.json()).toMatchObject({ error: 'invalid_client_metadata' });
    }
  });

  it('refuses a resource that is not this proxy: invalid_target at /authorize and at /token', async () => {
    const { url } = authorizeUrl({ resource: 'https://other.example/mcp' });
    const res = await fetch(url, { redirect: 'manual' });
    expect(res.status).toBe(302);
    const location = new URL(res.headers.get('location') as string);
    expect(location.href.startsWith(REDIRECT_URI)).toBe(true);
    expect(location.searchParams.get('error')).toBe('invalid_target');
    expect(location.searchParams.get('state')).toBe('st-123');
    expect(location.searchParams.get('iss')).toBe(stack.url);

    const tokens = await obtainTokens();
    const refreshed = await token({
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token,
      client_id: clientId,
      resource: 'https://other.example/mcp',
    });
    expect(refreshed.status).toBe(400);
    expect(await refreshed.json()).toMatchObject({ error: 'invalid_target' });
  });

  it('accepts tokens only in the Authorization header, and not from a foreign Origin', async () => {
    const { access_token } = await obtainTokens();
    const ok = await initialize(access_token);
    expect(ok.status).toBe(200);
    await ok.body?.cancel();

    const foreign = await initialize(access_token, { origin: FOREIGN_ORIGIN });
    expect(foreign.status).toBe(403);
    expect(foreign.headers.get('access-control-allow-origin')).toBeNull();
    await foreign.body?.cancel();

    const inQuery = await fetch(`${stack.url}/mcp?access_token=${encodeURIComponent(access_token)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
    });
    expect(inQuery.status).toBe(401);
    const challenge = inQuery.headers.get('www-authenticate') ?? '';
    expect(challenge).toMatch(/^Bearer /);
    expect(challenge).toContain('resource_metadata=');
    expect(challenge).not.toContain('error=');
    await inQuery.body?.cancel();
  });

  it('stops refreshing once the refresh token is revoked', async () => {
    const tokens = await obtainTokens();
    const revoked = await fetch(`${stack.url}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        token: tokens.refresh_token,
        token_type_hint: 'refresh_token',
        client_id: clientId,
      }),
    });
    expect(revoked.status).toBe(200);
    const refreshed = await token({
      grant_type: 'refresh_token',
      refresh_token: tokens.refresh_token,
      client_id: clientId,
    });
    expect(refreshed.status).toBe(400);
    expect(await refreshed.json()).toMatchObject({ error: 'invalid_grant' });
  });

  it('passes the MCP session DELETE with the token, and refuses it without', async () => {
    const { access_token } = await obtainTokens();
    const init = await initialize(access_token);
    expect(init.status).toBe(200);
    await init.text();
    const sessionId = init.headers.get('mcp-session-id');
    expect(sessionId).toEqual(expect.any(String));
    const mcpHeaders = { 'mcp-session-id': sessionId as string, 'mcp-protocol-version': '2025-06-18' };

    const anonymous = await fetch(`${stack.url}/mcp`, { method: 'DELETE', headers: mcpHeaders });
    expect(anonymous.status).toBe(401);
    await anonymous.body?.cancel();

    const deleted = await fetch(`${stack.url}/mcp`, {
      method: 'DELETE',
      headers: { ...mcpHeaders, authorization: `Bearer ${access_token}` },
    });
    expect(deleted.status).toBe(200);
    await deleted.body?.cancel();

    // The session is gone at the backend.
    const after = await fetch(`${stack.url}/mcp`, {
      method: 'POST',
      headers: {
        ...mcpHeaders,
        authorization: `Bearer ${access_token}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }),
    });
    expect(after.status).toBe(404);
    await after.body?.cancel();
  });
});
