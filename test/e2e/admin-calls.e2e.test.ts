/**
 * The monitoring page's "Recent tool calls" in a real browser (Chromium): a bypass-mode proxy with
 * `mcp_access` rules in front of a real MCP server, calls made with the official SDK client, the
 * page opened with the admin token.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, watchedContext } from '../helpers/chromium.js';
import { type AccessBackend, type AccessProxy, startAccessProxy } from '../helpers/mcp-access-backend.js';
import type { TestProxy } from '../helpers/servers.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
/** A tool name that would run script if the page ever put it in as markup. */
const XSS_NAME = '<img src=x onerror=alert(1)>';
const RULES = { default: 'deny', rules: [{ tools: ['echo'], allow: {} }] };

describe('recent tool calls on the monitoring page (Chromium)', () => {
  let stack: AccessProxy;
  let backend: AccessBackend;
  let proxy: TestProxy;
  let client: Client;
  let browser: Browser;
  const problems: string[] = [];

  /** A call the proxy refuses: recorded as `denied` without reaching the backend. */
  const refused = (name: string): Promise<unknown> =>
    client.callTool({ name, arguments: { text: 'x' } }).then(
      () => problems.push(`${name} was not refused`),
      () => undefined,
    );

  beforeAll(async () => {
    stack = await startAccessProxy(RULES, ADMIN_TOKEN);
    ({ backend, proxy, client } = stack);
    await client.callTool({ name: 'echo', arguments: { text: 'hello' } });
    await refused('secret_report');
    await refused(XSS_NAME);
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  const rowTexts = (page: Page): Promise<string[]> =>
    page.locator('#calls tr').evaluateAll((rows) => rows.map((r) => r.textContent ?? ''));

  it('lists the calls newest first, filters them, shows a hostile tool name as text, and refreshes', async () => {
    const context = await watchedContext(browser, problems);
    const page = await context.newPage();
    page.on('dialog', (dialog) => {
      problems.push(`dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
    await page.goto(`${proxy.url}/admin`);
    await page.locator('#token-input').fill(ADMIN_TOKEN);
    await page.locator('#token-form button').click();
    await page.locator('#dashboard').waitFor({ state: 'visible' });
    await page.waitForFunction(() => document.querySelectorAll('#calls tr').length === 3);
    expect(await page.locator('#sessions-section').isHidden()).toBe(true);
    expect(await page.locator('#calls-section').isVisible()).toBe(true);

    // Newest first; columns time, user, client, method, name, outcome, duration.
    const names = await page.locator('#calls tr td:nth-child(5)').allTextContents();
    expect(names).toEqual([XSS_NAME, 'secret_report', 'echo']);
    const echo = await page.locator('#calls tr', { hasText: 'echo' }).locator('td').allTextContents();
    expect(echo[0]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
    expect(echo.slice(1, 4)).toEqual(['–', '–', 'tools/call']);
    expect(echo[5]).toBe('ok');
    expect(echo[6]).toMatch(/^\d+(\.\d+)? ms$/);
    const hostile = page.locator('#calls tr').first().locator('td');
    expect(await hostile.nth(4).textContent()).toBe(XSS_NAME);
    expect(await hostile.nth(5).textContent()).toBe('denied');
    expect(await page.locator('#dashboard img').count()).toBe(0);

    // The filter box narrows the rows in the page, by name or outcome.
    await page.locator('#calls-filter').fill('denied');
    await page.waitForFunction(() => document.querySelectorAll('#calls tr').length === 2);
    expect((await rowTexts(page)).every((t) => t.includes('denied'))).toBe(true);
    await page.locator('#calls-filter').fill('ECHO');
    await page.waitForFunction(() => document.querySelectorAll('#calls tr').length === 1);
    expect((await rowTexts(page))[0]).toContain('echo');
    await page.locator('#calls-filter').fill('no-such-call');
    await page.locator('#calls tr', { hasText: 'no call matches' }).waitFor();
    await page.locator('#calls-filter').fill('');
    await page.waitForFunction(() => document.querySelectorAll('#calls tr').length === 3);

    // A new call shows up with the page's next refresh of its tables (every 10 s).
    await refused('delete_file');
    await page.locator('#calls tr', { hasText: 'delete_file' }).waitFor({ timeout: 15_000 });
    expect((await rowTexts(page))[0]).toContain('delete_file');

    expect(backend.ran).toEqual(['tool:echo']);
    expect(problems).toEqual([]);
    await context.close();
  }, 40_000);
});
