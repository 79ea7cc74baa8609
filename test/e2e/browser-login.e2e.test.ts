/**
 * The browser login in a real browser: Debian's Chromium, driven by playwright-core, against the
 * dev OIDC provider, an echo backend and the proxy in oidc mode (test/helpers/oidc-stack.ts).
 *
 * Needs Chromium at /usr/bin/chromium (`apt-get install -y --no-install-recommends chromium`), or
 * another Chromium named by CHROMIUM_PATH. Without it the suite fails and says so: it is part of
 * `npm test` and of CI (.ci/run installs the package).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page, Response } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { launchChromium, watchedContext } from '../helpers/chromium.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';

const SESSION_COOKIE = 'mcp_oidc_proxy';

const alice = { username: 'alice', password: 'alice-password' };
const bob = { username: 'bob', password: 'bob-password' };

interface Echo {
  url: string;
  headers: Record<string, string | undefined>;
}

describe('browser login in a real browser (Chromium)', () => {
  let stack: OidcStack;
  let browser: Browser;
  let shots: string;
  /** Content-Security-Policy violations and uncaught page errors, from every page of the current test. */
  const problems: string[] = [];
  beforeEach(() => {
    problems.length = 0;
  });

  beforeAll(async () => {
    shots = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-e2e-'));
    stack = await startOidcStack({ ALLOWED_DOMAINS: 'example.com' });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
    if (shots) rmSync(shots, { recursive: true, force: true });
  });

  function newContext(): Promise<BrowserContext> {
    return watchedContext(browser, problems);
  }

  const onProxy = (path: string) => (url: URL) =>
    url.origin === stack.url && `${url.pathname}${url.search}` === path;
  const onIdpLogin = (url: URL) =>
    url.origin === stack.idp.issuer && url.pathname.startsWith('/interaction/');

  /** Starts at `path` on the proxy, expects the IdP's form, signs in, returns the page's last response. */
  async function signIn(page: Page, path: string, user: { username: string; password: string }) {
    await page.goto(`${stack.url}${path}`);
    await page.waitForURL(onIdpLogin);
    await page.locator('input[name="username"]').fill(user.username);
    await page.locator('input[name="password"]').fill(user.password);
    const landed = page.waitForResponse(
      (r) => r.request().isNavigationRequest() && r.request().frame() === page.mainFrame() && !isRedirect(r),
    );
    await page.locator('#login').click();
    return landed.catch((err: Error) => {
      throw new Error(
        `${err.message}\n  page at: ${page.url()}\n  CSP violations and page errors: ${problems.join(' | ') || 'none'}`,
      );
    });
  }

  const isRedirect = (r: Response) => r.status() >= 300 && r.status() < 400;

  it('signs alice in through the IdP form and lands on the page she asked for, with a safe cookie', async () => {
    const context = await newContext();
    const page = await context.newPage();

    const landed = await signIn(page, '/some/page?x=1', alice);
    await page.waitForURL(onProxy('/some/page?x=1'));
    expect(landed.url()).toBe(`${stack.url}/some/page?x=1`);
    expect(landed.status()).toBe(200);
    const echo = (await landed.json()) as Echo;
    expect(echo.url).toBe('/some/page?x=1');
    expect(echo.headers['x-forwarded-user']).toBe('alice');
    expect(echo.headers['x-forwarded-email']).toBe('alice@example.com');
    expect(echo.headers.cookie ?? '').not.toContain(SESSION_COOKIE);

    const cookies = await context.cookies(stack.url);
    const session = cookies.find((c) => c.name === SESSION_COOKIE);
    expect(session, `cookies: ${cookies.map((c) => c.name).join(', ')}`).toBeDefined();
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/', secure: false });
    // HttpOnly as the page's scripts see it.
    expect(await page.evaluate(() => document.cookie)).not.toContain(SESSION_COOKIE);

    // A second tab in the same browser is signed in already: no redirect, no login form.
    const other = await context.newPage();
    const second = await other.goto(`${stack.url}/other`);
    expect(second).not.toBeNull();
    expect(second!.status()).toBe(200);
    expect(second!.request().redirectedFrom()).toBeNull();
    expect(other.url()).toBe(`${stack.url}/other`);
    const echo2 = (await second!.json()) as Echo;
    expect(echo2.url).toBe('/other');
    expect(echo2.headers['x-forwarded-user']).toBe('alice');

    expect(problems).toEqual([]);
    await context.close();
  });

  it('shows bob, from another domain, the Access denied page with status 403', async () => {
    const context = await newContext();
    const page = await context.newPage();

    const landed = await signIn(page, '/private', bob);
    expect(new URL(landed.url()).origin).toBe(stack.url);
    expect(landed.status()).toBe(403);
    expect(await page.locator('h1').textContent()).toBe('Access denied');
    expect(await page.locator('body').textContent()).toContain('bob@other.org');
    expect((await context.cookies(stack.url)).map((c) => c.name)).not.toContain(SESSION_COOKIE);

    const file = join(shots, 'access-denied.png');
    await page.screenshot({ path: file, fullPage: true });
    const png = readFileSync(file);
    expect(png.length).toBeGreaterThan(1000);
    expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));

    expect(problems).toEqual([]);
    await context.close();
  });

  it('signs out through the IdP, after which the next visit asks to sign in again', async () => {
    const context = await newContext();
    const page = await context.newPage();
    const landed = await signIn(page, '/some/page', alice);
    expect(landed.status()).toBe(200);
    expect((await context.cookies(stack.url)).map((c) => c.name)).toContain(SESSION_COOKIE);

    await page.goto(`${stack.url}/logout`);
    if (new URL(page.url()).origin === stack.idp.issuer) {
      // The IdP's end-session confirmation.
      await page.locator('#logout').click();
    }
    await page.waitForURL((url) => url.origin === stack.url && url.pathname === '/logout');
    expect(await page.locator('h1').textContent()).toBe('Signed out');
    expect((await context.cookies(stack.url)).map((c) => c.name)).not.toContain(SESSION_COOKIE);

    // Neither the proxy nor the IdP remembers alice: the login form comes back.
    await page.goto(`${stack.url}/some/page`);
    await page.waitForURL(onIdpLogin);
    await page.locator('#login').waitFor({ state: 'visible' });
    expect(await page.locator('input[name="username"]').inputValue()).toBe('');

    expect(problems).toEqual([]);
    await context.close();
  });
});
