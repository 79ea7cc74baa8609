/**
 * Script injection into the monitoring page, in a real browser (Debian's Chromium through
 * playwright-core): every value an outsider controls — a dynamically registered client's name,
 * a user's name, email and groups at the identity provider, a login failure's details — is put
 * where the page shows it, and must come out as text. The page's own CSP would block an inline
 * handler, so a violation report counts as a failure as much as the handler running.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_DEV_USERS, type DevUser } from '../../src/demo/dev-idp.js';
import { launchChromium, watchedContext } from '../helpers/chromium.js';
import {
  approveConsent,
  CookieJar,
  loginThroughBrowserless,
  signInThroughProxy,
} from '../helpers/headless-login.js';
import { REDIRECT_URL } from '../helpers/mcp-oauth-client.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
/** Markup that sets a flag when run, in every context an injection could land in. */
const payload = (n: number): string =>
  `"'><img src=x onerror="window.__xss=${n}"><svg onload="window.__xss=${n}"></svg><script>window.__xss=${n}</script>`;

const hostile: DevUser = {
  username: 'hostile',
  password: 'hostile-password',
  email: `x${payload(1).replace(/[ "']/g, '')}@example.com`,
  name: payload(2),
  groups: [payload(3), 'mcp-users'],
};

describe('the monitoring page shows hostile values as text (Chromium)', () => {
  let stack: OidcStack;
  let browser: Browser;
  const clientName = payload(4);

  beforeAll(async () => {
    stack = await startOidcStack(
      { ADMIN_ENABLED: 'true', ADMIN_TOKEN },
      { users: [...DEFAULT_DEV_USERS, hostile] },
      startMcpServer,
    );
    // A client registered by anyone (RFC 7591), authorized by the hostile user, and used once.
    const registered = await fetch(`${stack.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: clientName,
        software_id: payload(5),
        redirect_uris: [REDIRECT_URL],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      }),
    });
    expect(registered.status).toBe(201);
    const clientId = String(((await registered.json()) as { client_id: string }).client_id);
    const jar = await signInThroughProxy(stack.url, hostile, new CookieJar());
    const verifier = randomBytes(32).toString('base64url');
    const authorize = new URL(`${stack.url}/authorize`);
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT_URL,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      state: 's',
      resource: `${stack.url}/mcp`,
      scope: 'mcp',
    }).toString();
    const result = await loginThroughBrowserless(authorize.href, hostile, {
      jar,
      stopAt: (target) => target.href.startsWith(REDIRECT_URL),
      onPage: approveConsent,
    });
    const code = new URL(result.finalUrl).searchParams.get('code') ?? '';
    const token = await fetch(`${stack.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        code_verifier: verifier,
        redirect_uri: REDIRECT_URL,
        client_id: clientId,
      }),
    });
    const { access_token: accessToken } = (await token.json()) as { access_token: string };
    const call = await fetch(`${stack.url}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${accessToken}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'user-agent': payload(6),
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: {
          protocolVersion: '2025-06-18',
          capabilities: {},
          clientInfo: { name: payload(7), version: '1' },
        },
      }),
    });
    expect(call.status).toBe(200);
    // A failed login whose details an attacker wrote (the provider's error in the callback).
    await fetch(
      `${stack.url}/callback?error=${encodeURIComponent(payload(8))}&state=${encodeURIComponent(payload(9))}`,
      {
        redirect: 'manual',
      },
    );
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  it('renders client names, user names, emails, groups and audit details as text, running nothing', async () => {
    const problems: string[] = [];
    const context = await watchedContext(browser, problems);
    const page = await context.newPage();
    await page.goto(`${stack.url}/admin`);
    await page.locator('#token-input').fill(ADMIN_TOKEN);
    await page.locator('#token-form button').click();
    await page.locator('#dashboard').waitFor({ state: 'visible' });

    const sessionRow = page.locator('#sessions tr', { hasText: 'mcp-users' });
    await sessionRow.waitFor();
    expect(await sessionRow.locator('td').first().textContent()).toBe(hostile.name);
    expect(await sessionRow.locator('td').nth(1).textContent()).toBe(hostile.email);
    expect(await sessionRow.locator('td').nth(2).textContent()).toBe(hostile.groups.join(', '));
    const clientRow = page.locator('#clients tr', { hasText: clientName });
    await clientRow.waitFor();
    expect(await clientRow.locator('td').first().textContent()).toBe(clientName);
    expect(await page.locator('#tokens').textContent()).toContain(clientName);
    // The audit table names the client of the first MCP call by its name (once the clients
    // table has told the page the names, at the next poll).
    await page.locator('#audit tr', { hasText: 'mcp_first_call' }).filter({ hasText: clientName }).waitFor();
    expect(await page.locator('#audit').textContent()).toContain('login_failure');

    // Not one element was made from any of it, and nothing ran or was blocked from running.
    expect(await page.locator('#dashboard img, #dashboard svg, #dashboard script').count()).toBe(0);
    expect(await page.locator('body script').count()).toBe(0);
    expect(await page.evaluate(() => (window as { __xss?: number }).__xss)).toBeUndefined();
    expect(problems).toEqual([]);
    await context.close();
  });
});
