/**
 * The development IdP's own pages: its sign-in form (passwords checked against the users
 * table) and the consent step it grants by itself, since the proxy asks for consent on its own.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { escapeHtml } from '../auth/browser/pages.js';
import type { DevUser, InteractionDetails, OidcProvider } from './dev-idp.js';

/** The sign-in form is two short fields; more is refused unread. */
const MAX_FORM_BYTES = 16 * 1024;

export async function handleInteraction(
  provider: OidcProvider,
  byUsername: Map<string, DevUser>,
  req: IncomingMessage,
  res: ServerResponse,
  uid: string,
  action: 'show' | 'login',
): Promise<void> {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    sendHtml(res, 400, page('Error', '<h1>Stale sign-in page</h1><p>Start the sign-in again.</p>'));
    return;
  }
  const prompt = details.prompt.name;

  if (action === 'show') {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (prompt === 'login') {
      sendHtml(res, 200, loginPage(uid, ''));
      return;
    }
    if (prompt === 'consent') {
      await grantConsent(provider, details, req, res);
      return;
    }
    sendHtml(res, 400, page('Error', `<h1>Unsupported prompt</h1><p>${escapeHtml(prompt)}</p>`));
    return;
  }

  if (req.method !== 'POST') {
    res.writeHead(405, { allow: 'POST' }).end();
    return;
  }
  if (prompt !== 'login') {
    sendHtml(res, 400, page('Error', '<h1>No sign-in is pending</h1>'));
    return;
  }
  const form = await readForm(req);
  const username = form.get('username') ?? '';
  const password = form.get('password') ?? '';
  const user = byUsername.get(username);
  if (!user || !safeEqual(user.password, password)) {
    sendHtml(res, 401, loginPage(uid, username, 'Invalid username or password.'));
    return;
  }
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: user.sub ?? user.username } },
    { mergeWithLastSubmission: false },
  );
}

/** Grants everything the client asked for; no consent page (the proxy has its own). */
async function grantConsent(
  provider: OidcProvider,
  details: InteractionDetails,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const accountId = details.session?.accountId;
  const clientId = details.params.client_id;
  if (!accountId || typeof clientId !== 'string') throw new Error('consent without a session');
  const existing = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  const grant = existing ?? new provider.Grant({ accountId, clientId });
  const missing = details.prompt.details as {
    missingOIDCScope?: string[];
    missingOIDCClaims?: string[];
    missingResourceScopes?: Record<string, string[]>;
  };
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function safeEqual(a: string, b: string): boolean {
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(a), digest(b));
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function loginPage(uid: string, username: string, error?: string): string {
  const action = `/interaction/${encodeURIComponent(uid)}/login`;
  return page(
    'Sign in',
    [
      '<h1>Sign in to the dev IdP</h1>',
      error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '',
      `<form method="post" action="${escapeHtml(action)}" autocomplete="off">`,
      `<label>Username <input name="username" value="${escapeHtml(username)}" autofocus required></label>`,
      '<label>Password <input type="password" name="password" required></label>',
      '<button type="submit" id="login">Sign in</button>',
      '</form>',
    ].join(''),
  );
}

export function page(title: string, body: string): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><meta name="viewport" content="width=device-width, initial-scale=1"><style>body{font-family:sans-serif;max-width:22rem;margin:3rem auto}label,button{display:block;margin:.6rem 0}.error{color:#b00}</style></head><body>${body}</body></html>`;
}

export function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // No form-action: browsers apply it to every redirect after a form post, and the sign-in
    // post ends, through redirects, at the relying party (the proxy's /callback and beyond).
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
    'x-frame-options': 'DENY',
  });
  res.end(html);
}
