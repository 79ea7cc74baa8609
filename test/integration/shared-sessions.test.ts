/**
 * Several proxy instances sharing sessions through a real Redis (SESSION_STORE=redis), as in a
 * deployment behind a load balancer: one login serves every instance, survives a restart, and
 * is refused by an instance with another SESSION_SECRET. The sessions gauge and /health count
 * what the store really holds.
 *
 * Isolation: the store has no key-prefix setting, so the proxies use their default keys in a
 * Redis database of their own (REDIS_URL's /db), claimed with a marker key only when no proxy
 * key is in it. Every proxy key found there afterwards was written by these proxies and is
 * deleted, and the claim released.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type DevIdp, startDevIdp } from '../../src/demo/dev-idp.js';
import { CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { CLIENT_ID, CLIENT_SECRET } from '../helpers/oidc-stack.js';
import { onFreshPorts } from '../helpers/ports.js';
import {
  type Listening,
  startEchoBackend,
  startTestProxy,
  type TestProxy,
  waitFor,
} from '../helpers/servers.js';
import { REDIS_URL, scanKeys } from '../helpers/shared-redis.js';

const CLAIM_KEY = 'mcp-oidc-proxy-test:db-claim';
const PROXY_KEYS = 'mcp-oidc-proxy:*';
const alice = { username: 'alice', password: 'alice-password' };

function redisUrl(db: number): string {
  const url = new URL(REDIS_URL);
  url.pathname = `/${db}`;
  return url.href;
}

const RELEASE_IF_MINE =
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0";

/** A database (1..15) that holds no proxy keys, marked as ours until released. */
async function claimDatabase(): Promise<{ db: number; redis: Redis; release(): Promise<void> }> {
  const token = randomUUID();
  for (let db = 15; db >= 1; db--) {
    const redis = new Redis(redisUrl(db));
    const claimed = (await redis.set(CLAIM_KEY, token, 'PX', 10 * 60_000, 'NX')) === 'OK';
    if (claimed && (await scanKeys(redis, PROXY_KEYS)).length === 0) {
      return {
        db,
        redis,
        release: async () => {
          await redis.eval(RELEASE_IF_MINE, 1, CLAIM_KEY, token);
          await redis.quit();
        },
      };
    }
    if (claimed) await redis.eval(RELEASE_IF_MINE, 1, CLAIM_KEY, token);
    await redis.quit();
  }
  throw new Error('no free Redis database (1..15) for the shared-sessions test');
}

async function sessionsGauge(proxyUrl: string): Promise<number> {
  const text = await (await fetch(`${proxyUrl}/metrics`)).text();
  const m = /^mcp_oidc_proxy_sessions_active (\d+)$/m.exec(text);
  if (!m) throw new Error('mcp_oidc_proxy_sessions_active missing from /metrics');
  return Number(m[1]);
}

interface Health {
  status: string;
  checks: { session_store: { status: string; active_sessions: number } };
}

async function health(proxyUrl: string): Promise<Health> {
  return (await (await fetch(`${proxyUrl}/health`)).json()) as Health;
}

/** Both counts, on every instance given, equal `n` (the health report is cached for a second). */
async function expectActiveSessions(n: number, ...urls: string[]): Promise<void> {
  for (const url of urls) {
    await waitFor(
      async () => (await sessionsGauge(url)) === n,
      5000,
      `mcp_oidc_proxy_sessions_active = ${n} on ${url}`,
    );
    await waitFor(
      async () => (await health(url)).checks.session_store.active_sessions === n,
      5000,
      `/health active_sessions = ${n} on ${url}`,
    );
    const report = await health(url);
    expect(report.checks.session_store.status).toBe('healthy');
    expect(await sessionsGauge(url)).toBe(n);
  }
}

interface Instance {
  proxy: TestProxy;
  port: number;
}

interface Echo {
  url: string;
  headers: Record<string, string>;
}

/** A non-browser request with `cookie`: the status and, when forwarded, what the backend saw. */
async function call(proxyUrl: string, cookie: string): Promise<{ status: number; echo?: Echo }> {
  const res = await fetch(`${proxyUrl}/mcp`, {
    method: 'POST',
    headers: { cookie, accept: 'application/json', 'content-type': 'application/json' },
    body: '{}',
  });
  const text = await res.text();
  return res.status === 200 ? { status: 200, echo: JSON.parse(text) as Echo } : { status: res.status };
}

describe('sessions shared by several proxy instances through Redis', () => {
  const secret = randomBytes(36).toString('base64url');
  let claim: Awaited<ReturnType<typeof claimDatabase>>;
  let backend: Listening;
  let idp: DevIdp | undefined;
  const running = new Set<TestProxy>();

  async function startInstance(port: number, sessionSecret: string): Promise<TestProxy> {
    if (!idp) throw new Error('no IdP');
    const url = `http://127.0.0.1:${port}`;
    const proxy = await startTestProxy({
      AUTH_MODE: 'oidc',
      SERVER_PORT: String(port),
      PUBLIC_URL: url,
      PROXY_TARGET_URL: backend.url,
      OIDC_DISCOVERY_URL: `${idp.issuer}/.well-known/openid-configuration`,
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
      SESSION_STORE: 'redis',
      REDIS_URL: redisUrl(claim.db),
      SESSION_SECRET: sessionSecret,
    });
    running.add(proxy);
    // Discovery runs in the background; wait until the instance can log people in.
    await waitFor(async () => (await fetch(`${proxy.url}/health`)).status === 200, 10_000, `${url} healthy`);
    return proxy;
  }

  async function stopInstance(proxy: TestProxy): Promise<void> {
    running.delete(proxy);
    await proxy.close();
  }

  async function stopAll(): Promise<void> {
    for (const proxy of [...running]) await stopInstance(proxy);
    await idp?.close();
    idp = undefined;
  }

  /**
   * One IdP client registered with every instance's callback, and the instances (one per
   * secret) on ports chosen for it. Instance i listens on 127.0.0.1:port_i.
   */
  function deploy<const S extends readonly string[]>(secrets: S): Promise<{ [K in keyof S]: Instance }> {
    return onFreshPorts(secrets.length, async (ports) => {
      await stopAll(); // what an attempt that lost a port to someone else started
      const origins = ports.map((p) => `http://127.0.0.1:${p}`);
      idp = await startDevIdp({
        clients: [
          {
            client_id: CLIENT_ID,
            client_secret: CLIENT_SECRET,
            redirect_uris: origins.map((o) => `${o}/callback`),
            post_logout_redirect_uris: origins.map((o) => `${o}/logout`),
          },
        ],
      });
      const instances: Instance[] = [];
      for (const [i, port] of ports.entries()) {
        instances.push({ proxy: await startInstance(port, secrets[i]!), port });
      }
      return instances as { [K in keyof S]: Instance };
    });
  }

  /** Logs alice in through `proxyUrl`; returns the Cookie header that instance's browser would send. */
  async function login(proxyUrl: string): Promise<string> {
    const jar = new CookieJar();
    const result = await loginThroughBrowserless(`${proxyUrl}/after-login`, alice, { jar });
    expect(result.status).toBe(200);
    expect((JSON.parse(result.body) as Echo).headers['x-forwarded-user']).toBe('alice');
    const cookie = jar.list(proxyUrl).find((c) => c.name === 'mcp_oidc_proxy');
    expect(cookie).toBeDefined();
    // Browsers send a host's cookies to every port of it; this jar is per host:port, so the
    // session cookie is copied by hand to the other instances.
    return `mcp_oidc_proxy=${cookie!.value}`;
  }

  beforeAll(async () => {
    claim = await claimDatabase();
    backend = await startEchoBackend();
  });

  afterEach(async () => {
    // Every instance (and the IdP) a test started stops with it, passed or failed.
    await stopAll();
  });

  afterAll(async () => {
    await backend?.close();
    if (claim) {
      // The database was claimed free of proxy keys: every one in it now is ours.
      const left = await scanKeys(claim.redis, PROXY_KEYS);
      if (left.length > 0) await claim.redis.del(...left);
      await claim.release();
    }
  });

  it('a login on instance A is a session on instance B; the gauge and /health count it; logout on B ends it everywhere', async () => {
    const [{ proxy: a }, { proxy: b }] = await deploy([secret, secret]);
    await expectActiveSessions(0, a.url, b.url);

    const cookie = await login(a.url);
    await expectActiveSessions(1, a.url, b.url);

    const onB = await call(b.url, cookie);
    expect(onB.status).toBe(200);
    expect(onB.echo?.headers['x-forwarded-user']).toBe('alice');
    expect(onB.echo?.headers['x-forwarded-email']).toBe('alice@example.com');
    expect(onB.echo?.headers.cookie ?? '').not.toContain('mcp_oidc_proxy');
    // Without the cookie, B does not let the request through.
    expect((await call(b.url, '')).status).toBe(401);

    const out = await fetch(`${b.url}/logout`, { headers: { cookie }, redirect: 'manual' });
    expect(out.status).toBe(302);
    await expectActiveSessions(0, a.url, b.url);
    expect((await call(a.url, cookie)).status).toBe(401);
    expect((await call(b.url, cookie)).status).toBe(401);
  });

  it('a session survives a restart of the instance that created it', async () => {
    const [{ proxy: first, port }] = await deploy([secret]);
    const cookie = await login(first.url);
    expect((await call(first.url, cookie)).status).toBe(200);
    await stopInstance(first);

    const restarted = await startInstance(port, secret);
    const after = await call(restarted.url, cookie);
    expect(after.status).toBe(200);
    expect(after.echo?.headers['x-forwarded-user']).toBe('alice');
    await expectActiveSessions(1, restarted.url);

    await fetch(`${restarted.url}/logout`, { headers: { cookie }, redirect: 'manual' });
    await expectActiveSessions(0, restarted.url);
  });

  it('an instance with another SESSION_SECRET refuses the cookie of a live session', async () => {
    const [{ proxy: a }, { proxy: c }] = await deploy([secret, randomBytes(36).toString('base64url')]);
    const cookie = await login(a.url);
    expect((await call(a.url, cookie)).status).toBe(200);
    // Same Redis, same session id in the cookie: only the key differs.
    const refused = await fetch(`${c.url}/mcp`, {
      method: 'POST',
      headers: { cookie, accept: 'application/json' },
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toContain('Bearer resource_metadata=');
    const page = await fetch(`${c.url}/page`, {
      headers: { cookie, accept: 'text/html' },
      redirect: 'manual',
    });
    expect(page.status).toBe(302);
    expect(page.headers.get('location')).toBe('/login?rd=%2Fpage');
    // The session itself is untouched: A still serves it.
    expect((await call(a.url, cookie)).status).toBe(200);
    await fetch(`${a.url}/logout`, { headers: { cookie }, redirect: 'manual' });
  });
});
