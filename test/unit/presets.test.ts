import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { type Dispatcher, getGlobalDispatcher, MockAgent, setGlobalDispatcher } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hasGroupsOverage } from '../../src/auth/oidc/entra-groups.js';
import { discoveryTarget, identityFromClaims } from '../../src/auth/oidc/oidc.js';
import { createProvider, quirksFor } from '../../src/auth/oidc/presets.js';
import { LoginRejectedError, type Provider } from '../../src/auth/oidc/provider.js';
import { evaluatePolicy } from '../../src/auth/policy/policy.js';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { type DevIdp, startDevIdp } from '../../src/demo/dev-idp.js';
import { quietLogger } from '../helpers/log-capture.js';

const CLIENT_ID = 'presets-client';
const CLIENT_SECRET = 'presets-secret';
const REDIRECT = 'http://127.0.0.1:8080/callback';
const CHECKS = { state: 'state-123', nonce: 'nonce-123', codeVerifier: 'v'.repeat(43) };
const CHALLENGE = 'c'.repeat(43);

const logger = quietLogger();

function configFor(env: Record<string, string>, discoveryUrl?: string): Config {
  return loadConfig({
    env: {
      AUTH_MODE: 'oidc',
      PUBLIC_URL: 'http://127.0.0.1:8080',
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
      ...(discoveryUrl ? { OIDC_DISCOVERY_URL: discoveryUrl } : {}),
      ...env,
    },
  });
}

describe('provider presets against the dev IdP', () => {
  let idp: DevIdp;
  const providers: Provider[] = [];

  beforeAll(async () => {
    idp = await startDevIdp({
      clients: [{ client_id: CLIENT_ID, client_secret: CLIENT_SECRET, redirect_uris: [REDIRECT] }],
    });
  });
  afterEach(() => {
    for (const p of providers.splice(0)) p.close();
  });
  afterAll(async () => {
    await idp?.close();
  });

  /** The authorization URL the preset really builds, from the dev IdP's discovery document. */
  async function authorizationUrl(env: Record<string, string>): Promise<URL> {
    const provider = createProvider(configFor(env, `${idp.issuer}/.well-known/openid-configuration`), logger);
    providers.push(provider);
    await provider.ready();
    return provider.authorizationUrl({ ...CHECKS, codeChallenge: CHALLENGE });
  }

  /** The IdP takes the request: it starts its sign-in interaction instead of answering an error. */
  async function expectAccepted(url: URL): Promise<void> {
    const res = await fetch(url, { redirect: 'manual' });
    await res.body?.cancel();
    const location = new URL(res.headers.get('location') ?? '', url);
    expect(location.searchParams.get('error')).toBeNull();
    expect(location.pathname).toMatch(/^\/interaction\//);
  }

  it('generic: the standard code + PKCE request, nothing extra', async () => {
    const url = await authorizationUrl({});
    expect(url.origin).toBe(idp.issuer);
    expect(Object.fromEntries(url.searchParams)).toEqual({
      client_id: CLIENT_ID,
      redirect_uri: REDIRECT,
      scope: 'openid email profile',
      response_type: 'code',
      state: CHECKS.state,
      nonce: CHECKS.nonce,
      code_challenge: CHALLENGE,
      code_challenge_method: 'S256',
    });
    await expectAccepted(url);
  });

  it('auth0: `audience` when OIDC_AUDIENCE is set, none otherwise', async () => {
    const url = await authorizationUrl({ OIDC_PROVIDER: 'auth0', OIDC_AUDIENCE: 'https://api.example.com' });
    expect(url.searchParams.get('audience')).toBe('https://api.example.com');
    await expectAccepted(url);
    expect((await authorizationUrl({ OIDC_PROVIDER: 'auth0' })).searchParams.has('audience')).toBe(false);
  });

  it('google: `hd` only for exactly one plain ALLOWED_DOMAINS entry', async () => {
    const one = await authorizationUrl({ OIDC_PROVIDER: 'google', ALLOWED_DOMAINS: 'Example.COM' });
    expect(one.searchParams.get('hd')).toBe('example.com');
    await expectAccepted(one);
    for (const domains of ['example.com,example.org', '*.example.com', '']) {
      const url = await authorizationUrl({ OIDC_PROVIDER: 'google', ALLOWED_DOMAINS: domains });
      expect(url.searchParams.has('hd'), domains).toBe(false);
    }
  });

  it('microsoft: offline_access added to the scopes, once', async () => {
    const url = await authorizationUrl({ OIDC_PROVIDER: 'microsoft' });
    expect(url.searchParams.get('scope')).toBe('openid email profile offline_access');
    await expectAccepted(url);
    const already = await authorizationUrl({
      OIDC_PROVIDER: 'microsoft',
      OIDC_SCOPES: 'openid offline_access email',
    });
    expect(already.searchParams.get('scope')).toBe('openid offline_access email');
  });

  it('keycloak: no extra parameters', async () => {
    const url = await authorizationUrl({ OIDC_PROVIDER: 'keycloak' });
    expect(url.searchParams.get('scope')).toBe('openid email profile');
    expect([...url.searchParams.keys()].sort()).toEqual(
      [
        'client_id',
        'code_challenge',
        'code_challenge_method',
        'nonce',
        'redirect_uri',
        'response_type',
        'scope',
        'state',
      ].sort(),
    );
  });
});

describe('google: the ID token `hd` claim (checkClaims)', () => {
  const check = (domains: string, env: Record<string, string> = {}) =>
    quirksFor(
      configFor({ OIDC_PROVIDER: 'google', ALLOWED_DOMAINS: domains, ...env }, 'https://g.example/x').auth,
      logger,
    ).checkClaims;

  it('accepts an account of the Workspace', () => {
    expect(check('example.com')?.({ email: 'alice@example.com', hd: 'example.com' })).toBeUndefined();
    expect(check('example.com')?.({ email: 'Alice@Example.com', hd: 'EXAMPLE.com' })).toBeUndefined();
  });

  it('rejects an address of the domain whose `hd` differs or is missing (not a Workspace account)', () => {
    expect(check('example.com')?.({ email: 'alice@example.com', hd: 'other.com' })).toMatch(
      /alice@example\.com is not managed by the example\.com Workspace \(hd: other\.com\)/,
    );
    expect(check('example.com')?.({ email: 'alice@example.com' })).toMatch(/hd: none/);
  });

  it('leaves accounts of other domains to the allow-lists (an ALLOWED_EMAILS contractor still signs in)', () => {
    const c = check('example.com', { ALLOWED_EMAILS: 'contractor@gmail.com' });
    expect(c?.({ email: 'contractor@gmail.com', email_verified: true })).toBeUndefined();
  });

  it('checks nothing when no single plain domain is configured', () => {
    expect(check('example.com,example.org')).toBeUndefined();
    expect(check('*.example.com')).toBeUndefined();
  });
});

describe('groups claims per preset (identityFromClaims)', () => {
  const groupsOf = (env: Record<string, string>, claims: Record<string, unknown>): string[] =>
    identityFromClaims(
      { sub: 'u1', ...claims },
      quirksFor(configFor(env, 'https://idp.example/.well-known/openid-configuration').auth, logger)
        .groupClaims,
    ).groups;

  const keycloakToken = {
    groups: ['/engineering', '/mcp-users'],
    realm_access: { roles: ['offline_access', 'mcp-admin'] },
    resource_access: { account: { roles: ['manage-account'] } },
  };

  it('keycloak: the group mapper`s `groups` and the realm roles (`realm_access.roles`)', () => {
    expect(groupsOf({ OIDC_PROVIDER: 'keycloak' }, keycloakToken)).toEqual([
      '/engineering',
      '/mcp-users',
      'offline_access',
      'mcp-admin',
    ]);
  });

  it('microsoft: `groups` (object ids) and app `roles`', () => {
    expect(
      groupsOf(
        { OIDC_PROVIDER: 'microsoft' },
        { groups: ['6f9a1c1e-0000-4000-8000-000000000001'], roles: ['MCP.User'] },
      ),
    ).toEqual(['6f9a1c1e-0000-4000-8000-000000000001', 'MCP.User']);
  });

  it('generic, auth0, google: `groups`', () => {
    for (const provider of ['generic', 'auth0', 'google']) {
      expect(groupsOf({ OIDC_PROVIDER: provider }, { groups: ['a', 'b'], roles: ['r'] }), provider).toEqual([
        'a',
        'b',
      ]);
    }
  });

  it('OIDC_GROUPS_CLAIM replaces the preset`s claims, nested paths included', () => {
    expect(
      groupsOf({ OIDC_PROVIDER: 'keycloak', OIDC_GROUPS_CLAIM: 'realm_access.roles' }, keycloakToken),
    ).toEqual(['offline_access', 'mcp-admin']);
    expect(
      groupsOf(
        { OIDC_PROVIDER: 'keycloak', OIDC_GROUPS_CLAIM: 'resource_access.account.roles' },
        keycloakToken,
      ),
    ).toEqual(['manage-account']);
  });

  it('OIDC_GROUPS_CLAIM takes a namespaced claim (Auth0 rules/actions), alone or with others', () => {
    const claims = { groups: ['plain'], 'https://example.com/groups': ['mcp-users', 'admins'] };
    expect(
      groupsOf({ OIDC_PROVIDER: 'auth0', OIDC_GROUPS_CLAIM: 'https://example.com/groups' }, claims),
    ).toEqual(['mcp-users', 'admins']);
    expect(
      groupsOf({ OIDC_PROVIDER: 'auth0', OIDC_GROUPS_CLAIM: 'https://example.com/groups,groups' }, claims),
    ).toEqual(['mcp-users', 'admins', 'plain']);
  });
});

/**
 * Microsoft Entra ID's multi-tenant endpoints (`common`, `organizations`) publish the issuer as a
 * template, `https://login.microsoftonline.com/{tenantid}/v2.0`, and each ID token names its tenant
 * (`iss` with the tenant id, and `tid`):
 * https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc
 * Entra cannot be reached from here, so its endpoints are answered by undici's MockAgent.
 */
describe('microsoft: Entra ID issuers, multi-tenant and single tenant', () => {
  const ENTRA = 'https://login.microsoftonline.com';
  const TENANT = '9188040d-6c67-4c5b-b112-36a304b66dad';
  let previous: Dispatcher;
  let agent: MockAgent;
  let jwk: JWK;
  let privateKey: CryptoKey;
  let idToken = '';
  const tokenRequests: URLSearchParams[] = [];
  const providers: Provider[] = [];

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256');
    privateKey = pair.privateKey as CryptoKey;
    jwk = { ...(await exportJWK(pair.publicKey)), kid: 'entra-test-key', use: 'sig', alg: 'RS256' };
    previous = getGlobalDispatcher();
    agent = new MockAgent();
    agent.disableNetConnect();
    setGlobalDispatcher(agent);
    const json = { 'content-type': 'application/json; charset=utf-8' };
    const login = agent.get(ENTRA);
    // The same document as Entra's, for the multi-tenant `common` and for a single tenant.
    for (const [tenant, issuer] of [
      ['common', `${ENTRA}/{tenantid}/v2.0`],
      [TENANT, `${ENTRA}/${TENANT}/v2.0`],
    ] as const) {
      login
        .intercept({ path: `/${tenant}/v2.0/.well-known/openid-configuration`, method: 'GET' })
        .reply(
          200,
          {
            issuer,
            authorization_endpoint: `${ENTRA}/common/oauth2/v2.0/authorize`,
            token_endpoint: `${ENTRA}/common/oauth2/v2.0/token`,
            jwks_uri: `${ENTRA}/common/discovery/v2.0/keys`,
            userinfo_endpoint: 'https://graph.microsoft.com/oidc/userinfo',
            end_session_endpoint: `${ENTRA}/common/oauth2/v2.0/logout`,
            response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
            subject_types_supported: ['pairwise'],
            id_token_signing_alg_values_supported: ['RS256'],
            scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
            token_endpoint_auth_methods_supported: [
              'client_secret_post',
              'private_key_jwt',
              'client_secret_basic',
            ],
            claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nonce', 'tid', 'email', 'name', 'oid'],
            tenant_region_scope: null,
          },
          { headers: json },
        )
        .persist();
    }
    login
      .intercept({ path: '/common/discovery/v2.0/keys', method: 'GET' })
      .reply(200, () => ({ keys: [jwk] }), { headers: json })
      .persist();
    login
      .intercept({ path: '/common/oauth2/v2.0/token', method: 'POST' })
      .reply(
        200,
        (opts) => {
          tokenRequests.push(new URLSearchParams(String(opts.body)));
          return {
            token_type: 'Bearer',
            scope: 'openid profile email offline_access',
            expires_in: 3600,
            access_token: 'graph-access-token',
            refresh_token: 'entra-refresh-token',
            id_token: idToken,
          };
        },
        { headers: json },
      )
      .persist();
    agent
      .get('https://graph.microsoft.com')
      .intercept({ path: '/oidc/userinfo', method: 'GET' })
      .reply(200, { sub: 'entra-sub-1', email: 'ada@contoso.example', name: 'Ada' }, { headers: json })
      .persist();
  });
  afterEach(() => {
    for (const p of providers.splice(0)) p.close();
  });
  afterAll(async () => {
    setGlobalDispatcher(previous);
    await agent?.close();
  });

  async function signIdToken(iss: string, tid: string, extra: Record<string, unknown> = {}): Promise<string> {
    return new SignJWT({
      ...extra,
      tid,
      nonce: CHECKS.nonce,
      email: 'ada@contoso.example',
      name: 'Ada',
      groups: ['6f9a1c1e-0000-4000-8000-000000000001'],
      roles: ['MCP.User'],
      ver: '2.0',
    })
      .setProtectedHeader({ alg: 'RS256', kid: 'entra-test-key', typ: 'JWT' })
      .setIssuer(iss)
      .setSubject('entra-sub-1')
      .setAudience(CLIENT_ID)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(privateKey);
  }

  async function ready(tenant = 'common'): Promise<Provider> {
    const provider = createProvider(
      configFor({ OIDC_PROVIDER: 'microsoft' }, `${ENTRA}/${tenant}/v2.0/.well-known/openid-configuration`),
      logger,
    );
    providers.push(provider);
    await provider.ready();
    return provider;
  }

  it('discovers Entra from its issuer URL (so openid-client applies the tenant rule); others as configured', () => {
    const target = (u: string) => discoveryTarget(new URL(u)).href;
    expect(target(`${ENTRA}/common/v2.0/.well-known/openid-configuration`)).toBe(`${ENTRA}/common/v2.0`);
    expect(target(`${ENTRA}/${TENANT}/v2.0/.well-known/openid-configuration`)).toBe(
      `${ENTRA}/${TENANT}/v2.0`,
    );
    for (const unchanged of [
      `${ENTRA}/${TENANT}/v2.0/.well-known/openid-configuration?appid=abc`,
      'https://tenant.eu.auth0.com/.well-known/openid-configuration',
      'https://kc.example.com/realms/main/.well-known/openid-configuration',
    ]) {
      expect(target(unchanged)).toBe(unchanged);
    }
  });

  const callback = new URL(`${REDIRECT}?code=entra-code&state=${CHECKS.state}`);

  it('signs in a user of any tenant: the issuer is the template with the token`s tid', async () => {
    const provider = await ready();
    const url = provider.authorizationUrl({ ...CHECKS, codeChallenge: CHALLENGE });
    expect(`${url.origin}${url.pathname}`).toBe(`${ENTRA}/common/oauth2/v2.0/authorize`);
    expect(url.searchParams.get('scope')).toBe('openid email profile offline_access');

    idToken = await signIdToken(`${ENTRA}/${TENANT}/v2.0`, TENANT);
    const { identity, tokens } = await provider.redeem(callback, CHECKS);
    expect(identity).toMatchObject({
      sub: 'entra-sub-1',
      email: 'ada@contoso.example',
      groups: ['6f9a1c1e-0000-4000-8000-000000000001', 'MCP.User'],
    });
    // Any tenant may set any address: without Entra's domain-owner flag it is not verified, so
    // ALLOWED_EMAILS/ALLOWED_DOMAINS cannot be matched by a foreign tenant's user.
    expect(identity.emailVerified).toBe(false);
    expect(evaluatePolicy(identity, { emails: [], domains: ['contoso.example'], groups: [] })).toMatchObject({
      allowed: false,
    });
    expect(tokens.refreshToken).toBe('entra-refresh-token');
    const sent = tokenRequests.at(-1);
    expect(sent?.get('code_verifier')).toBe(CHECKS.codeVerifier);
    expect(sent?.get('client_secret')).toBe(CLIENT_SECRET);
  });

  it('trusts the email of a multi-tenant sign-in when Entra says the domain owner verified it (xms_edov)', async () => {
    const provider = await ready();
    idToken = await signIdToken(`${ENTRA}/${TENANT}/v2.0`, TENANT, { xms_edov: true });
    const { identity } = await provider.redeem(callback, CHECKS);
    expect(identity).toMatchObject({ email: 'ada@contoso.example', emailVerified: true });
    expect(evaluatePolicy(identity, { emails: [], domains: ['contoso.example'], groups: [] })).toEqual({
      allowed: true,
    });
  });

  it('single tenant: the issuer is fixed and the directory`s email is trusted as before', async () => {
    const provider = await ready(TENANT);
    idToken = await signIdToken(`${ENTRA}/${TENANT}/v2.0`, TENANT);
    const { identity } = await provider.redeem(callback, CHECKS);
    expect(identity).toMatchObject({ sub: 'entra-sub-1', email: 'ada@contoso.example' });
    expect(identity.emailVerified).toBeUndefined();
    expect(evaluatePolicy(identity, { emails: [], domains: ['contoso.example'], groups: [] })).toEqual({
      allowed: true,
    });
    idToken = await signIdToken(`${ENTRA}/00000000-0000-0000-0000-000000000bad/v2.0`, TENANT);
    await expect(provider.redeem(callback, CHECKS)).rejects.toBeInstanceOf(LoginRejectedError);
  });

  it('refuses an ID token whose issuer names another tenant than its tid', async () => {
    const provider = await ready();
    idToken = await signIdToken(`${ENTRA}/00000000-0000-0000-0000-000000000bad/v2.0`, TENANT);
    await expect(provider.redeem(callback, CHECKS)).rejects.toBeInstanceOf(LoginRejectedError);
  });
});

describe('microsoft: groups overage (Entra ID, groups read from Microsoft Graph)', () => {
  it('sees the overage indicators only when the claims carry no `groups`', () => {
    const pointer = { _claim_names: { groups: 'src1' }, _claim_sources: { src1: { endpoint: 'x' } } };
    expect(hasGroupsOverage(pointer)).toBe(true);
    expect(hasGroupsOverage({ hasgroups: true })).toBe(true);
    expect(hasGroupsOverage({ ...pointer, groups: ['g1'] })).toBe(false);
    expect(hasGroupsOverage({ groups: [] })).toBe(false);
    expect(hasGroupsOverage({ _claim_names: { address: 'src1' } })).toBe(false);
    expect(hasGroupsOverage({ hasgroups: false })).toBe(false);
    expect(hasGroupsOverage({})).toBe(false);
  });

  it('looks groups up only when they are read from the `groups` claim', () => {
    const quirks = (env: Record<string, string>) =>
      quirksFor(
        configFor(
          { OIDC_PROVIDER: 'microsoft', ...env },
          'https://login.example/.well-known/openid-configuration',
        ).auth,
        logger,
      );
    expect(quirks({}).groupsOverage).toBeDefined();
    expect(quirks({ OIDC_GROUPS_CLAIM: 'roles' }).groupsOverage).toBeUndefined();
    expect(quirks({ OIDC_PROVIDER: 'keycloak' }).groupsOverage).toBeUndefined();
  });

  it('MICROSOFT_GRAPH_URL must be https, plain http only on loopback (it is sent access tokens)', () => {
    const discovery = 'https://login.example/.well-known/openid-configuration';
    expect(configFor({ OIDC_PROVIDER: 'microsoft' }, discovery).auth.oidc.microsoftGraphUrl.href).toBe(
      'https://graph.microsoft.com/',
    );
    expect(
      configFor({ MICROSOFT_GRAPH_URL: 'http://127.0.0.1:9999' }, discovery).auth.oidc.microsoftGraphUrl.href,
    ).toBe('http://127.0.0.1:9999/');
    expect(() => configFor({ MICROSOFT_GRAPH_URL: 'http://graph.internal' }, discovery)).toThrow(
      /MICROSOFT_GRAPH_URL.*must be https/,
    );
  });
});
