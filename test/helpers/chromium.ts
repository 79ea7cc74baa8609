import { accessSync, constants } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
/** Playwright's waits give up before vitest's 30 s test timeout, so failures say what was awaited. */
export const WAIT_MS = 10_000;

/**
 * Debian's Chromium, headless. Without it the browser tests fail and say how to install it:
 * they are part of `npm test` and of CI (.ci/run installs the package).
 */
export function launchChromium(): Promise<Browser> {
  try {
    accessSync(CHROMIUM, constants.X_OK);
  } catch {
    throw new Error(
      `The browser end-to-end tests need Chromium, and there is no executable at ${CHROMIUM}. ` +
        'Install it with `apt-get install -y --no-install-recommends chromium` ' +
        '(or point CHROMIUM_PATH at a Chromium binary).',
    );
  }
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/** A fresh context whose pages report CSP violations and uncaught errors into `problems`. */
export async function watchedContext(browser: Browser, problems: string[]): Promise<BrowserContext> {
  const context = await browser.newContext();
  context.setDefaultTimeout(WAIT_MS);
  context.on('page', (page: Page) => {
    page.on('console', (msg) => {
      if (/Content Security Policy/i.test(msg.text())) problems.push(`${page.url()}: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`${page.url()}: ${err.message}`));
  });
  return context;
}
