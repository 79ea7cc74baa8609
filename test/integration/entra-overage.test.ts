import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DevIdpOptions, DevUser } from '../../src/demo/dev-idp.js';
import {
  GRAPH_FAULTS,
  type GraphMembership,
  type GraphSim,
  groupIds,
  startGraphSim,
  userinfoVerifier,
} from '../helpers/graph-sim.js';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type Listening, startBackend, waitFor } from '../helpers/servers.js';

/**
 * OIDC_PROVIDER=microsoft with users in too many groups for the ID token (Entra ID's "groups
 * overage"): the real dev IdP issues tokens with `_claim_names`/`_claim_sources` (or `hasgroups`)
 * instead of `groups`, and the proxy reads the groups from a Microsoft Graph simulator.
 */

const PASSWORD = 'entra-test-password';
/** The group ALLOWED_GROUPS names (Entra groups are object ids). */
const ALLOWED = '5c0be1f4-1d2e-4f3a-9b8c-7d6e5f4a3b2c';
const ROLE: GraphMembership = { type: 'directoryRole', id: 'f0e1d2c3-0000-4000-8000-00000000001e' };
const UNIT: GraphMembership = { type: 'administrativeUnit', id: 'f0e1d2c3-0000-4000-8000-00000000a0a0' };

const groups = (ids: string[]): GraphMembership[] => ids.map((id) => ({ type: 'group', id }));
/** 249 groups, a directory role and an administrative unit, the allowed group last. */
const CAROL_GROUPS = [...groupIds(249, '0000c0c0'), ALLOWED];
const carolMemberships = (): GraphMembership[] => [
  ...groups(CAROL_GROUPS.slice(0, 3)),
  ROLE,
  ...groups(CAROL_GROUPS.slice(3, 100)),
  UNIT,
  ...groups(CAROL_GROUPS.slice(100)),
];
const DAVE_GROUPS = groupIds(230, '0000da7e');

interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
}

/** A backend that records what reaches it and echoes it back. */
async function recordingBackend(seen: Seen[]): Promise<Listening> {
  return startBackend((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
}

interface EntraStack {
  stack: OidcStack;
  graph: GraphSim;
  /** Requests that reached the backend. */
  seen: Seen[];
  /** While true, Graph finds no user for any token (as for a token that is not Graph's). */
  refuseTokens: boolean;
  close(): Promise<void>;
}

/** Graph simulator, dev IdP, proxy (OIDC_PROVIDER=microsoft, MICROSOFT_GRAPH_URL = the simulator). */
async function startEntraStack(
  env: Record<string, string>,
  users: DevUser[],
  idp: Partial<DevIdpOptions> = {},
): Promise<EntraStack> {
  const seen: Seen[] = [];
  let stack: OidcStack | undefined;
  const state = { refuseTokens: false };
  // Graph trusts the token's issuer: the dev IdP's userinfo says whose token it is.
  const byIssuer = userinfoVerifier(() => `${stack?.idp.issuer}/me`);
  const graph = await startGraphSim({
    verifyToken: (token) => (state.refuseTokens || !stack ? Promise.resolve(undefined) : byIssuer(token)),
    memberships: {
      carol: carolMemberships(),
      dave: groups(DAVE_GROUPS),
      erin: groups([ALLOWED, ...groupIds(3, '0000e7e0')]),
    },
  });
  stack = await startOidcStack(
    {
      OIDC_PROVIDER: 'microsoft',
      MICROSOFT_GRAPH_URL: graph.url,
      AUTH_RATE_LIMIT_PER_MINUTE: '0',
      ...env,
    },
    { users, ...idp },
    () => recordingBackend(seen),
  );
  const started = stack;
  return {
    stack: started,
    graph,
    seen,
    get refuseTokens() {
      return state.refuseTokens;
    },
    set refuseTokens(v: boolean) {
      state.refuseTokens = v;
    },
    close: async () => {
      await started.close();
      await graph.close();
    },
  };
}

function user(username: string, extra: Partial<DevUser>): DevUser {
  return {
    username,
    password: PASSWORD,
    email: `${username}@contoso.example`,
    name: username,
    groups: [],
    ...extra,
  };
}

const login = (s: EntraStack, username: string, jar = new CookieJar(), path = '/tools') =>
  loginThroughBrowserless(`${s.stack.url}${path}`, { username, password: PASSWORD }, { jar });

const forwardedGroups = (body: string): string[] =>
  ((JSON.parse(body) as Seen).headers['x-forwarded-groups'] as string | undefined)?.split(',') ?? [];

async function hasSession(s: EntraStack, jar: CookieJar): Promise<boolean> {
  const res = await fetch(`${s.stack.url}/probe`, { headers: { cookie: jar.get(s.stack.url) } });
  await res.body?.cancel();
  return res.status === 200;
}

async function logLine(s: EntraStack, predicate: (l: Record<string, unknown>) => boolean, what: string) {
  await waitFor(() => s.stack.proxy.logs.some(predicate), 2000, what);
  return s.stack.proxy.logs.find(predicate) as Record<string, unknown>;
}

/** The log line naming why the Graph lookup failed. */
const graphFailure = (s: EntraStack, text: string) =>
  logLine(
    s,
    (l) =>
      l.msg === 'group lookup in Microsoft Graph failed (groups overage)' && String(l.err).includes(text),
    `Graph failure log "${text}"`,
  );

describe('Entra ID groups overage (OIDC_PROVIDER=microsoft, Graph simulator)', () => {
  /** Where a token's `_claim_sources` points: an attacker's server, which must never be called. */
  let attacker: Listening;
  const attackerHits: Seen[] = [];
  let gated: EntraStack;

  beforeAll(async () => {
    attacker = await startBackend((req, res) => {
      attackerHits.push({ url: req.url ?? '', headers: req.headers });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ value: [ALLOWED] }));
    });
    const endpoint = { endpoint: `${attacker.url}/v1.0/users/victim/getMemberObjects` };
    gated = await startEntraStack({ ALLOWED_GROUPS: ALLOWED }, [
      // Few enough groups for the token: they come in the `groups` claim.
      user('alice', { groups: [ALLOWED, 'a1a1a1a1-0000-4000-8000-000000000001'] }),
      user('carol', { groupsOverage: endpoint }),
      user('dave', { groupsOverage: endpoint }),
      user('erin', { groupsOverage: 'hasgroups' }),
    ]);
  });

  afterAll(async () => {
    await gated?.close();
    await attacker?.close();
  });

  beforeEach(() => {
    gated.graph.fail(undefined);
    gated.graph.hang(false);
    gated.graph.limitPageSize(undefined);
    gated.graph.nextLinksTo(undefined);
    gated.refuseTokens = false;
  });

  it('an overage user in the allowed group signs in; the backend gets the groups read from Graph', async () => {
    const before = gated.graph.requests.length;
    const result = await login(gated, 'carol');
    expect(result.status).toBe(200);
    const forwarded = forwardedGroups(result.body);
    // Every group, and only groups: the directory role and administrative unit are not groups.
    expect(new Set(forwarded)).toEqual(new Set(CAROL_GROUPS));
    expect(forwarded).toHaveLength(250);
    expect(forwarded).not.toContain(ROLE.id);
    expect(forwarded).not.toContain(UNIT.id);

    // One call: the signed-in user's memberships, ids only, 999 a page, with the user's access token.
    const calls = gated.graph.requests.slice(before);
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call?.method).toBe('GET');
    expect(call?.path).toBe('/v1.0/me/transitiveMemberOf');
    expect(call?.query.get('$select')).toBe('id');
    expect(call?.query.get('$top')).toBe('999');
    expect(call?.headers.authorization).toMatch(/^Bearer \S{20,}$/);
    expect(attackerHits).toEqual([]);
  });

  it('an overage user outside the allowed group gets 403', async () => {
    const jar = new CookieJar();
    const result = await login(gated, 'dave', jar);
    expect(result.status).toBe(403);
    expect(result.body).toContain('ALLOWED_GROUPS');
    expect(await hasSession(gated, jar)).toBe(false);
  });

  it('`hasgroups: true` (no `_claim_names`) is an overage indicator too', async () => {
    const before = gated.graph.requests.length;
    const result = await login(gated, 'erin');
    expect(result.status).toBe(200);
    expect(forwardedGroups(result.body)).toContain(ALLOWED);
    expect(gated.graph.requests.length).toBe(before + 1);
  });

  it('a user whose token carries `groups` costs no call to Graph', async () => {
    const before = gated.graph.requests.length;
    const result = await login(gated, 'alice');
    expect(result.status).toBe(200);
    expect(forwardedGroups(result.body)).toEqual([ALLOWED, 'a1a1a1a1-0000-4000-8000-000000000001']);
    expect(gated.graph.requests.length).toBe(before);
  });

  it('follows @odata.nextLink through every page: a group on the last page counts', async () => {
    gated.graph.limitPageSize(60);
    const before = gated.graph.requests.length;
    const result = await login(gated, 'carol');
    expect(result.status).toBe(200);
    expect(new Set(forwardedGroups(result.body))).toEqual(new Set(CAROL_GROUPS));
    const calls = gated.graph.requests.slice(before);
    // 252 memberships, 60 a page.
    expect(calls).toHaveLength(5);
    expect(calls[0]?.query.has('$skiptoken')).toBe(false);
    for (const call of calls.slice(1)) {
      expect(call.path).toBe('/v1.0/me/transitiveMemberOf');
      expect(call.query.get('$skiptoken')).toMatch(/.+/);
      expect(call.headers.authorization).toBe(calls[0]?.headers.authorization);
    }
  });

  /** A login whose Graph lookup fails: no session, nothing forwarded, and the page it ends on. */
  async function refusedLogin(username = 'carol') {
    const jar = new CookieJar();
    const backendBefore = gated.seen.length;
    const result = await login(gated, username, jar, '/refused');
    expect(await hasSession(gated, jar)).toBe(false);
    expect(gated.seen.slice(backendBefore)).toEqual([]);
    expect(result.body).not.toMatch(/Bearer|eyJ|access_token/);
    return result;
  }

  it('Graph refusing the lookup (403) fails the login, naming the permission to grant', async () => {
    gated.graph.fail(GRAPH_FAULTS.insufficientPrivileges);
    const result = await refusedLogin();
    expect(result.status).toBe(401);
    expect(result.body).toContain('Sign-in failed');
    expect(result.body).toContain('Your group memberships could not be read from Microsoft Graph');
    const line = await graphFailure(gated, 'Microsoft Graph refused the group lookup (403');
    expect(String(line.err)).toBe(
      'Microsoft Graph refused the group lookup (403 Authorization_RequestDenied: Insufficient privileges to complete the operation.): grant the app registration the delegated Microsoft Graph permission User.Read (or GroupMember.Read.All) with consent for the tenant',
    );
    await logLine(
      gated,
      (l) => l.audit === 'login_failure' && l.reason === 'insufficient_scope',
      'audit login_failure insufficient_scope',
    );
  });

  it('Graph refusing the token itself (401: not a token for Graph) fails the login, naming OIDC_SCOPES', async () => {
    gated.refuseTokens = true;
    const result = await refusedLogin();
    expect(result.status).toBe(401);
    await graphFailure(gated, 'must be one for Microsoft Graph, so OIDC_SCOPES must not ask for another API');
    await logLine(
      gated,
      (l) => l.audit === 'login_failure' && l.reason === 'graph_token_rejected',
      'audit login_failure graph_token_rejected',
    );
  });

  it('Graph failing (500) fails the login as the provider being unavailable', async () => {
    gated.graph.fail(GRAPH_FAULTS.internal);
    const result = await refusedLogin();
    expect(result.status).toBe(503);
    expect(result.body).toContain('Identity provider unavailable');
    await graphFailure(gated, 'Microsoft Graph failed the group lookup (500 generalException');
  });

  it('a short Retry-After (429) is waited for and the lookup retried once', async () => {
    gated.graph.fail(GRAPH_FAULTS.throttled(1), 1);
    const before = gated.graph.requests.length;
    const result = await login(gated, 'carol');
    expect(result.status).toBe(200);
    expect(forwardedGroups(result.body)).toContain(ALLOWED);
    const [throttled, retried] = gated.graph.requests.slice(before);
    expect(retried).toBeDefined();
    expect((retried?.at ?? 0) - (throttled?.at ?? 0)).toBeGreaterThanOrEqual(950);
  });

  it('a long Retry-After, or throttling again, fails the login at once', async () => {
    gated.graph.fail(GRAPH_FAULTS.throttled(120));
    const before = gated.graph.requests.length;
    const result = await refusedLogin();
    expect(result.status).toBe(503);
    expect(gated.graph.requests.length - before).toBe(1);
    await graphFailure(gated, 'Microsoft Graph throttled the group lookup (429 TooManyRequests');
    await graphFailure(gated, 'Retry-After 120 s');

    gated.graph.fail(GRAPH_FAULTS.throttled(1));
    const again = gated.graph.requests.length;
    expect((await refusedLogin()).status).toBe(503);
    expect(gated.graph.requests.length - again).toBe(2);
  });

  it('more pages than the bound fail the login instead of cutting the list short', async () => {
    gated.graph.limitPageSize(20);
    const before = gated.graph.requests.length;
    const result = await refusedLogin();
    expect(result.status).toBe(401);
    expect(result.body).toContain('Your group memberships could not be read from Microsoft Graph');
    // 252 memberships at 20 a page would take 13 pages; the proxy reads 10.
    expect(gated.graph.requests.length - before).toBe(10);
    await graphFailure(
      gated,
      'more groups than the proxy reads from Microsoft Graph (10 pages of up to 999)',
    );
    await logLine(
      gated,
      (l) => l.audit === 'login_failure' && l.reason === 'too_many_groups',
      'audit login_failure too_many_groups',
    );
  });

  it('an @odata.nextLink to another origin is not followed: the token goes to MICROSOFT_GRAPH_URL only', async () => {
    gated.graph.limitPageSize(100);
    gated.graph.nextLinksTo(attacker.url);
    const result = await refusedLogin();
    expect(result.status).toBe(401);
    await graphFailure(gated, 'an @odata.nextLink outside MICROSOFT_GRAPH_URL');
    expect(attackerHits).toEqual([]);
  });

  it('never contacts the `_claim_sources` endpoint the tokens name', () => {
    // Every overage login above carried `_claim_sources` pointing at the attacker's server.
    expect(attackerHits).toEqual([]);
  });

  it('Graph not answering fails the login after the request timeout (10 s)', {
    timeout: 20_000,
  }, async () => {
    gated.graph.hang(true);
    const started = Date.now();
    const result = await refusedLogin();
    expect(result.status).toBe(503);
    expect(Date.now() - started).toBeGreaterThanOrEqual(9_500);
    await graphFailure(
      gated,
      'Microsoft Graph could not be reached for the group lookup (no answer within 10 s)',
    );
  });
});

describe('Entra ID groups overage without ALLOWED_GROUPS', () => {
  let open: EntraStack;
  beforeAll(async () => {
    open = await startEntraStack({}, [
      user('carol', {
        groupsOverage: { endpoint: 'https://graph.windows.net/contoso/users/carol/getMemberObjects' },
      }),
    ]);
  });
  afterAll(async () => {
    await open?.close();
  });

  it('forwards the groups read from Graph', async () => {
    const result = await login(open, 'carol');
    expect(result.status).toBe(200);
    expect(new Set(forwardedGroups(result.body))).toEqual(new Set(CAROL_GROUPS));
  });

  it('still fails the login when Graph cannot be read: the backend never sees the user without groups', async () => {
    open.graph.fail(GRAPH_FAULTS.insufficientPrivileges);
    try {
      const jar = new CookieJar();
      const before = open.seen.length;
      const result = await login(open, 'carol', jar);
      expect(result.status).toBe(401);
      expect(open.seen.length).toBe(before);
      expect(await hasSession(open, jar)).toBe(false);
    } finally {
      open.graph.fail(undefined);
    }
  });
});

describe('Entra ID groups overage at token refresh', () => {
  let refreshing: EntraStack;
  const NEW_GROUP = 'beefbeef-0000-4000-8000-000000000042';

  beforeAll(async () => {
    refreshing = await startEntraStack(
      { ALLOWED_GROUPS: ALLOWED },
      [user('carol', { groupsOverage: 'hasgroups' })],
      // Access tokens inside the proxy's refresh margin: every request refreshes.
      { ttl: { AccessToken: 30 } },
    );
  });
  afterAll(async () => {
    await refreshing?.close();
  });

  const get = async (jar: CookieJar) => {
    const res = await fetch(`${refreshing.stack.url}/tools`, {
      headers: { cookie: jar.get(refreshing.stack.url), accept: 'application/json' },
    });
    return { status: res.status, body: await res.text() };
  };

  it('re-reads the groups from Graph at each refresh: a new group shows, a removed one denies', async () => {
    refreshing.graph.setMemberships('carol', carolMemberships());
    const jar = new CookieJar();
    const signedIn = await login(refreshing, 'carol', jar);
    expect(signedIn.status).toBe(200);
    expect(forwardedGroups(signedIn.body)).not.toContain(NEW_GROUP);

    refreshing.graph.setMemberships('carol', [...carolMemberships(), { type: 'group', id: NEW_GROUP }]);
    const before = refreshing.graph.requests.length;
    const grown = await get(jar);
    expect(grown.status).toBe(200);
    expect(forwardedGroups(grown.body)).toContain(NEW_GROUP);
    expect(refreshing.graph.requests.length).toBe(before + 1);
    await logLine(refreshing, (l) => l.audit === 'session_refreshed', 'audit session_refreshed');

    refreshing.graph.setMemberships('carol', groups([NEW_GROUP]));
    const removed = await get(jar);
    expect(removed.status).toBe(403);
  });

  it('Graph refusing at refresh ends the session; Graph down keeps it with the groups it had', async () => {
    refreshing.graph.setMemberships('carol', carolMemberships());
    const jar = new CookieJar();
    expect((await login(refreshing, 'carol', jar)).status).toBe(200);

    refreshing.graph.fail(GRAPH_FAULTS.internal);
    try {
      const kept = await get(jar);
      expect(kept.status).toBe(200);
      expect(new Set(forwardedGroups(kept.body))).toEqual(new Set(CAROL_GROUPS));
    } finally {
      refreshing.graph.fail(undefined);
    }
    // The refresh before Graph failed rotated the refresh token: the session kept the new one,
    // so refreshing works again once Graph is back (the spent one would revoke the grant).
    const resumed = await get(jar);
    expect(resumed.status).toBe(200);
    expect(
      refreshing.stack.proxy.logs.filter((l) => l.audit === 'session_expired' || l.audit === 'login_failure'),
    ).toEqual([]);

    refreshing.graph.fail(GRAPH_FAULTS.insufficientPrivileges);
    try {
      const seenBefore = refreshing.seen.length;
      const ended = await get(jar);
      expect(ended.status).toBe(401);
      expect(refreshing.seen.length).toBe(seenBefore);
      await logLine(
        refreshing,
        (l) => l.audit === 'session_expired' && l.reason === 'refresh_failed: insufficient_scope',
        'audit session_expired refresh_failed: insufficient_scope',
      );
      expect(await hasSession(refreshing, jar)).toBe(false);
    } finally {
      refreshing.graph.fail(undefined);
    }
  });
});

describe('the Graph simulator answers as Microsoft documents', () => {
  let sim: GraphSim;
  const auth = { authorization: 'Bearer token-of-carol' };
  beforeAll(async () => {
    sim = await startGraphSim({
      verifyToken: async (token) => (token === 'token-of-carol' ? 'carol' : undefined),
      memberships: { carol: carolMemberships() },
    });
  });
  afterAll(async () => {
    await sim?.close();
  });

  const list = (query: string, headers: Record<string, string> = auth, cast = '') =>
    fetch(`${sim.url}/v1.0/me/transitiveMemberOf${cast}?${query}`, { headers });

  it('401 InvalidAuthenticationToken without a token or with one it does not know, in the error shape', async () => {
    for (const headers of [{}, { authorization: 'Bearer not-a-token' }] as Array<Record<string, string>>) {
      const res = await list('$select=id', headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('request-id')).toMatch(/^[0-9a-f-]{36}$/);
      const body = (await res.json()) as { error: { code: string; message: string; innerError: object } };
      expect(body.error.code).toBe('InvalidAuthenticationToken');
      expect(body.error.innerError).toMatchObject({ 'request-id': res.headers.get('request-id') });
    }
  });

  it('pages of 100 by default, at most 999, each member with its @odata.type', async () => {
    const first = (await (await list('$select=id')).json()) as {
      value: Array<Record<string, unknown>>;
      '@odata.nextLink': string;
    };
    expect(first.value).toHaveLength(100);
    expect(first.value[3]).toEqual({ '@odata.type': '#microsoft.graph.directoryRole', id: ROLE.id });
    const next = new URL(first['@odata.nextLink']);
    expect(next.origin).toBe(sim.url);
    expect(next.searchParams.get('$select')).toBe('id');
    expect(next.searchParams.get('$skiptoken')).toMatch(/.+/);
    expect((await list('$top=1000')).status).toBe(400);
    const all = (await (await list('$top=999')).json()) as { value: unknown[]; '@odata.nextLink'?: string };
    expect(all.value).toHaveLength(252);
    expect(all['@odata.nextLink']).toBeUndefined();
  });

  it('the OData cast to groups is an advanced query: ConsistencyLevel eventual and $count=true', async () => {
    const plain = await list('$select=id', auth, '/microsoft.graph.group');
    expect(plain.status).toBe(400);
    expect(((await plain.json()) as { error: { code: string } }).error.code).toBe('Request_UnsupportedQuery');
    const advanced = await list(
      '$select=id&$count=true&$top=999',
      { ...auth, consistencylevel: 'eventual' },
      '/microsoft.graph.group',
    );
    const body = (await advanced.json()) as { value: unknown[]; '@odata.count': number };
    expect(body['@odata.count']).toBe(250);
    expect(body.value).toHaveLength(250);
  });
});
