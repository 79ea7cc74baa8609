/**
 * Fuzzing the authorization server's endpoints through the whole proxy (oidc mode, state in
 * Redis): registration bodies, /authorize parameters, /token and /revoke form bodies. The
 * documented answers: RFC 7591 errors at /register, RFC 6749 §5.2 errors at /token, and at
 * /authorize an HTML page until client_id and redirect_uri are known good, a redirect carrying
 * `error` (and `iss`) to that redirect_uri after.
 */
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  answerOf,
  assertProperty,
  expectDocumentedAnswer,
  expectErrorShape,
  fuzzTimeout,
  hostileOrHuge,
  hostileString,
  TOKEN_ERROR_CODES,
  watchProcessFailures,
} from './harness.js';
import { errorLines, type FuzzTarget, REDIRECT_URI, startFuzzTarget } from './oidc-target.js';

/** A parameter: absent, a good value, a hostile one, or repeated. */
type Param =
  | { kind: 'absent' }
  | { kind: 'one'; value: string; good: boolean }
  | { kind: 'repeated'; values: string[] };

function param(
  good: readonly string[],
  hostile: fc.Arbitrary<string> = hostileString(),
): fc.Arbitrary<Param> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constant<Param>({ kind: 'absent' }) },
    ...(good.length > 0
      ? [
          {
            weight: 4,
            arbitrary: fc.constantFrom(...good).map((value): Param => ({ kind: 'one', value, good: true })),
          },
        ]
      : []),
    {
      weight: 2,
      arbitrary: hostile.map((value): Param => ({ kind: 'one', value, good: good.includes(value) })),
    },
    {
      weight: 1,
      arbitrary: fc
        .array(fc.oneof(hostile, ...(good.length > 0 ? [fc.constantFrom(...good)] : [])), {
          minLength: 2,
          maxLength: 3,
        })
        .map((values): Param => ({ kind: 'repeated', values })),
    },
  );
}

function toSearch(params: Record<string, Param>): URLSearchParams {
  const search = new URLSearchParams();
  for (const [name, p] of Object.entries(params)) {
    if (p.kind === 'one') search.append(name, p.value);
    else if (p.kind === 'repeated') for (const v of p.values) search.append(name, v);
  }
  return search;
}

/** What a string is once sent as UTF-8: a lone surrogate becomes U+FFFD. */
const wellFormed = (s: string): string => Buffer.from(s, 'utf8').toString('utf8');

/** Good and present once (an empty value counts as absent). */
const isGood = (p: Param | undefined): boolean => p?.kind === 'one' && p.good && p.value !== '';

describe('fuzzing the authorization server endpoints', () => {
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
    expect(t.backend.received).toEqual([]);
  });

  it(
    '/register: a client or an RFC 7591 error, whatever the JSON',
    async () => {
      const redirectUri = fc.oneof(
        fc.constantFrom(
          REDIRECT_URI,
          'http://localhost/cb',
          'http://[::1]:8080/cb',
          'https://app.example/cb',
          'com.example.app:/oauth',
          'http://app.example/cb',
          'javascript:alert(1)',
          'data:text/html,x',
          'https://app.example/cb#frag',
          'https://user:pw@app.example/cb',
          'https://app.example/../cb',
          'http://127.0.0.1:99999/cb',
          '',
        ),
        hostileOrHuge(3000),
      );
      const stringOrOther = (values: string[]) =>
        fc.oneof(fc.constantFrom(...values), hostileString(), fc.jsonValue({ maxDepth: 2 }));
      const metadata = fc.record(
        {
          redirect_uris: fc.oneof(fc.array(redirectUri, { maxLength: 4 }), fc.jsonValue({ maxDepth: 2 })),
          client_name: fc.oneof(hostileOrHuge(3000), fc.jsonValue({ maxDepth: 1 })),
          grant_types: fc.oneof(
            fc.array(
              fc.constantFrom(
                'authorization_code',
                'refresh_token',
                'client_credentials',
                'implicit',
                'password',
                '',
              ),
              {
                maxLength: 4,
              },
            ),
            fc.jsonValue({ maxDepth: 2 }),
          ),
          response_types: fc.oneof(
            fc.array(fc.constantFrom('code', 'token', 'id_token'), { maxLength: 3 }),
            fc.jsonValue({ maxDepth: 1 }),
          ),
          token_endpoint_auth_method: stringOrOther([
            'none',
            'client_secret_post',
            'client_secret_basic',
            'private_key_jwt',
          ]),
          scope: stringOrOther(['mcp', 'mcp openid', 'admin']),
          logo_uri: stringOrOther(['https://app.example/logo.png', 'javascript:x']),
          client_uri: stringOrOther(['https://app.example/', 'http://10.0.0.1/']),
          client_id: stringOrOther(['chosen-by-client']),
          client_secret: stringOrOther(['s3cret']),
          software_statement: stringOrOther(['eyJhbGciOiJub25lIn0.e30.']),
          __proto__: fc.jsonValue({ maxDepth: 1 }),
        },
        { requiredKeys: [] },
      );
      const body = fc.oneof(
        { weight: 4, arbitrary: metadata.map((m) => JSON.stringify(m)) },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
        { weight: 1, arbitrary: hostileOrHuge(80_000) },
      );
      const contentType = fc.constantFrom(
        'application/json',
        'application/json; charset=utf-8',
        'APPLICATION/JSON',
        'text/plain',
        'application/x-www-form-urlencoded',
      );
      await assertProperty(
        fc.asyncProperty(body, contentType, async (text, type) => {
          const context = `${type} ${text.slice(0, 500)}`;
          const answer = await answerOf(
            await fetch(`${t.url}/register`, {
              method: 'POST',
              headers: { 'content-type': type },
              body: text,
            }),
          );
          expectDocumentedAnswer(answer, context);
          if (answer.status === 201) {
            const client = JSON.parse(answer.body) as Record<string, unknown>;
            expect(client.client_id, context).toEqual(expect.any(String));
            const sent = (JSON.parse(text) as { redirect_uris: unknown }).redirect_uris;
            expect(client.redirect_uris, context).toEqual(sent);
          } else {
            expect(answer.status, context).toBe(400);
            const { error } = expectErrorShape(answer, context);
            expect(['invalid_client_metadata', 'invalid_redirect_uri', 'invalid_request'], context).toContain(
              error,
            );
          }
        }),
        40,
      );
    },
    fuzzTimeout(),
  );

  it(
    '/authorize: a page until client_id and redirect_uri are good, then a redirect with error or on to the login',
    async () => {
      const challenge = 'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM';
      const params = fc.record({
        client_id: param([t.clientId]),
        // RFC 8252 §7.3: a loopback redirect URI matches on any port.
        redirect_uri: param(
          [REDIRECT_URI, 'http://127.0.0.1:1/cb'],
          fc.oneof(
            hostileString(),
            fc.constantFrom(`${REDIRECT_URI}/x`, 'http://localhost:39899/cb', 'https://evil.example/cb'),
          ),
        ),
        response_type: param(
          ['code'],
          fc.oneof(hostileString(), fc.constantFrom('token', 'code id_token', 'CODE')),
        ),
        code_challenge: param([challenge], fc.oneof(hostileString(), fc.constant(challenge.slice(1)))),
        code_challenge_method: param(['S256'], fc.oneof(hostileString(), fc.constantFrom('plain', 's256'))),
        resource: param(
          [t.resource],
          fc.oneof(hostileString(), fc.constantFrom(`${t.resource}/`, `${t.url}/other`)),
        ),
        scope: param(['mcp', ''], fc.oneof(hostileString(), fc.constantFrom('openid', 'mcp admin'))),
        state: param(['st-1'], hostileOrHuge(3000)),
      });
      await assertProperty(
        fc.asyncProperty(params, fc.boolean(), async (p, withSession) => {
          const search = toSearch(p);
          const context = `${search.toString().slice(0, 800)} session=${withSession}`;
          const res = await fetch(`${t.url}/authorize?${search}`, {
            redirect: 'manual',
            headers: withSession ? { cookie: t.sessionCookie } : {},
          });
          const answer = await answerOf(res);
          expectDocumentedAnswer(answer, context);
          // A request line past Node's header limit (16 KB): refused before any handler.
          if (answer.status === 431) return;
          const location = answer.header('location');
          if (!isGood(p.client_id) || !isGood(p.redirect_uri)) {
            // Never a redirect to an address not known good: an open redirector otherwise.
            expect(answer.status, context).toBe(400);
            expect(location, context).toBeUndefined();
            expect(answer.header('content-type'), context).toBe('text/html; charset=utf-8');
            return;
          }
          expect(answer.status, context).toBe(302);
          if (location?.startsWith('/login?')) {
            expect(withSession, context).toBe(false);
            return;
          }
          const presented = (p.redirect_uri as { value: string }).value;
          expect(location?.startsWith(`${presented}?`), `${context} -> ${location}`).toBe(true);
          const back = new URL(location as string).searchParams;
          expect(back.get('iss'), context).toBe(t.url);
          if (back.has('error')) {
            expect(back.get('code'), context).toBeNull();
            expect(back.get('error'), context).toMatch(
              /^(invalid_request|unsupported_response_type|invalid_scope|invalid_target|access_denied)$/,
            );
          } else {
            expect(withSession, context).toBe(true);
            expect(back.get('code'), context).toEqual(expect.any(String));
          }
          const state =
            p.state.kind === 'one' && p.state.value !== '' && p.state.value.length <= 2048
              ? wellFormed(p.state.value)
              : null;
          if (p.state.kind !== 'repeated') expect(back.get('state'), context).toBe(state);
        }),
        60,
      );
    },
    fuzzTimeout(),
  );

  it(
    '/authorize POST (the consent form): an HTML page, never a redirect, without a pending request',
    async () => {
      const form = fc.record({
        request_id: param([], fc.oneof(hostileString(), fc.stringMatching(/^[A-Za-z0-9_-]{43}$/))),
        decision: param(['approve', 'deny']),
      });
      await assertProperty(
        fc.asyncProperty(
          form,
          fc.boolean(),
          fc.constantFrom(undefined, t.url, 'https://evil.example'),
          async (f, withSession, origin) => {
            const body = toSearch(f).toString();
            const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' };
            if (withSession) headers.cookie = t.sessionCookie;
            if (origin !== undefined) headers.origin = origin;
            const answer = await answerOf(
              await fetch(`${t.url}/authorize`, { method: 'POST', redirect: 'manual', headers, body }),
            );
            expectDocumentedAnswer(answer, body);
            expect([400, 403], body).toContain(answer.status);
            expect(answer.header('location'), body).toBeUndefined();
          },
        ),
        40,
      );
    },
    fuzzTimeout(),
  );

  it(
    '/token and /revoke: RFC 6749 §5.2 errors, whatever the form',
    async () => {
      const token = fc.oneof(
        hostileOrHuge(20_000),
        fc.constant(`${t.refreshToken}x`),
        fc.constant(t.accessToken),
      );
      const form = fc.record({
        grant_type: param(
          ['authorization_code', 'refresh_token'],
          fc.oneof(
            hostileString(),
            fc.constantFrom(
              'client_credentials',
              'password',
              'implicit',
              'urn:ietf:params:oauth:grant-type:device_code',
              'urn:ietf:params:oauth:grant-type:token-exchange',
              'REFRESH_TOKEN',
            ),
          ),
        ),
        code: param([], token),
        code_verifier: param([], fc.oneof(hostileString(), fc.stringMatching(/^[A-Za-z0-9._~-]{43,128}$/))),
        redirect_uri: param([REDIRECT_URI]),
        refresh_token: param([], token),
        client_id: param(
          [t.clientId],
          fc.oneof(hostileString(), fc.constantFrom('https://127.0.0.1/cimd', 'https://evil.example/meta')),
        ),
        client_secret: param([], hostileString()),
        resource: param([t.resource]),
        scope: param(['mcp']),
        token: param([], token),
        token_type_hint: param(['access_token', 'refresh_token'], hostileString()),
      });
      const authorization = fc.option(
        fc.oneof(
          fc
            .tuple(hostileString(), hostileString())
            .map(([u, p]) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`),
          hostileString().map((s) => `Basic ${s.replace(/[^\x20-\x7e]/g, '')}`),
          fc.constant(`Bearer ${t.accessToken}`),
        ),
        { nil: undefined },
      );
      const type = fc.constantFrom(
        'application/x-www-form-urlencoded',
        'application/x-www-form-urlencoded; charset=utf-8',
        'application/json',
        'multipart/form-data; boundary=x',
        undefined,
      );
      await assertProperty(
        fc.asyncProperty(
          form,
          authorization,
          type,
          fc.constantFrom('/token', '/revoke'),
          async (f, auth, contentType, path) => {
            const body = toSearch(f).toString();
            const headers: Record<string, string> = {};
            if (contentType !== undefined) headers['content-type'] = contentType;
            if (auth !== undefined) headers.authorization = auth;
            const context = `${path} ${JSON.stringify(headers)} ${body.slice(0, 800)}`;
            const answer = await answerOf(await fetch(`${t.url}${path}`, { method: 'POST', headers, body }));
            expectDocumentedAnswer(answer, context);
            expect(answer.header('cache-control'), context).toBe('no-store');
            // RFC 7009 §2.2: revoking an unknown or invalid token is a 200.
            if (path === '/revoke' && answer.status === 200) return;
            expect([400, 401], context).toContain(answer.status);
            const { error } = expectErrorShape(answer, context);
            expect([...TOKEN_ERROR_CODES, 'unsupported_token_type'], context).toContain(error);
            if (answer.status === 401 && auth?.startsWith('Basic ')) {
              expect(answer.header('www-authenticate'), context).toMatch(/^Basic /);
            }
          },
        ),
        50,
      );
    },
    fuzzTimeout(),
  );
});
