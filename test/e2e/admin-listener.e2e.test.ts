/**
 * A page the backend serves through the proxy, at the proxy's own origin, trying to use a signed-in
 * admin's session against the admin API, in a real browser (Debian's Chromium, playwright-core).
 * Without ADMIN_LISTEN it succeeds (why the setting exists); with ADMIN_LISTEN the same page gets
 * the proxy's 404 at its own origin and nothing it can read from the admin origin.
 */
import { randomBytes } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, watchedContext } from '../helpers/chromium.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type Listening, startBackend } from '../helpers/servers.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
const alice = { username: 'alice', password: 'alice-password' }; // in ADMIN_GROUPS (engineering)

/** What the hostile page learned: per attempt, `status:body` or `blocked` (a network/CORS error). */
type Loot = Record<string, string>;

/**
 * The hostile backend: `/evil` loads `/evil.js`, which calls the admin API with the browser's
 * credentials, at the page's origin and at the admin origin (`?admin=`), reading and changing.
 * Its own CSP allows connecting anywhere, so only the proxy's design can stop it.
 */
const EVIL_JS = `
(async () => {
  const admin = new URLSearchParams(location.search).get('admin');
  const targets = { same: '' };
  if (admin) targets.admin = admin;
  const loot = {};
  for (const [name, base] of Object.entries(targets)) {
    for (const [what, path, method] of [
      ['read', '/admin/api/status', 'GET'],
      ['revoke', '/admin/api/users/bob', 'DELETE'],
    ]) {
      try {
        const res = await fetch(base + path, { method, credentials: 'include' });
        loot[name + ' ' + what] = res.status + ':' + (await res.text());
      } catch {
        loot[name + ' ' + what] = 'blocked';
      }
    }
  }
  window.__loot = loot;
})();
`;

function hostileBackend(): Promise<Listening> {
  return startBackend((req, res) => {
    const path = new URL(req.url ?? '/', 'http://backend.invalid').pathname;
    if (path === '/evil.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' }).end(EVIL_JS);
      return;
    }
    res
      .writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': "default-src 'self'; connect-src *",
      })
      .end('<!DOCTYPE html><title>tools</title><script src="/evil.js"></script>');
  });
}

describe("a backend's page against the admin API with an admin's cookie (Chromium)", () => {
  let browser: Browser;
  let shared: OidcStack;
  let separate: OidcStack;
  const problems: string[] = [];

  beforeAll(async () => {
    const env = { ADMIN_ENABLED: 'true', ADMIN_TOKEN, ADMIN_GROUPS: 'engineering' };
    shared = await startOidcStack(env, {}, hostileBackend);
    separate = await startOidcStack({ ...env, ADMIN_LISTEN: '127.0.0.1:0' }, {}, hostileBackend);
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await shared?.close();
    await separate?.close();
  });

  /** Alice signs in through the proxy and lands on the backend's page, which runs its script. */
  async function visitAsAdmin(stack: OidcStack, adminOrigin?: string): Promise<Loot> {
    const context = await watchedContext(browser, problems);
    try {
      const page = await context.newPage();
      const evil = `/evil${adminOrigin ? `?admin=${encodeURIComponent(adminOrigin)}` : ''}`;
      await page.goto(`${stack.url}/login?rd=${encodeURIComponent(evil)}`);
      await page.waitForURL((u) => u.origin === stack.idp.issuer && u.pathname.startsWith('/interaction/'));
      await page.locator('input[name="username"]').fill(alice.username);
      await page.locator('input[name="password"]').fill(alice.password);
      await page.locator('#login').click();
      await page.waitForURL((u) => u.origin === stack.url && u.pathname === '/evil');
      await page.waitForFunction(() => (window as { __loot?: unknown }).__loot !== undefined);
      return (await page.evaluate(() => (window as unknown as { __loot: Loot }).__loot)) as Loot;
    } finally {
      await context.close();
    }
  }

  it('without ADMIN_LISTEN the page reads the admin API as the admin (the exposure ADMIN_LISTEN removes)', async () => {
    const loot = await visitAsAdmin(shared);
    expect(loot['same read']).toMatch(/^200:/);
    expect(loot['same read']).toContain('"email":"alice@example.com"');
    // And acts as the admin: the change carries the proxy's own Origin, so it passes.
    expect(loot['same revoke']).toMatch(/^200:/);
  });

  it('with ADMIN_LISTEN the page gets 404 at its origin and cannot read or change anything at the admin origin', async () => {
    const adminUrl = separate.proxy.proxy.admin?.url;
    if (!adminUrl) throw new Error('no admin listener');
    const loot = await visitAsAdmin(separate, adminUrl);
    expect(loot['same read']).toMatch(/^404:/);
    expect(loot['same revoke']).toMatch(/^404:/);
    // Cross-origin without CORS: the browser hands the script nothing.
    expect(loot['admin read']).toBe('blocked');
    expect(loot['admin revoke']).toBe('blocked');
    expect(JSON.stringify(loot)).not.toContain('alice@example.com');
    // Nothing was revoked: no admin action was audited.
    expect(separate.proxy.logs.filter((l) => String(l.audit ?? '').startsWith('admin_'))).toEqual([]);
  });
});
