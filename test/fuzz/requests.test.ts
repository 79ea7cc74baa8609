/**
 * Fuzzing what any caller can send before it is authenticated, against a real proxy in oidc mode
 * (its state in Redis, a recording backend behind it): request targets and headers as raw bytes,
 * the session cookie, and bearer tokens of every structure, algorithm and claim set. Whatever the
 * input: no 5xx, no crash, every error in the documented shape, and nothing reaches the backend
 * that is not authenticated.
 */
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { decodeJwt, SignJWT, UnsecuredJWT } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hostOf, rawRequest } from '../helpers/raw-http.js';
import {
  answerOf,
  assertProperty,
  expectDocumentedAnswer,
  expectErrorShape,
  fuzzTimeout,
  hostileOrHuge,
  hostileString,
  rawAnswer,
  watchProcessFailures,
} from './harness.js';
import { errorLines, type FuzzTarget, startFuzzTarget } from './oidc-target.js';

/** Raw header bytes: UTF-8, as a latin1 string (what rawRequest writes), never CR or LF. */
function headerBytes(text: string): string {
  return Buffer.from(text.replace(/[\r\n]/g, ''), 'utf8').toString('latin1');
}

const PATHS = [
  '/',
  '/mcp',
  '/mcp/',
  '/MCP',
  '/mcp/..',
  '/admin',
  '/authorize',
  '/token',
  '/register',
  '/revoke',
  '/login',
  '/callback',
  '/logout',
  '/health',
  '/metrics',
  '/jwks.json',
  '/.well-known/oauth-protected-resource/mcp',
  '/.well-known/oauth-authorization-server',
  '//evil.example/',
  '*',
  'http://evil.example/mcp',
  '',
];

const HEADER_NAMES = [
  'authorization',
  'cookie',
  'origin',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'forwarded',
  'x-request-id',
  'accept',
  'content-type',
  'mcp-session-id',
  'mcp-protocol-version',
  'x-forwarded-user',
  'x-forwarded-email',
  'x-forwarded-groups',
  'traceparent',
  'sec-fetch-site',
  'sec-websocket-key',
  'host',
];

const method = fc.constantFrom(
  'GET',
  'POST',
  'HEAD',
  'PUT',
  'DELETE',
  'OPTIONS',
  'PATCH',
  'TRACE',
  'FOO',
  'get',
);
const target = fc
  .tuple(fc.constantFrom(...PATHS), hostileOrHuge(6000), fc.option(hostileString(), { nil: undefined }))
  .map(([path, suffix, query]) => headerBytes(`${path}${suffix}${query === undefined ? '' : `?${query}`}`));
const headerName = fc.oneof(
  fc.constantFrom(...HEADER_NAMES),
  fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}$/),
  hostileString(4),
);
const header = fc
  .tuple(headerName, hostileOrHuge(4000))
  .map(([n, v]) => `${headerBytes(n)}: ${headerBytes(v)}`);

describe('fuzzing requests against a proxy in oidc mode', () => {
  const crashes = watchProcessFailures();
  let t: FuzzTarget;

  beforeAll(async () => {
    t = await startFuzzTarget();
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });
  afterEach(() => {
    crashes.expectNone();
    expect(errorLines(t)).toEqual([]);
  });

  /** The backend sees nothing while `run` sends unauthenticated input. */
  async function expectNothingForwarded(run: () => Promise<void>): Promise<void> {
    const before = t.backend.received.length;
    await run();
    expect(t.backend.received.slice(before).map((r) => `${r.method} ${r.url}`)).toEqual([]);
  }

  it(
    'request targets and headers, as raw bytes: documented answers, nothing forwarded',
    async () => {
      await assertProperty(
        fc.asyncProperty(
          method,
          target,
          fc.array(header, { maxLength: 6 }),
          fc.constantFrom('normal', 'missing', 'hostile', 'twice', 'upgrade'),
          fc.option(hostileString(), { nil: undefined }),
          async (verb, path, headers, host, hostValue) => {
            const lines = [`${verb} ${path} HTTP/1.1`];
            if (host !== 'missing')
              lines.push(`Host: ${host === 'hostile' ? headerBytes(hostValue ?? '') : hostOf(t.url)}`);
            if (host === 'twice') lines.push(`Host: ${headerBytes(hostValue ?? 'other.example')}`);
            lines.push(...headers);
            if (host === 'upgrade') lines.push('Upgrade: websocket', 'Sec-WebSocket-Version: 13');
            lines.push(host === 'upgrade' ? 'Connection: Upgrade, close' : 'Connection: close');
            await expectNothingForwarded(async () => {
              const answer = rawAnswer(await rawRequest(t.url, lines));
              expectDocumentedAnswer(answer, JSON.stringify(lines));
            });
          },
        ),
        60,
      );
    },
    fuzzTimeout(),
  );

  it(
    'session cookies: only the exact cookie the login set lets a request through',
    async () => {
      const valid = t.sessionCookie.split('; ').find((c) => c.startsWith(`${t.cookieName}=`)) as string;
      const validValue = valid.slice(t.cookieName.length + 1);
      const tampered = fc
        .tuple(fc.nat(validValue.length - 1), fc.constantFrom('A', '_', '-', '.', '%', ''))
        .map(([at, c]) => validValue.slice(0, at) + c + validValue.slice(at + 1))
        .filter((v) => v !== validValue);
      const value = fc.oneof(
        hostileOrHuge(5000),
        fc.base64String({ maxLength: 120 }),
        tampered,
        tampered.map((v) => `"${v}"`),
        fc.constant(`${validValue}x`),
        fc.constant(validValue.split('.')[0] ?? ''),
      );
      const name = fc.constantFrom(
        t.cookieName,
        `${t.cookieName}_login`,
        `__Host-${t.cookieName}`,
        ` ${t.cookieName}`,
        'MCP_OIDC_PROXY',
      );
      const pair = fc.oneof(
        fc.tuple(name, value).map(([n, v]) => `${n}=${v}`),
        hostileString(8),
      );
      await assertProperty(
        fc.asyncProperty(
          fc.array(pair, { minLength: 1, maxLength: 4 }),
          fc.constantFrom('/mcp', '/', '/some/page', '/authorize'),
          async (pairs, path) => {
            const cookie = headerBytes(pairs.join('; '));
            const before = t.backend.received.length;
            const answer = rawAnswer(
              await rawRequest(t.url, [
                `GET ${path} HTTP/1.1`,
                `Host: ${hostOf(t.url)}`,
                `Cookie: ${cookie}`,
                'Accept: text/html',
                'Connection: close',
              ]),
            );
            expectDocumentedAnswer(answer, cookie);
            if (t.backend.received.length > before) {
              // Reaching the backend takes the signed value itself: nothing short of it forges one.
              expect(cookie, 'a cookie without the session let through').toContain(validValue);
            }
          },
        ),
        60,
      );
      // The positive control: the unaltered cookie does get through.
      const before = t.backend.received.length;
      const res = await fetch(`${t.url}/some/page`, { headers: { cookie: valid } });
      expect(res.status).toBe(200);
      expect(t.backend.received.length).toBe(before + 1);
    },
    fuzzTimeout(),
  );

  it(
    'bearer tokens of any structure, algorithm or key but the proxy own: 401, nothing forwarded',
    async () => {
      const claims = decodeJwt(t.accessToken);
      const [realHeader, realPayload, realSignature] = t.accessToken.split('.') as [string, string, string];
      const now = Math.floor(Date.now() / 1000);
      const validClaims = { ...claims, iat: now, nbf: now, exp: now + 600 };
      const b64 = (value: unknown): string =>
        Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');
      const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      // The proxy's published key, for the algorithm confusion attack (the public key as an HMAC secret).
      const jwks = (await (await fetch(`${t.url}/jwks.json`)).json()) as { keys: unknown[] };
      const realPublicJwk = JSON.stringify(jwks.keys[0]);
      const kid = fc.constantFrom(t.signingKey.kid, 'other-kid', '', '../../etc/passwd');
      const typ = fc.constantFrom('at+jwt', 'JWT', 'application/at+jwt');

      const garbage = fc.oneof(
        hostileOrHuge(6000),
        fc
          .array(fc.base64String({ maxLength: 60 }), { minLength: 1, maxLength: 5 })
          .map((parts) => parts.join('.')),
        fc
          .tuple(fc.jsonValue(), fc.jsonValue(), fc.base64String({ maxLength: 90 }))
          .map(([h, p, s]) => `${b64(h)}.${b64(p)}.${s.replace(/=+$/, '')}`),
        fc
          .record({
            alg: fc.constantFrom('none', 'None', 'HS256', 'RS256', 'ES256', 'ES384', 'EdDSA', 'PS256', ''),
            kid,
            typ,
          })
          .map((h) => `${b64(h)}.${realPayload}.${realSignature}`),
      );
      const tamperedReal = fc.oneof(
        fc
          .record({ sub: fc.string(), scope: fc.constantFrom('mcp', 'mcp admin'), aud: fc.string() })
          .map((changes) => `${realHeader}.${b64({ ...claims, ...changes })}.${realSignature}`),
        // Not the last character: its low bits are padding, which a decoder may ignore.
        fc.nat(realSignature.length - 2).map((at) => {
          const flipped = realSignature[at] === 'A' ? 'B' : 'A';
          return `${realHeader}.${realPayload}.${realSignature.slice(0, at)}${flipped}${realSignature.slice(at + 1)}`;
        }),
        fc.constantFrom(`${realHeader}.${realPayload}.`, `${realHeader}.${realPayload}`, `${t.accessToken}.`),
      );
      const foreignSigned = fc
        .tuple(fc.constantFrom('none', 'HS256', 'HS256-confused', 'RS256', 'ES256'), kid, typ)
        .map(async ([alg, keyId, type]) => {
          const header = { kid: keyId, typ: type };
          if (alg === 'none') return new UnsecuredJWT(validClaims).encode();
          const jwt = new SignJWT(validClaims);
          if (alg === 'HS256')
            return jwt
              .setProtectedHeader({ alg, ...header })
              .sign(crypto.getRandomValues(new Uint8Array(32)));
          if (alg === 'HS256-confused')
            return jwt
              .setProtectedHeader({ alg: 'HS256', ...header })
              .sign(new TextEncoder().encode(realPublicJwk));
          if (alg === 'RS256') return jwt.setProtectedHeader({ alg, ...header }).sign(rsa.privateKey);
          return jwt.setProtectedHeader({ alg, ...header }).sign(ec.privateKey);
        });
      const token = fc.oneof(
        garbage.map(async (s) => s),
        tamperedReal.map(async (s) => s),
        foreignSigned,
      );
      await assertProperty(
        fc.asyncProperty(
          token,
          fc.constantFrom('Bearer ', 'bearer ', 'Bearer  ', 'DPoP ', 'Basic '),
          async (made, scheme) => {
            const presented = await made;
            // A fuzzed header can rebuild the very token the login gave ({alg ES256, the kid, at+jwt}).
            fc.pre(presented !== t.accessToken);
            await expectNothingForwarded(async () => {
              const answer = rawAnswer(
                await rawRequest(
                  t.url,
                  [
                    'POST /mcp HTTP/1.1',
                    `Host: ${hostOf(t.url)}`,
                    `Authorization: ${headerBytes(`${scheme}${presented}`)}`,
                    'Content-Type: application/json',
                    'Accept: application/json, text/event-stream',
                    'Content-Length: 2',
                    'Connection: close',
                  ],
                  '{}',
                ),
              );
              expectDocumentedAnswer(answer, presented);
              const { error } = expectErrorShape(answer, presented);
              if (answer.status === 400) {
                // Bytes HTTP forbids in a header value (NUL, other controls): Node's parser refuses them.
                expect(error, presented).toBe('invalid_request');
                expect(answer.header('x-request-id'), presented).toBeUndefined();
              } else {
                expect(answer.status, presented).toBe(401);
                expect(answer.header('www-authenticate'), presented).toMatch(/^Bearer /);
              }
            });
          },
        ),
        50,
      );
    },
    fuzzTimeout(),
  );

  it(
    'claims signed with the proxy own key: accepted exactly when every claim is right',
    async () => {
      const real = decodeJwt(t.accessToken);
      const { kid, privateKey } = t.signingKey;
      // Each claim: what keeps the token valid, and what must get it refused.
      const now = () => Math.floor(Date.now() / 1000);
      const other = fc.oneof(
        fc.integer(),
        fc.boolean(),
        fc.constant(null),
        fc.array(fc.string(), { maxLength: 2 }),
        fc.dictionary(fc.string(), fc.string(), { maxKeys: 2 }),
      );
      type Claim = { valid: boolean; value?: () => unknown };
      const keep = (value: () => unknown): Claim => ({ valid: true, value });
      const bad = (value?: () => unknown): Claim => ({ valid: false, ...(value ? { value } : {}) });
      const claimsSpec = {
        iss: fc.oneof(
          fc.constant(keep(() => real.iss)),
          fc.constant(bad()),
          fc.constantFrom(`${real.iss}/`, 'https://evil.example', '').map((v) => bad(() => v)),
          other.map((v) => bad(() => v)),
        ),
        aud: fc.oneof(
          fc.constant(keep(() => real.aud)),
          fc.constant(keep(() => [real.aud])),
          fc.constant(bad()),
          fc.constant(bad(() => [real.aud, 'https://other.example/mcp'])),
          fc.constantFrom(`${real.aud}/`, `${real.aud}`.toUpperCase(), '').map((v) => bad(() => v)),
          fc.integer().map((v) => bad(() => v)),
        ),
        sub: fc.oneof(
          fc.constant(keep(() => real.sub)),
          fc.constant(bad()),
          fc.integer().map((v) => bad(() => v)),
        ),
        client_id: fc.oneof(
          fc.constant(keep(() => real.client_id)),
          fc.constant(bad()),
          other.map((v) => bad(() => v)),
        ),
        jti: fc.oneof(
          fc.string({ minLength: 1, maxLength: 30 }).map((v) => keep(() => v)),
          fc.constant(bad()),
          fc.integer().map((v) => bad(() => v)),
        ),
        exp: fc.oneof(
          fc.integer({ min: 60, max: 3600 }).map((d) => keep(() => now() + d)),
          fc.constant(bad()),
          fc.integer({ min: 60, max: 10 ** 6 }).map((d) => bad(() => now() - d)),
          fc.constantFrom('9999999999', null, true).map((v) => bad(() => v)),
        ),
        iat: fc.oneof(
          fc.integer({ min: 0, max: 600 }).map((d) => keep(() => now() - d)),
          fc.constant(bad()),
          fc.constantFrom('0', null).map((v) => bad(() => v)),
        ),
        nbf: fc.oneof(
          fc.constant({ valid: true } as Claim),
          fc.integer({ min: 0, max: 600 }).map((d) => keep(() => now() - d)),
          fc.integer({ min: 60, max: 10 ** 6 }).map((d) => bad(() => now() + d)),
          fc.constantFrom('0', null).map((v) => bad(() => v)),
        ),
        scope: fc.oneof(
          fc.constant(keep(() => 'mcp')),
          other.filter((v) => typeof v !== 'string').map((v) => bad(() => v)),
        ),
        email: fc.oneof(
          fc.constant({ valid: true } as Claim),
          fc.emailAddress().map((v) => keep(() => v)),
          fc.integer().map((v) => bad(() => v)),
        ),
        email_verified: fc.oneof(
          fc.constant({ valid: true } as Claim),
          fc.boolean().map((v) => keep(() => v)),
          fc.constantFrom('true', 1).map((v) => bad(() => v)),
        ),
        groups: fc.oneof(
          fc.constant({ valid: true } as Claim),
          fc.array(fc.string(), { maxLength: 3 }).map((v) => keep(() => v)),
          fc.constantFrom('admins', [1], [null]).map((v) => bad(() => v)),
        ),
      };
      const headerSpec = fc.record({
        kid: fc.oneof(
          fc.constant(keep(() => kid)),
          fc.constant(bad()),
          fc.constantFrom('', `${kid}x`).map((v) => bad(() => v)),
        ),
        typ: fc.oneof(
          fc.constant(keep(() => 'at+jwt')),
          fc.constant(keep(() => 'application/at+jwt')),
          fc.constant(bad()),
          fc.constantFrom('JWT', 'at+JWT2').map((v) => bad(() => v)),
        ),
      });
      const materialize = (spec: Record<string, Claim>): Record<string, unknown> => {
        const out: Record<string, unknown> = {};
        for (const [name, claim] of Object.entries(spec)) if (claim.value) out[name] = claim.value();
        return out;
      };
      await assertProperty(
        fc.asyncProperty(fc.record(claimsSpec), headerSpec, async (claims, header) => {
          const valid = [...Object.values(claims), ...Object.values(header)].every((c) => c.valid);
          const payload = materialize(claims);
          const token = await new SignJWT(payload)
            .setProtectedHeader({ alg: 'ES256', ...(materialize(header) as { kid?: string; typ?: string }) })
            .sign(privateKey);
          const context = JSON.stringify({ payload, header: materialize(header) });
          const before = t.backend.received.length;
          const answer = await answerOf(
            await fetch(`${t.url}/mcp`, {
              method: 'POST',
              headers: {
                authorization: `Bearer ${token}`,
                'content-type': 'application/json',
                accept: 'application/json, text/event-stream',
              },
              body: '{}',
            }),
          );
          expectDocumentedAnswer(answer, context);
          if (valid) {
            expect(answer.status, context).toBe(200);
            expect(t.backend.received.length, context).toBe(before + 1);
          } else {
            expect(answer.status, context).toBe(401);
            expect(t.backend.received.length, context).toBe(before);
          }
        }),
        60,
      );
    },
    fuzzTimeout(),
  );
});
