import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { ConfigError } from '../../src/config/types.js';
import {
  approveConsent,
  CookieJar,
  consentForm,
  loginThroughBrowserless,
} from '../helpers/headless-login.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';

const CALLBACK = 'https://claude.ai/api/mcp/auth_callback';
const SECRET = 'claude-client-secret-for-tests';
const alice = { username: 'alice', password: 'alice-password' };

describe('pre-registered MCP clients with dynamic registration off', () => {
  let stack: OidcStack;

  beforeAll(async () => {
    stack = await startOidcStack({
      MCP_DCR_ENABLED: 'false',
      MCP_CLIENTS: JSON.stringify([
        { client_id: 'claude', client_secret: SECRET, redirect_uris: [CALLBACK], name: 'Claude' },
      ]),
    });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('advertises no registration endpoint and refuses /register', async () => {
    const meta = (await (
      await fetch(`${stack.url}/.well-known/oauth-authorization-server`)
    ).json()) as Record<string, unknown>;
    expect(meta.registration_endpoint).toBeUndefined();
    const res = await fetch(`${stack.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ redirect_uris: ['http://127.0.0.1:9999/cb'], client_name: 'Intruder' }),
    });
    expect(res.status).toBe(403);
    expect(((await res.json()) as { error: string }).error).toBe('access_denied');
  });

  it('lets the listed client through the whole flow with its secret (client_secret_basic)', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const authorize = new URL(`${stack.url}/authorize`);
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: 'claude',
      redirect_uri: CALLBACK,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      state: 'st-1',
      scope: 'mcp',
    }).toString();
    const result = await loginThroughBrowserless(authorize.href, alice, {
      jar: new CookieJar(),
      stopAt: (url) => url.href.startsWith(CALLBACK),
      onPage: (page) => {
        if (consentForm(page.forms)) expect(page.body).toContain('Claude');
        return approveConsent(page);
      },
    });
    const code = new URL(result.finalUrl).searchParams.get('code') as string;
    expect(code).toBeTruthy();

    const token = async (secret: string): Promise<Response> =>
      fetch(`${stack.url}/token`, {
        method: 'POST',
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`claude:${secret}`).toString('base64')}`,
        },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code,
          redirect_uri: CALLBACK,
          code_verifier: verifier,
        }),
      });
    const wrong = await token('not-the-secret-at-all');
    expect(wrong.status).toBe(401);
    const ok = await token(SECRET);
    expect(ok.status).toBe(200);
    const tokens = (await ok.json()) as { access_token: string };
    const mcp = await fetch(`${stack.url}/mcp`, {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    expect(mcp.status).toBe(200);
    const echo = (await mcp.json()) as { headers: Record<string, string> };
    expect(echo.headers['x-forwarded-user']).toBe('alice');
    expect(echo.headers.authorization).toBeUndefined();
  });

  it('reports a bad MCP_CLIENTS entry by name at start, never echoing secrets', () => {
    try {
      loadConfig({
        env: {
          AUTH_MODE: 'bypass',
          MCP_CLIENTS: JSON.stringify([
            { client_id: 'a', client_secret: 'short', redirect_uris: [CALLBACK] },
            { client_id: 'b', redirect_uris: ['http://evil.example/cb'] },
            { redirect_uris: [CALLBACK] },
          ]),
        },
      });
      expect.unreachable('bad MCP_CLIENTS must be refused');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const text = (err as ConfigError).message;
      expect(text).toContain('entry 1 (a): client_secret must be a string of at least 16 characters');
      expect(text).toContain('entry 2 (b): redirect URI http://evil.example/cb');
      expect(text).toContain('entry 3: client_id must be a non-empty string');
      expect(text).not.toContain('short');
    }
  });
});
