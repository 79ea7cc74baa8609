/**
 * The proxy the oidc-mode fuzz tests attack: oidc mode with the dev IdP, its state in a Redis of
 * its own (sessions, clients, grants and signing keys where production keeps them), rate limits
 * off (so every input reaches the logic, not the 429), and a recording backend behind it. A real
 * login gives a client, a session cookie and tokens to mutate; the signing key, read from Redis as
 * a second instance would, signs tokens with fuzzed claims.
 */
import { createHash, randomBytes } from 'node:crypto';
import { expect } from 'vitest';
import { type ActiveSigningKey, SigningKeys } from '../../src/auth/tokens/signing-keys.js';
import { RedisStateStore } from '../../src/store/redis.js';
import { SealingKeys } from '../../src/store/sealing-keys.js';
import { approveConsent, CookieJar, loginThroughBrowserless } from '../helpers/headless-login.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { type RedisServer, startRedisServer } from '../helpers/redis-server.js';
import { freePort } from '../helpers/servers.js';
import { type RecordingBackend, startRecordingBackend } from './harness.js';

export const REDIRECT_URI = 'http://127.0.0.1:39899/cb';
const alice = { username: 'alice', password: 'alice-password' };
const SESSION_SECRET = 'fuzz-session-secret-0123456789abcdef';

export interface FuzzTarget {
  stack: OidcStack;
  url: string;
  backend: RecordingBackend;
  redis: RedisServer;
  /** The MCP endpoint: the tokens' audience. */
  resource: string;
  /** A client registered through /register (public, authorization_code + refresh_token). */
  clientId: string;
  /** A valid access token and its refresh token, from the whole flow. */
  accessToken: string;
  refreshToken: string;
  /** The browser session's Cookie header after the login. */
  sessionCookie: string;
  /** The session cookie's name. */
  cookieName: string;
  /** The proxy's active signing key. */
  signingKey: ActiveSigningKey;
  close(): Promise<void>;
}

export async function startFuzzTarget(): Promise<FuzzTarget> {
  const redis = await startRedisServer(await freePort());
  const backend = await startRecordingBackend();
  const stack = await startOidcStack(
    {
      SESSION_STORE: 'redis',
      REDIS_URL: redis.url,
      SESSION_SECRET,
      AUTH_RATE_LIMIT_PER_MINUTE: '0',
      RATE_LIMIT_PER_MINUTE: '0',
      // Warnings and errors only: thousands of fuzzed requests would fill memory with debug lines.
      LOG_LEVEL: 'warn',
    },
    {},
    async () => backend,
  );
  const url = stack.url;
  const resource = `${url}/mcp`;
  try {
    const registered = await fetch(`${url}/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        client_name: 'Fuzz client',
        redirect_uris: [REDIRECT_URI],
        grant_types: ['authorization_code', 'refresh_token'],
        token_endpoint_auth_method: 'none',
      }),
    });
    expect(registered.status).toBe(201);
    const { client_id: clientId } = (await registered.json()) as { client_id: string };

    const verifier = randomBytes(32).toString('base64url');
    const authorize = new URL(`${url}/authorize`);
    authorize.search = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT_URI,
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      resource,
      scope: 'mcp',
    }).toString();
    const jar = new CookieJar();
    const walk = await loginThroughBrowserless(authorize.href, alice, {
      jar,
      stopAt: (target) => target.href.startsWith(REDIRECT_URI),
      onPage: approveConsent,
    });
    const code = new URL(walk.finalUrl).searchParams.get('code');
    expect(code, walk.finalUrl).toEqual(expect.any(String));
    const exchanged = await fetch(`${url}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'authorization_code',
        code: code as string,
        redirect_uri: REDIRECT_URI,
        client_id: clientId,
        code_verifier: verifier,
      }),
    });
    expect(exchanged.status).toBe(200);
    const tokens = (await exchanged.json()) as { access_token: string; refresh_token: string };

    const store = new RedisStateStore({ url: redis.url });
    let signingKey: ActiveSigningKey;
    try {
      signingKey = await new SigningKeys(store, new SealingKeys(SESSION_SECRET)).activeKey();
    } finally {
      await store.close();
    }
    const sessionCookie = jar.get(new URL(url));
    const cookieName = 'mcp_oidc_proxy';
    expect(sessionCookie).toContain(`${cookieName}=`);
    return {
      stack,
      url,
      backend,
      redis,
      resource,
      clientId,
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token,
      sessionCookie,
      cookieName,
      signingKey,
      close: async () => {
        await stack.close();
        await redis.stop();
      },
    };
  } catch (error) {
    await stack.close();
    await redis.stop();
    throw error;
  }
}

/** The proxy's own error log lines: a fuzzed input must not make it log one. */
export function errorLines(target: FuzzTarget): Array<Record<string, unknown>> {
  return target.stack.proxy.logs.filter((line) => line.level === 'error' || line.level === 'fatal');
}
