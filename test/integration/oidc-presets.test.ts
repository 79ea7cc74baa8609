import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { waitFor } from '../helpers/servers.js';

const alice = { username: 'alice', password: 'alice-password' }; // alice@example.com, engineering, mcp-users
const bob = { username: 'bob', password: 'bob-password' }; // bob@other.org, sales

interface Echo {
  headers: Record<string, string | undefined>;
}

/** The authorization request the proxy sent the IdP during a login. */
function authorizeRequest(visited: string[], issuer: string): URL {
  const url = visited
    .map((v) => new URL(v.replace(/^POST /, '')))
    .find((u) => u.href.startsWith(`${issuer}/auth?`));
  if (!url) throw new Error(`no authorization request in ${visited.join(' -> ')}`);
  return url;
}

async function hasSession(stack: OidcStack, jar: CookieJar): Promise<boolean> {
  const res = await fetch(`${stack.url}/probe`, { headers: { cookie: jar.get(stack.url) } });
  await res.body?.cancel();
  return res.status === 200;
}

describe('OIDC_PROVIDER=google through a real OIDC provider (which sends no `hd` claim)', () => {
  let stack: OidcStack;
  beforeAll(async () => {
    stack = await startOidcStack({ OIDC_PROVIDER: 'google', ALLOWED_DOMAINS: 'example.com' });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('refuses an example.com address from an account the Workspace does not manage', async () => {
    const jar = new CookieJar();
    const result = await loginThroughBrowserless(`${stack.url}/tools`, alice, { jar });
    expect(authorizeRequest(result.visited, stack.idp.issuer).searchParams.get('hd')).toBe('example.com');
    expect(result.status).toBe(401);
    expect(result.body).toContain('Sign-in failed');
    expect(await hasSession(stack, jar)).toBe(false);
    await waitFor(
      () => stack.proxy.logs.some((l) => l.audit === 'login_failure' && l.reason === 'claims_rejected'),
      2000,
      'audit login_failure claims_rejected',
    );
    expect(stack.proxy.logText()).toContain('is not managed by the example.com Workspace (hd: none)');
  });

  it('leaves an account of another domain to the allow-list: 403, not a failed sign-in', async () => {
    const result = await loginThroughBrowserless(`${stack.url}/tools`, bob);
    expect(result.status).toBe(403);
    expect(result.body).toContain('bob@other.org is not in ALLOWED_DOMAINS');
  });
});

describe('OIDC_PROVIDER=keycloak and auth0 through a real OIDC provider', () => {
  let keycloak: OidcStack;
  let auth0: OidcStack;
  beforeAll(async () => {
    keycloak = await startOidcStack({ OIDC_PROVIDER: 'keycloak', ALLOWED_GROUPS: 'mcp-users' });
    auth0 = await startOidcStack({ OIDC_PROVIDER: 'auth0', OIDC_AUDIENCE: 'https://api.example.com' });
  });
  afterAll(async () => {
    await keycloak?.close();
    await auth0?.close();
  });

  it('keycloak: groups from the tokens decide access and reach the backend', async () => {
    const allowed = await loginThroughBrowserless(`${keycloak.url}/tools`, alice);
    expect(allowed.status).toBe(200);
    expect((JSON.parse(allowed.body) as Echo).headers['x-forwarded-groups']).toBe('engineering,mcp-users');
    const refused = await loginThroughBrowserless(`${keycloak.url}/tools`, bob);
    expect(refused.status).toBe(403);
    expect(refused.body).toContain('ALLOWED_GROUPS');
  });

  it('auth0: the login carries `audience` and completes', async () => {
    const result = await loginThroughBrowserless(`${auth0.url}/tools`, alice);
    expect(authorizeRequest(result.visited, auth0.idp.issuer).searchParams.get('audience')).toBe(
      'https://api.example.com',
    );
    expect(result.status).toBe(200);
    expect((JSON.parse(result.body) as Echo).headers['x-forwarded-user']).toBe('alice');
  });
});
