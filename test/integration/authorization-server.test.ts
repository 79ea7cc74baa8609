/**
 * The authorization server's use cases through its own API (what the admin API calls): revoking a
 * user or a client, with the counts it reports, and rotating the signing key. Run on the memory
 * store and on a real Redis shared by two instances, as deployments run it.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuthorizationGrant } from '../../src/auth/facade/authorization-codes.js';
import type { AuthorizationServer } from '../../src/auth/facade/authorization-server.js';
import { InvalidTokenError } from '../../src/auth/facade/errors.js';
import type { UpstreamIdentity } from '../../src/auth/oidc/provider.js';
import { createLogger } from '../../src/observability/logger.js';
import { createStateStore } from '../../src/store/index.js';
import type { StateStore } from '../../src/store/state-store.js';
import { testAuthorizationServer } from '../helpers/authorization-server.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Every key the Redis runs write lives under this prefix, and is deleted after each test. */
const RUN_PREFIX = `mcp-oidc-proxy-test:authz-server:${randomUUID()}:`;
const PUBLIC_URL = 'https://proxy.example.com';
const SECRET = 'authorization-server-test-secret';
const REDIRECT = 'http://127.0.0.1:7777/callback';
const CONFIGURED = 'configured-app';

/** The counts of a revocation that found nothing to revoke. */
const NOTHING_REVOKED = { grantsRevoked: 0, consentsRevoked: 0, codesRevoked: 0 };

const alice: UpstreamIdentity = { sub: 'alice', email: 'alice@example.com', groups: ['mcp-users'] };
const bob: UpstreamIdentity = { sub: 'bob', email: 'bob@example.com', groups: ['mcp-users'] };

const logger = createLogger('silent');

function newServer(store: StateStore): AuthorizationServer {
  return testAuthorizationServer({
    store,
    publicUrl: PUBLIC_URL,
    logger,
    secret: SECRET,
    preRegistered: [{ clientId: CONFIGURED, redirectUris: [REDIRECT], name: 'Configured App' }],
  });
}

/** What one user holds through one client after signing in and approving it. */
async function connect(server: AuthorizationServer, identity: UpstreamIdentity, clientId: string) {
  const now = Date.now();
  const grant = {
    clientId,
    sub: identity.sub,
    scope: 'mcp',
    resource: server.resources.first().url,
    email: identity.email,
    groups: [...identity.groups],
    signedInAt: now,
    approvedAt: now,
  };
  await server.consents.remember(identity.sub, clientId, server.resources.first().url, 'mcp');
  const refresh = await server.grants.issue(grant);
  const access = await server.accessTokens.mintAccessToken({
    ...grant,
    audience: server.resources.first().url,
    ttlSeconds: 300,
  });
  const unused: AuthorizationGrant = {
    ...grant,
    redirectUri: REDIRECT,
    codeChallenge: 'x'.repeat(43),
    sessionId: 'session',
  };
  const code = await server.codes.issue(unused);
  return { refresh, access, code };
}

async function register(server: AuthorizationServer, name: string): Promise<string> {
  const client = await server.clients.register({ client_name: name, redirect_uris: [REDIRECT] });
  return client.client_id;
}

/** Resolves to `accepted`, or to the reason the token is refused. */
function verdict(server: AuthorizationServer, token: string): Promise<string> {
  return server.accessTokens.verifyAccessToken(token, { audience: server.resources.first().url }).then(
    () => 'accepted',
    (error: unknown) => (error instanceof InvalidTokenError ? `${error.reason}` : `unexpected ${error}`),
  );
}

describe.each([
  ['memory', false],
  ['Redis, two instances', true],
])('AuthorizationServer on %s', (_name, shared) => {
  const stores: StateStore[] = [];
  let caseNumber = 0;

  afterEach(async () => {
    // Each test's Redis key space is emptied through the store itself, then every connection closed.
    for (const store of stores.splice(0)) {
      for (const key of await store.keys('')) await store.delete(key);
      await store.close();
    }
  });

  /**
   * Two instances of the server: on Redis each has its own connection to one key space (a fresh
   * one per test); on memory they are the same instance.
   */
  function servers(): [AuthorizationServer, AuthorizationServer] {
    if (!shared) {
      const store = createStateStore({ kind: 'memory' });
      stores.push(store);
      const server = newServer(store);
      return [server, server];
    }
    const keyPrefix = `${RUN_PREFIX}${++caseNumber}:`;
    const [a, b] = [0, 1].map(() => {
      const store = createStateStore({ kind: 'redis', redisUrl: REDIS_URL, keyPrefix });
      stores.push(store);
      return newServer(store);
    }) as [AuthorizationServer, AuthorizationServer];
    return [a, b];
  }

  it('revokeUser ends everything of that user, reports what it found, and leaves other users alone', async () => {
    const [a, b] = servers();
    const [appOne, appTwo] = [await register(a, 'App One'), await register(a, 'App Two')];
    await a.sessions.create('test', alice, { accessToken: 'upstream' });
    await a.sessions.create('test', alice, { accessToken: 'upstream' });
    await a.sessions.create('test', bob, { accessToken: 'upstream' });
    const aliceOne = await connect(a, alice, appOne);
    const aliceTwo = await connect(a, alice, appTwo);
    const bobOne = await connect(a, bob, appOne);

    const before = Date.now();
    const revoked = await b.revokeUser('alice');
    expect(revoked).toMatchObject({
      sessionsRevoked: 2,
      grantsRevoked: 2,
      consentsRevoked: 2,
      codesRevoked: 2,
    });
    expect(revoked.accessTokensRevokedBefore.getTime()).toBeGreaterThanOrEqual(before);

    // Nothing of Alice's works on either instance any more.
    for (const server of [a, b]) {
      expect(await verdict(server, aliceOne.access.token)).toBe('revoked');
      expect(await verdict(server, aliceTwo.access.token)).toBe('revoked');
    }
    await expect(a.grants.rotate(aliceOne.refresh.token)).rejects.toMatchObject({ reason: 'revoked' });
    expect(await a.codes.redeem(aliceTwo.code)).toEqual({ kind: 'unknown' });
    expect(await a.consents.covers('alice', appOne, a.resources.first().url, 'mcp')).toBe(false);
    expect((await a.sessions.list()).map((s) => s.record.identity.sub)).toEqual(['bob']);

    // Bob's grant, consent, code and token are untouched.
    expect(await verdict(a, bobOne.access.token)).toBe('accepted');
    expect((await a.grants.list()).map((f) => f.sub)).toEqual(['bob']);
    expect(await a.consents.covers('bob', appOne, a.resources.first().url, 'mcp')).toBe(true);
    expect(await a.codes.redeem(bobOne.code)).toMatchObject({ kind: 'redeemed' });

    // A user with nothing left still gets the cut-off, and zero counts.
    expect(await b.revokeUser('alice')).toMatchObject({ sessionsRevoked: 0, ...NOTHING_REVOKED });
  });

  it('revokeClient deletes the registration and everything issued to it, and reports the counts', async () => {
    const [a, b] = servers();
    const [revokedApp, keptApp] = [await register(a, 'Revoked App'), await register(a, 'Kept App')];
    const aliceRevoked = await connect(a, alice, revokedApp);
    const bobRevoked = await connect(a, bob, revokedApp);
    const aliceKept = await connect(a, alice, keptApp);

    expect(await b.revokeClient(revokedApp)).toEqual({
      registration: 'deleted',
      clientName: 'Revoked App',
      grantsRevoked: 2,
      consentsRevoked: 2,
      codesRevoked: 2,
    });
    expect(await a.clients.get(revokedApp)).toBeUndefined();
    for (const server of [a, b]) {
      expect(await verdict(server, aliceRevoked.access.token)).toBe('revoked');
      expect(await verdict(server, bobRevoked.access.token)).toBe('revoked');
    }
    expect(await a.codes.redeem(bobRevoked.code)).toEqual({ kind: 'unknown' });
    expect(await a.consents.covers('alice', revokedApp, a.resources.first().url, 'mcp')).toBe(false);

    // The other client keeps its registration, grant, consent and tokens.
    expect(await a.clients.get(keptApp)).toMatchObject({ client_name: 'Kept App' });
    expect(await verdict(a, aliceKept.access.token)).toBe('accepted');
    expect((await a.grants.list()).map((f) => f.clientId)).toEqual([keptApp]);
    expect(await a.consents.covers('alice', keptApp, a.resources.first().url, 'mcp')).toBe(true);

    // Revoking it again finds nothing.
    expect(await b.revokeClient(revokedApp)).toEqual({
      registration: 'not_found',
      clientName: undefined,
      ...NOTHING_REVOKED,
    });
  });

  it('revokeClient leaves a pre-registered client and what it holds alone', async () => {
    const [a, b] = servers();
    const held = await connect(a, alice, CONFIGURED);
    expect(await b.revokeClient(CONFIGURED)).toEqual({
      registration: 'pre_registered',
      clientName: 'Configured App',
      ...NOTHING_REVOKED,
    });
    expect(await verdict(b, held.access.token)).toBe('accepted');
    expect(await a.grants.list()).toHaveLength(1);
    expect(await a.consents.covers('alice', CONFIGURED, a.resources.first().url, 'mcp')).toBe(true);
  });

  it('rotateKeys signs new tokens with a new key while tokens of the old one stay valid', async () => {
    const [a, b] = servers();
    const old = await connect(a, alice, CONFIGURED);
    const kid = await b.rotateKeys();
    expect(kid).not.toBe(old.access.kid);
    const fresh = await connect(a, bob, CONFIGURED);
    expect(fresh.access.kid).toBe(kid);
    for (const server of [a, b]) {
      expect(await verdict(server, old.access.token)).toBe('accepted');
      expect(await verdict(server, fresh.access.token)).toBe('accepted');
      // The new key first, the retired one still published for the tokens it signed.
      expect((await server.signingKeys.jwks()).keys.map((key) => key.kid)).toEqual([kid, old.access.kid]);
    }
  });
});
