/**
 * The monitoring page (ADMIN_ENABLED) in a real browser: Debian's Chromium driven by
 * playwright-core, against the dev OIDC provider, the proxy and the sample MCP server. Traffic and
 * the users whose sessions the page lists come from the headless login and the official MCP SDK
 * client. Needs Chromium as the other browser tests do.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_DEV_USERS, type DevUser } from '../../src/demo/dev-idp.js';
import { quoteCommand } from '../../src/stdio/command.js';
import { launchChromium, watchedContext } from '../helpers/chromium.js';
import { signInThroughProxy } from '../helpers/headless-login.js';
import { type ConnectedMcpClient, connectMcpClient } from '../helpers/mcp-oauth-client.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { probeCommand } from '../helpers/stdio-bridge.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
/** A display name that would run script if the page ever put it in as markup. */
const XSS_NAME = '<img src=x onerror="window.__xss=1">';
const mallory: DevUser = {
  username: 'mallory',
  password: 'mallory-password',
  email: 'mallory@example.com',
  name: XSS_NAME,
  groups: ['<b>group</b>'],
};
const erin: DevUser = {
  username: 'erin',
  password: 'erin-password',
  email: 'erin@example.com',
  name: 'Erin Browser',
  groups: ['mcp-users'],
};
const alice = { username: 'alice', password: 'alice-password' };

describe('the monitoring page in a real browser (Chromium)', () => {
  let stack: OidcStack;
  let browser: Browser;
  let shots: string;
  let mcp: ConnectedMcpClient;
  const problems: string[] = [];
  beforeEach(() => {
    problems.length = 0;
  });

  beforeAll(async () => {
    shots = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-admin-'));
    stack = await startOidcStack(
      { ADMIN_ENABLED: 'true', ADMIN_TOKEN, ADMIN_GROUPS: 'engineering' },
      { users: [...DEFAULT_DEV_USERS, mallory, erin] },
      startMcpServer,
    );
    // Something to show: a session with a hostile name, and an MCP client's whole login funnel.
    await signInThroughProxy(stack.url, mallory);
    mcp = await connectMcpClient(stack.url, { username: 'bob', password: 'bob-password' });
    await mcp.client.callTool({ name: 'whoami', arguments: {} });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await mcp?.client.close();
    await stack?.close();
    if (shots && !process.env.KEEP_ADMIN_SHOTS) rmSync(shots, { recursive: true, force: true });
  });

  /** A context whose pages also report failed requests and error answers of the proxy. */
  async function strictContext(): Promise<BrowserContext> {
    const context = await watchedContext(browser, problems);
    context.on('requestfailed', (request) =>
      problems.push(`failed: ${request.url()} ${request.failure()?.errorText}`),
    );
    context.on('response', (response) => {
      if (response.url().startsWith(stack.url) && response.status() >= 400) {
        problems.push(`HTTP ${response.status()}: ${response.url()}`);
      }
    });
    return context;
  }

  const numberIn = async (page: Page, selector: string): Promise<number> =>
    Number(await page.locator(selector).textContent());

  async function signInAsGroupAdmin(page: Page): Promise<void> {
    await page.goto(`${stack.url}/login?rd=%2Fadmin`);
    await page.waitForURL((u) => u.origin === stack.idp.issuer && u.pathname.startsWith('/interaction/'));
    await page.locator('input[name="username"]').fill(alice.username);
    await page.locator('input[name="password"]').fill(alice.password);
    await page.locator('#login').click();
    await page.waitForURL(`${stack.url}/admin`);
    await page.locator('#dashboard').waitFor({ state: 'visible' });
  }

  it('shows live figures, the funnel, audit events and sessions to a member of ADMIN_GROUPS, with no CSP violation or failed request', async () => {
    const context = await strictContext();
    const page = await context.newPage();
    await signInAsGroupAdmin(page);
    expect(await page.locator('#whoami').textContent()).toBe('signed in as alice@example.com');

    // Live numbers: traffic from elsewhere moves the total and, over the poll window, the rate.
    await page.waitForFunction(() => document.querySelector('#requests-total')?.textContent !== '0');
    const before = await numberIn(page, '#requests-total');
    for (let i = 0; i < 20; i++) await fetch(`${stack.url}/health`);
    await page.waitForFunction(
      (n) => Number(document.querySelector('#requests-total')?.textContent) >= n,
      before + 20,
    );
    await page.waitForFunction(() => Number(document.querySelector('#rps')?.textContent) > 0);
    expect(await page.locator('#p50').textContent()).toMatch(/^\d+(\.\d+)? ms$/);
    expect(await page.locator('#upstream-status').textContent()).toBe('healthy');
    expect(await page.locator('#breaker').textContent()).toBe('closed');
    // One HTTP server: a row of its own, no process table.
    expect(await page.locator('#servers tr[data-server="default"] > td').nth(3).textContent()).toBe(
      'healthy',
    );
    expect(await page.locator('#servers tr.children').count()).toBe(0);
    expect(await page.locator('#store-kind').textContent()).toBe('memory');
    expect(await numberIn(page, '#sessions-active')).toBeGreaterThanOrEqual(3);
    expect(await numberIn(page, '#streams-sse')).toBeGreaterThanOrEqual(0);

    // The funnel: every step of the SDK client's login counted.
    for (const step of [
      'challenge',
      'client_registered',
      'consent_granted',
      'login_success',
      'token_issued',
      'mcp_first_call',
    ]) {
      const count = await numberIn(page, `#funnel li[data-step="${step}"] .count`);
      expect(count, step).toBeGreaterThanOrEqual(1);
    }
    const audit = (await page.locator('#audit').textContent()) ?? '';
    expect(audit).toContain('login_success');
    expect(audit).toContain('mcp_first_call');

    // Tables: the MCP client, bob's grant, and mallory's session with her name as text.
    await page.locator('#sessions tr', { hasText: 'mallory@example.com' }).waitFor();
    const malloryRow = page.locator('#sessions tr', { hasText: 'mallory@example.com' });
    expect(await malloryRow.locator('td').first().textContent()).toBe(XSS_NAME);
    expect(await malloryRow.locator('td').nth(2).textContent()).toBe('<b>group</b>');
    expect(await page.locator('#dashboard img, #dashboard b').count()).toBe(0);
    expect(await page.evaluate(() => (window as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.locator('#clients').textContent()).toContain('SDK test client');
    expect(await page.locator('#tokens').textContent()).toContain('bob@other.org');

    // Search narrows the tables.
    await page.locator('#search').fill('mallory');
    await page.waitForFunction(() => document.querySelectorAll('#sessions tr').length === 1);
    expect(await page.locator('#sessions').textContent()).toContain('mallory@example.com');
    await page.locator('#search').fill('');
    await page.locator('#sessions tr', { hasText: 'alice@example.com' }).waitFor();

    // A screenshot a person would recognise: a sizeable, non-blank picture with the key parts on it.
    const file = join(shots, 'admin.png');
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.screenshot({ path: file, fullPage: true });
    const png = readFileSync(file);
    expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
    const width = png.readUInt32BE(16);
    const height = png.readUInt32BE(20);
    expect(width).toBe(1280);
    expect(height).toBeGreaterThanOrEqual(900);
    expect(statSync(file).size).toBeGreaterThan(30_000);
    const pixels = await pixelStats(context, png);
    expect(pixels.colors).toBeGreaterThan(50);
    expect(pixels.notBackground).toBeGreaterThan(0.03);
    for (const selector of [
      '#rps',
      '#p50',
      '#sessions-active',
      '#upstream-status',
      '#servers',
      '#funnel',
      '#sessions',
      '#audit',
    ]) {
      const box = await page.locator(selector).boundingBox();
      expect(box, selector).not.toBeNull();
      expect(box?.width, selector).toBeGreaterThan(10);
      expect(box?.height, selector).toBeGreaterThan(10);
      expect((box?.x ?? -1) + (box?.width ?? 0), selector).toBeLessThanOrEqual(1280);
    }

    expect(problems).toEqual([]);
    await context.close();
    // Two status polls (2 s apart) and a full-page screenshot: more than the default on a busy machine.
  }, 60_000);

  it('revokes a session and a user from the page: that browser signs in again, the MCP client is refused', async () => {
    const erinJar = await signInThroughProxy(stack.url, erin);
    const context = await strictContext();
    const page = await context.newPage();
    await signInAsGroupAdmin(page);
    const row = page.locator('#sessions tr', { hasText: 'erin@example.com' });
    await row.waitFor();
    const button = row.locator('button[data-action="revoke-session"]');
    await button.click();
    expect(await button.textContent()).toBe('Confirm');
    await button.click();
    await row.waitFor({ state: 'detached' });

    const next = await fetch(`${stack.url}/`, {
      headers: { cookie: erinJar.get(stack.url), accept: 'text/html' },
      redirect: 'manual',
    });
    expect(next.status).toBe(302);
    await page.locator('#audit tr', { hasText: 'admin_session_revoked' }).waitFor();
    expect(
      await page.locator('#audit tr', { hasText: 'admin_session_revoked' }).first().textContent(),
    ).toContain('erin@example.com');

    // Revoking a user from the page ends their MCP client's access at once.
    expect((await mcp.client.callTool({ name: 'whoami', arguments: {} })).isError).toBeFalsy();
    const bobRow = page.locator('#sessions tr', { hasText: 'bob@other.org' });
    const revokeUser = bobRow.locator('button[data-action="revoke-user"]');
    await revokeUser.click();
    await revokeUser.click();
    await bobRow.waitFor({ state: 'detached' });
    const call = await fetch(`${stack.url}/mcp`, {
      method: 'POST',
      headers: { authorization: `Bearer ${mcp.accessToken}`, 'content-type': 'application/json' },
      body: '{}',
    });
    expect(call.status).toBe(401);
    await page.locator('#tokens tr', { hasText: 'nothing yet' }).waitFor();
    expect(problems).toEqual([]);
    await context.close();
  });

  it('asks a token holder for the token, keeps it for the tab, and says when it is refused', async () => {
    const context = await watchedContext(browser, problems);
    const page = await context.newPage();
    await page.goto(`${stack.url}/admin`);
    await page.locator('#login').waitFor({ state: 'visible' });
    expect(await page.locator('#dashboard').isHidden()).toBe(true);

    await page.locator('#token-input').fill('not-the-admin-token');
    await page.locator('#token-form button').click();
    await page.waitForFunction(
      () => document.querySelector('#login-reason')?.textContent === 'The admin token was refused.',
    );

    await page.locator('#token-input').fill(ADMIN_TOKEN);
    await page.locator('#token-form button').click();
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    expect(await page.locator('#whoami').textContent()).toBe('signed in with the admin token');
    await page.reload();
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    await page.locator('#forget-token').click();
    await page.locator('#login').waitFor({ state: 'visible' });
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    // The API refusals (401) are the page working as meant; CSP violations and errors are not.
    expect(problems).toEqual([]);
    await context.close();
  });
});

describe('the Servers section in a real browser: a stdio server and its processes', () => {
  /** An argument the probe ignores, which would run script if the page put the target in as markup. */
  const HOSTILE_ARGUMENT = '<img src=x onerror="window.__xss=2">';
  const command = probeCommand(HOSTILE_ARGUMENT);
  let stack: OidcStack;
  let browser: Browser;
  let bob: ConnectedMcpClient;
  const problems: string[] = [];

  beforeAll(async () => {
    stack = await startOidcStack({
      ADMIN_ENABLED: 'true',
      ADMIN_TOKEN,
      PROXY_TARGET_URL: '',
      PROXY_TARGET_COMMAND: quoteCommand(command),
    });
    bob = await connectMcpClient(stack.url, { username: 'bob', password: 'bob-password' });
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await bob?.client.close();
    await stack?.close();
  });

  it('lists the server and, below it, the child serving bob, with its request in flight while it runs', async () => {
    const whoami = await bob.client.callTool({ name: 'whoami', arguments: {} });
    const { pid } = JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}') as {
      pid: number;
    };
    const context = await watchedContext(browser, problems);
    const page = await context.newPage();
    await page.goto(`${stack.url}/admin`);
    await page.locator('#token-input').fill(ADMIN_TOKEN);
    await page.locator('#token-form button').click();
    await page.locator('#dashboard').waitFor({ state: 'visible' });

    const server = page.locator('#servers tr[data-server="default"] > td');
    await server.first().waitFor();
    expect(await server.allTextContents()).toEqual([
      'default',
      '/mcp',
      quoteCommand(command),
      'healthy',
      'closed',
    ]);

    const child = page.locator('#servers tr[data-children-of="default"] tbody tr', { hasText: String(pid) });
    await child.waitFor();
    const cells = child.locator('td');
    const texts = await cells.allTextContents();
    expect(texts.slice(0, 3)).toEqual([String(pid), 'bob', '1']);
    expect(texts[3]).toMatch(/^\d+ (s|min)$/);
    expect(texts[4]).toMatch(/^\d+ (s|min)$/);
    expect(texts[5]).toBe('0');
    expect(await page.locator('#servers tr[data-children-of="default"] caption').textContent()).toBe(
      'stdio processes: 1',
    );

    // Live: a call running in the child shows in flight on a later poll, and goes when it answers.
    const call = bob.client.callTool({ name: 'sleep', arguments: { ms: 6000 } });
    const inFlight = (n: string) =>
      page.waitForFunction(
        ([pidText, want]) =>
          [...document.querySelectorAll('#servers tr.children tbody tr')].some(
            (tr) => tr.children[0]?.textContent === pidText && tr.children[5]?.textContent === want,
          ),
        [String(pid), n],
        { timeout: 10_000 },
      );
    await inFlight('1');
    await call;
    await inFlight('0');

    // The hostile argument stayed text.
    expect(await page.locator('#dashboard img').count()).toBe(0);
    expect(await page.evaluate(() => (window as { __xss?: number }).__xss)).toBeUndefined();
    expect(problems).toEqual([]);
    await context.close();
  }, 60_000);
});

/** Decodes the PNG in a blank page of the browser and measures how much of it is not background. */
async function pixelStats(
  context: BrowserContext,
  png: Buffer,
): Promise<{ colors: number; notBackground: number }> {
  const page = await context.newPage();
  await page.setContent('<canvas></canvas>');
  const stats = await page.evaluate(
    async (dataUrl) => {
      const image = new Image();
      image.src = dataUrl;
      await image.decode();
      const canvas = document.querySelector('canvas') as HTMLCanvasElement;
      canvas.width = image.width;
      canvas.height = image.height;
      const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
      ctx.drawImage(image, 0, 0);
      const { data } = ctx.getImageData(0, 0, image.width, image.height);
      const counts = new Map<number, number>();
      for (let i = 0; i < data.length; i += 4) {
        const color = ((data[i] ?? 0) << 16) | ((data[i + 1] ?? 0) << 8) | (data[i + 2] ?? 0);
        counts.set(color, (counts.get(color) ?? 0) + 1);
      }
      const background = Math.max(...counts.values());
      const total = data.length / 4;
      return { colors: counts.size, notBackground: (total - background) / total };
    },
    `data:image/png;base64,${png.toString('base64')}`,
  );
  await page.close();
  return stats;
}
