/**
 * The proxy's consent page (OAuth 2.1 authorization server for MCP clients) in a real browser:
 * Debian's Chromium driven by playwright-core, the dev OIDC provider, and a small loopback server
 * standing in for the MCP client's redirect URI. Needs Chromium as browser-login.e2e.test.ts does.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { launchChromium, WAIT_MS, watchedContext } from '../helpers/chromium.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type Listening, listen } from '../helpers/servers.js';

const alice = { username: 'alice', password: 'alice-password' };

/** The MCP client's side: its redirect URI (/cb) records callbacks; /frame embeds a URL. */
interface ClientSite extends Listening {
  /** Resolves with the next callback URL received at /cb. */
  nextCallback(): Promise<URL>;
  callbacks: URL[];
}

async function startClientSite(): Promise<ClientSite> {
  const callbacks: URL[] = [];
  let waiters: Array<(url: URL) => void> = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/cb') {
      callbacks.push(url);
      const ready = waiters;
      waiters = [];
      for (const resolve of ready) resolve(url);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!doctype html><title>Callback</title><h1>Client callback</h1>');
      return;
    }
    if (url.pathname === '/frame') {
      const src = url.searchParams.get('src') ?? '';
      const escaped = src.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(`<!doctype html><title>Framer</title><h1>Framer</h1><iframe id="f" src="${escaped}"></iframe>`);
      return;
    }
    res.writeHead(404).end();
  });
  const listening = await listen(server);
  return {
    ...listening,
    callbacks,
    nextCallback: () =>
      new Promise<URL>((resolve) => {
        waiters.push(resolve);
      }),
  };
}

interface Registered {
  client_id: string;
  client_name: string;
}

interface Authorization {
  url: string;
  state: string;
  verifier: string;
}

describe('the consent page in a real browser (Chromium)', () => {
  let stack: OidcStack;
  let site: ClientSite;
  let browser: Browser;
  let shots: string;
  let redirectUri: string;
  const problems: string[] = [];
  beforeEach(() => {
    problems.length = 0;
  });

  beforeAll(async () => {
    shots = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-consent-'));
    stack = await startOidcStack();
    site = await startClientSite();
    redirectUri = `${site.url}/cb`;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await site?.close();
    await stack?.close();
    if (shots) rmSync(shots, { recursive: true, force: true });
  });

  function newContext(): Promise<BrowserContext> {
    return watchedContext(browser, problems);
  }

  async function register(name: string): Promise<Registered> {
    const res = await fetch(`${stack.url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: name,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
      }),
    });
    expect(res.status).toBe(201);
    return (await res.json()) as Registered;
  }

  function authorization(clientId: string): Authorization {
    const verifier = randomBytes(32).toString('base64url');
    const state = randomBytes(16).toString('base64url');
    const url = new URL(`${stack.url}/authorize`);
    url.search = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: redirectUri,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      state,
      resource: `${stack.url}/mcp`,
      scope: 'mcp',
    }).toString();
    return { url: url.href, state, verifier };
  }

  const onCallback = (u: URL) => u.origin === site.url && u.pathname === '/cb';

  /** Clicks a consent button and waits for the browser to reach the client's redirect URI. */
  async function decide(page: Page, decision: 'approve' | 'deny'): Promise<void> {
    await page.locator(`button[value="${decision}"]`).click();
    await page.waitForURL(onCallback).catch((err: Error) => {
      throw new Error(
        `${err.message}\n  page at: ${page.url()}\n  problems: ${problems.join(' | ') || 'none'}`,
      );
    });
  }

  const isConsentPage = (page: Page) => (r: Response) =>
    r.request().frame() === page.mainFrame() &&
    r.request().method() === 'GET' &&
    new URL(r.url()).origin === stack.url &&
    new URL(r.url()).pathname === '/authorize' &&
    r.status() === 200;

  /** Opens `url` (signed out), signs in at the IdP, and returns the consent page's response. */
  async function signInToConsent(page: Page, url: string): Promise<Response> {
    await page.goto(url);
    await page.waitForURL((u) => u.origin === stack.idp.issuer && u.pathname.startsWith('/interaction/'));
    await page.locator('input[name="username"]').fill(alice.username);
    await page.locator('input[name="password"]').fill(alice.password);
    const consent = page.waitForResponse(isConsentPage(page));
    await page.locator('#login').click();
    return consent.catch((err: Error) => {
      throw new Error(
        `${err.message}\n  page at: ${page.url()}\n  problems: ${problems.join(' | ') || 'none'}`,
      );
    });
  }

  async function exchange(clientId: string, code: string, verifier: string) {
    return fetch(`${stack.url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: redirectUri,
        client_id: clientId,
        code_verifier: verifier,
        resource: `${stack.url}/mcp`,
      }),
    });
  }

  it('asks alice, who approves; the client gets code, state and iss, and tokens; the approval is remembered', async () => {
    const client = await register('Consent E2E Client');
    const context = await newContext();
    const page = await context.newPage();
    const first = authorization(client.client_id);

    const consent = await signInToConsent(page, first.url);
    const headers = consent.headers();
    expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(headers['x-frame-options']).toBe('DENY');
    expect(headers['cache-control']).toContain('no-store');
    // Under no-referrer Chromium posts the form with `Origin: null`, which the proxy refuses.
    expect(headers['referrer-policy']).toBe('same-origin');
    expect(await page.locator('h1').textContent()).toContain('Consent E2E Client');
    const body = (await page.locator('body').textContent()) ?? '';
    expect(body).toContain(new URL(redirectUri).host);
    expect(body).toContain('alice@example.com');

    const file = join(shots, 'consent.png');
    await page.screenshot({ path: file, fullPage: true });
    const png = readFileSync(file);
    expect(png.length).toBeGreaterThan(1000);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
    rmSync(file);

    // The form post and its 303 to another origin must pass the page's form-action.
    const called = site.nextCallback();
    await decide(page, 'approve');
    const callback = await called;
    expect(callback.searchParams.get('state')).toBe(first.state);
    expect(callback.searchParams.get('iss')).toBe(stack.url);
    expect(callback.searchParams.get('error')).toBeNull();
    const code = callback.searchParams.get('code');
    expect(code).toEqual(expect.any(String));

    const tokenRes = await exchange(client.client_id, code as string, first.verifier);
    expect(tokenRes.status).toBe(200);
    const tokens = (await tokenRes.json()) as {
      access_token: string;
      refresh_token: string;
      token_type: string;
    };
    expect(tokens.token_type).toMatch(/^bearer$/i);
    expect(tokens.access_token.split('.')).toHaveLength(3);
    expect(tokens.refresh_token).toEqual(expect.any(String));
    const mcp = await fetch(`${stack.url}/mcp`, {
      headers: { authorization: `Bearer ${tokens.access_token}` },
    });
    expect(mcp.status).toBe(200);

    // A second authorization for the same client goes straight back: no consent page.
    const second = authorization(client.client_id);
    const shownAgain: string[] = [];
    page.on('response', (r) => {
      if (isConsentPage(page)(r)) shownAgain.push(r.url());
    });
    const calledAgain = site.nextCallback();
    const landed = await page.goto(second.url);
    const again = await calledAgain;
    expect(landed?.url()).toMatch(new RegExp(`^${site.url}/cb\\?`));
    expect(shownAgain).toEqual([]);
    expect(again.searchParams.get('state')).toBe(second.state);
    const secondCode = again.searchParams.get('code') as string;
    expect(secondCode).not.toBe(code);
    expect((await exchange(client.client_id, secondCode, second.verifier)).status).toBe(200);

    expect(problems).toEqual([]);
    await context.close();
  });

  it('does not render /authorize inside a frame on another origin, and Deny returns access_denied', async () => {
    const client = await register('Framed Client');
    const context = await newContext();
    const page = await context.newPage();

    // Signed in first, through a consent page that is then denied.
    const denied = authorization(client.client_id);
    await signInToConsent(page, denied.url);
    const called = site.nextCallback();
    await decide(page, 'deny');
    const callback = await called;
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('state')).toBe(denied.state);
    expect(callback.searchParams.get('iss')).toBe(stack.url);
    expect(callback.searchParams.get('code')).toBeNull();
    expect(problems).toEqual([]);

    // Not approved, so the consent page is what the frame would show: the browser refuses.
    const framed = authorization(client.client_id);
    const frameResponse = page.waitForResponse(
      (r) => r.request().frame() !== page.mainFrame() && new URL(r.url()).pathname === '/authorize',
    );
    const refused = page.waitForEvent('console', {
      predicate: (msg) => /frame-ancestors|X-Frame-Options/i.test(msg.text()),
      timeout: WAIT_MS,
    });
    await page.goto(`${site.url}/frame?src=${encodeURIComponent(framed.url)}`);
    const response = await frameResponse;
    expect(response.status()).toBe(200);
    expect(response.headers()['content-security-policy']).toContain("frame-ancestors 'none'");
    await refused;
    const frame = page.frames().find((f) => f !== page.mainFrame());
    expect(frame).toBeDefined();
    expect(frame!.url()).not.toBe(framed.url);
    expect(await frame!.locator('button[value="approve"]').count()).toBe(0);
    expect(site.callbacks.filter((u) => u.searchParams.get('state') === framed.state)).toEqual([]);
    await context.close();
  });
});
