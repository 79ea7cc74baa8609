/**
 * Parallel refreshes and revocations through the real flow: the dev OIDC provider, an MCP server,
 * the official SDK client authorizing headlessly, and two proxy instances sharing one Redis (an
 * own redis-server, so nothing else's keys are in it) behind one PUBLIC_URL, as behind a load
 * balancer.
 *
 * - REFRESH_REUSE_GRACE: identical refresh requests sent at the same instant, to one instance or
 *   spread over both, all succeed with the same successor and the grant lives on; a rotated token
 *   from another client, or after the grace, revokes the grant.
 * - Revocation bites: revoking a grant (/revoke, the admin API) or a user ends the access tokens
 *   minted from it within a second on both instances; another grant of the same user is untouched.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ConnectedMcpClient,
  connectMcpClient,
  initializeWithBearer,
} from '../helpers/mcp-oauth-client.js';
import { startMcpServer } from '../helpers/mcp-server.js';
import { type OidcStack, oidcProxyEnv, startOidcStack } from '../helpers/oidc-stack.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { freePort, startTestProxy, type TestProxy, waitFor } from '../helpers/servers.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
const PARALLEL = 5;

interface TokenAnswer {
  status: number;
  access_token?: string;
  refresh_token?: string;
  error?: string;
}

/** POST /token with grant_type=refresh_token, as the public client `clientId`. */
async function refresh(proxyUrl: string, clientId: string, refreshToken: string): Promise<TokenAnswer> {
  const res = await fetch(`${proxyUrl}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: clientId,
    }),
  });
  return { status: res.status, ...((await res.json()) as Omit<TokenAnswer, 'status'>) };
}

/**
 * An MCP initialize with the bearer token: 'accepted' when the proxy let it through to the MCP
 * server, 'invalid_token' when refused with RFC 6750's invalid_token, the status otherwise.
 */
async function mcpVerdict(proxyUrl: string, accessToken: string): Promise<string> {
  const res = await initializeWithBearer(proxyUrl, accessToken);
  await res.text();
  if (res.status === 200) return 'accepted';
  const challenge = res.headers.get('www-authenticate') ?? '';
  return res.status === 401 && challenge.includes('error="invalid_token"')
    ? 'invalid_token'
    : `${res.status}`;
}

function auditCount(proxies: TestProxy[], event: string): number {
  return proxies.flatMap((p) => p.logs).filter((l) => l.audit === event).length;
}

describe('refresh grace and revocation: two instances on one Redis', () => {
  let redis: RedisServer;
  let stack: OidcStack;
  let b: TestProxy;
  /** Instance A (the stack's proxy) and instance B, same PUBLIC_URL, same Redis, same secret. */
  let instances: TestProxy[];
  const clients: ConnectedMcpClient[] = [];

  beforeAll(async () => {
    redis = await startRedisServer(await freePort());
    const shared = {
      SESSION_STORE: 'redis',
      REDIS_URL: redis.url,
      SESSION_SECRET: randomBytes(36).toString('base64url'),
      // Parallel refreshes from one address: the limit is not what these tests are about.
      AUTH_RATE_LIMIT_PER_MINUTE: '10000',
      ADMIN_ENABLED: 'true',
      ADMIN_TOKEN,
    };
    stack = await startOidcStack(shared, {}, startMcpServer);
    b = await startTestProxy({
      ...oidcProxyEnv(stack.idp, stack.url),
      SERVER_HOST: '127.0.0.1',
      SERVER_PORT: '0',
      PROXY_TARGET_URL: stack.backend.url,
      ...shared,
    });
    instances = [stack.proxy, b];
    await waitFor(async () => (await fetch(`${b.url}/health`)).status === 200, 10_000, 'instance B healthy');
  });
  afterAll(async () => {
    for (const c of clients) await c.client.close();
    await b?.close();
    await stack?.close();
    await redis?.stop();
  });

  /** A new grant: the SDK client registers, alice signs in and approves, tokens are issued (on A). */
  async function newGrant(): Promise<ConnectedMcpClient> {
    const connected = await connectMcpClient(stack.url);
    clients.push(connected);
    expect(connected.refreshToken).not.toBe('');
    return connected;
  }

  it(`${PARALLEL} identical refreshes at the same instant to one instance: all succeed, one successor, the grant lives on`, async () => {
    const grant = await newGrant();
    const answers = await Promise.all(
      Array.from({ length: PARALLEL }, () => refresh(stack.url, grant.clientId, grant.refreshToken)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(PARALLEL).fill(200));
    expect(new Set(answers.map((a) => a.refresh_token)).size).toBe(1);
    for (const a of answers) expect(await mcpVerdict(stack.url, a.access_token!)).toBe('accepted');
    const next = await refresh(stack.url, grant.clientId, answers[0]!.refresh_token!);
    expect(next.status).toBe(200);
    expect(await mcpVerdict(b.url, next.access_token!)).toBe('accepted');
    expect(auditCount(instances, 'refresh_reuse_detected')).toBe(0);
  });

  it(`${PARALLEL} identical refreshes at the same instant spread over both instances: all succeed, the grant lives on`, async () => {
    const grant = await newGrant();
    const answers = await Promise.all(
      Array.from({ length: PARALLEL }, (_, i) =>
        refresh(instances[i % 2]!.url, grant.clientId, grant.refreshToken),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(PARALLEL).fill(200));
    expect(new Set(answers.map((a) => a.refresh_token)).size).toBe(1);
    const next = await refresh(b.url, grant.clientId, answers[0]!.refresh_token!);
    expect(next.status).toBe(200);
    expect(await mcpVerdict(stack.url, next.access_token!)).toBe('accepted');
    expect(auditCount(instances, 'refresh_reuse_detected')).toBe(0);
  });

  it('a rotated refresh token presented by another client revokes the grant and its access tokens everywhere', async () => {
    const grant = await newGrant();
    const other = await newGrant();
    const rotated = await refresh(stack.url, grant.clientId, grant.refreshToken);
    expect(rotated.status).toBe(200);
    const stolen = await refresh(b.url, other.clientId, grant.refreshToken);
    expect(stolen).toMatchObject({ status: 400, error: 'invalid_grant' });
    expect(auditCount(instances, 'refresh_reuse_detected')).toBe(1);
    expect((await refresh(stack.url, grant.clientId, rotated.refresh_token!)).status).toBe(400);
    for (const proxy of instances) {
      for (const token of [grant.accessToken, rotated.access_token!]) {
        expect(await mcpVerdict(proxy.url, token)).toBe('invalid_token');
      }
      // The other client's grant is its own.
      expect(await mcpVerdict(proxy.url, other.accessToken)).toBe('accepted');
    }
  });

  it('/revoke of a refresh token ends the access tokens of that grant within a second on both instances, not those of another grant', async () => {
    const grant = await newGrant();
    const sibling = await newGrant();
    for (const proxy of instances) expect(await mcpVerdict(proxy.url, grant.accessToken)).toBe('accepted');
    const res = await fetch(`${b.url}/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: grant.refreshToken, client_id: grant.clientId }),
    });
    expect(res.status).toBe(200);
    for (const proxy of instances) {
      await waitFor(
        async () => (await mcpVerdict(proxy.url, grant.accessToken)) === 'invalid_token',
        1000,
        `the revoked grant's access token refused by ${proxy.url}`,
      );
      expect(await mcpVerdict(proxy.url, sibling.accessToken)).toBe('accepted');
    }
  });

  it('the admin API revoking a grant ends its access tokens within a second on both instances', async () => {
    const grant = await newGrant();
    const sibling = await newGrant();
    const admin = (path: string, method = 'GET') =>
      fetch(`${b.url}${path}`, { method, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    const listed = (await (await admin(`/admin/api/tokens?client_id=${grant.clientId}`)).json()) as {
      tokens: Array<{ id: string }>;
    };
    expect(listed.tokens).toHaveLength(1);
    expect((await admin(`/admin/api/tokens/${listed.tokens[0]!.id}`, 'DELETE')).status).toBe(200);
    for (const proxy of instances) {
      await waitFor(
        async () => (await mcpVerdict(proxy.url, grant.accessToken)) === 'invalid_token',
        1000,
        `the revoked grant's access token refused by ${proxy.url}`,
      );
      expect(await mcpVerdict(proxy.url, sibling.accessToken)).toBe('accepted');
    }
    expect((await refresh(stack.url, grant.clientId, grant.refreshToken)).status).toBe(400);
    expect((await refresh(stack.url, sibling.clientId, sibling.refreshToken)).status).toBe(200);
  });

  it('the admin API revoking the user ends every access token of theirs within a second on both instances', async () => {
    const first = await newGrant();
    const second = await newGrant();
    const res = await fetch(`${stack.url}/admin/api/users/alice`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    for (const proxy of instances) {
      for (const grant of [first, second]) {
        await waitFor(
          async () => (await mcpVerdict(proxy.url, grant.accessToken)) === 'invalid_token',
          1000,
          `alice's access token refused by ${proxy.url}`,
        );
      }
    }
  });
});

describe('REFRESH_REUSE_GRACE=1: a repeat after the grace revokes the grant', () => {
  let stack: OidcStack;

  beforeAll(async () => {
    stack = await startOidcStack({ REFRESH_REUSE_GRACE: '1' }, {}, startMcpServer);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('within the second the repeat gets the successor; after it, the grant and its access tokens are revoked', async () => {
    const grant = await connectMcpClient(stack.url);
    try {
      const rotated = await refresh(stack.url, grant.clientId, grant.refreshToken);
      // Taken after the rotation answered: the rotation's own time is no later than this.
      const rotatedBy = Date.now();
      expect(rotated.status).toBe(200);
      const repeat = await refresh(stack.url, grant.clientId, grant.refreshToken);
      if (Date.now() - rotatedBy < 1000) expect(repeat.refresh_token).toBe(rotated.refresh_token);
      await waitFor(() => Date.now() - rotatedBy > 1000, 3000, 'the grace to pass');
      const late = await refresh(stack.url, grant.clientId, grant.refreshToken);
      expect(late).toMatchObject({ status: 400, error: 'invalid_grant' });
      expect(stack.proxy.logs.filter((l) => l.audit === 'refresh_reuse_detected')).toHaveLength(1);
      expect((await refresh(stack.url, grant.clientId, rotated.refresh_token!)).status).toBe(400);
      expect(await mcpVerdict(stack.url, rotated.access_token!)).toBe('invalid_token');
    } finally {
      await grant.client.close();
    }
  });
});
