import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CLIENT_TTL_MS,
  ClientRegistry,
  type ClientRegistryOptions,
  type MetadataDocumentResolver,
  type OAuthClient,
  UNUSED_CLIENT_TTL_MS,
} from '../../src/auth/facade/clients.js';
import { InvalidClientError, OAuthError } from '../../src/auth/facade/errors.js';
import { MemoryStateStore } from '../../src/store/memory.js';
import { type StateStore, StoreUnavailableError } from '../../src/store/state-store.js';

const CLAUDE = {
  client_name: 'Claude',
  redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
  scope: 'mcp',
};

let store: MemoryStateStore;
let clock: number;

function registry(options: Partial<ClientRegistryOptions> = {}): ClientRegistry {
  return new ClientRegistry({ store, dcrEnabled: true, now: () => clock, ...options });
}

/** The error `promise` rejects with, which must be an OAuthError. */
async function oauthError(promise: Promise<unknown>): Promise<OAuthError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OAuthError);
  return error as OAuthError;
}

beforeEach(() => {
  store = new MemoryStateStore();
  clock = Date.UTC(2026, 0, 1);
});
afterEach(async () => {
  await store.close();
});

describe('register', () => {
  it('registers a public client (Claude) and returns RFC 7591 client information without a secret', async () => {
    const info = await registry().register(CLAUDE);
    expect(info).toEqual({
      ...CLAUDE,
      client_id: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      client_id_issued_at: clock / 1000,
    });
    expect(info).not.toHaveProperty('client_secret');
    expect(info).not.toHaveProperty('client_secret_expires_at');
    const client = await registry().get(info.client_id);
    expect(client).toMatchObject({ client_id: info.client_id, source: 'dynamic', confidential: false });
    expect(client?.redirect_uris).toEqual(CLAUDE.redirect_uris);
  });

  it('defaults to client_secret_basic (RFC 7591 §2) and issues a secret that never expires', async () => {
    const info = await registry().register({ redirect_uris: ['http://localhost:6274/oauth/callback'] });
    expect(info.token_endpoint_auth_method).toBe('client_secret_basic');
    expect(info.grant_types).toEqual(['authorization_code']);
    expect(info.response_types).toEqual(['code']);
    expect(info.client_secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(info.client_secret_expires_at).toBe(0);
  });

  it('gives every registration its own id and secret', async () => {
    const a = await registry().register({ ...CLAUDE, token_endpoint_auth_method: 'client_secret_post' });
    const b = await registry().register({ ...CLAUDE, token_endpoint_auth_method: 'client_secret_post' });
    expect(a.client_id).not.toBe(b.client_id);
    expect(a.client_secret).not.toBe(b.client_secret);
  });

  it('stores only a hash of the secret', async () => {
    const info = await registry().register({ ...CLAUDE, token_endpoint_auth_method: 'client_secret_basic' });
    const keys = await store.keys('');
    expect(keys).toEqual([`client:${info.client_id}`]);
    const raw = (await store.get(keys[0]!))!;
    expect(raw).not.toContain(info.client_secret);
    const expectedHash = createHash('sha256').update(info.client_secret!).digest('base64url');
    expect(JSON.parse(raw).secret_hash).toBe(expectedHash);
  });

  it('ignores unknown fields and keeps known optional ones; an empty logo_uri counts as absent', async () => {
    const info = await registry().register({
      ...CLAUDE,
      client_uri: 'https://claude.ai',
      logo_uri: '',
      software_id: 'claude-connectors',
      jwks: { keys: [] },
      extra: 'x'.repeat(10_000),
    });
    expect(info).not.toHaveProperty('jwks');
    expect(info).not.toHaveProperty('extra');
    expect(info).not.toHaveProperty('logo_uri');
    expect(info.client_uri).toBe('https://claude.ai');
    expect(info.software_id).toBe('claude-connectors');
  });

  it('removes duplicate redirect URIs and grant types', async () => {
    const info = await registry().register({
      ...CLAUDE,
      redirect_uris: ['http://127.0.0.1:33418/', 'http://127.0.0.1:33418/', 'https://vscode.dev/redirect'],
      grant_types: ['authorization_code', 'refresh_token', 'authorization_code'],
    });
    expect(info.redirect_uris).toEqual(['http://127.0.0.1:33418/', 'https://vscode.dev/redirect']);
    expect(info.grant_types).toEqual(['authorization_code', 'refresh_token']);
  });

  // [what, body, error code, part of the description]
  const invalid: Array<[string, unknown, string, string]> = [
    ['not an object', 'redirect_uris', 'invalid_client_metadata', 'must be a JSON object'],
    ['an array', [CLAUDE], 'invalid_client_metadata', 'must be a JSON object'],
    ['null', null, 'invalid_client_metadata', 'must be a JSON object'],
    ['no redirect_uris', { client_name: 'x' }, 'invalid_redirect_uri', 'redirect_uris is required'],
    ['empty redirect_uris', { redirect_uris: [] }, 'invalid_redirect_uri', 'at least one'],
    ['redirect_uris a string', { redirect_uris: 'https://a.example/cb' }, 'invalid_redirect_uri', 'array'],
    ['a non-string redirect URI', { redirect_uris: [42] }, 'invalid_redirect_uri', 'must be a string'],
    [
      'a javascript: redirect URI',
      { redirect_uris: ['https://ok.example/cb', 'javascript:alert(1)'] },
      'invalid_redirect_uri',
      'redirect_uris[1]: "javascript:alert(1)" uses the javascript: scheme',
    ],
    [
      'an http redirect URI to a remote host',
      { redirect_uris: ['http://evil.example/cb'] },
      'invalid_redirect_uri',
      'http: with a host other than',
    ],
    [
      'a redirect URI with a fragment',
      { redirect_uris: ['https://claude.ai/cb#x'] },
      'invalid_redirect_uri',
      'fragment',
    ],
    [
      'too many redirect URIs',
      { redirect_uris: Array.from({ length: 21 }, (_, i) => `https://a.example/${i}`) },
      'invalid_redirect_uri',
      'at most 20',
    ],
    [
      'an unsupported auth method',
      { ...CLAUDE, token_endpoint_auth_method: 'private_key_jwt' },
      'invalid_client_metadata',
      'token_endpoint_auth_method "private_key_jwt" is not supported; use one of none, client_secret_basic, client_secret_post',
    ],
    [
      'an unsupported grant type',
      { ...CLAUDE, grant_types: ['authorization_code', 'client_credentials'] },
      'invalid_client_metadata',
      'grant type "client_credentials" is not supported',
    ],
    [
      'grant types without authorization_code',
      { ...CLAUDE, grant_types: ['refresh_token'] },
      'invalid_client_metadata',
      'must include authorization_code',
    ],
    [
      'an implicit response type',
      { ...CLAUDE, response_types: ['code', 'token'] },
      'invalid_client_metadata',
      'response_types must be ["code"]',
    ],
    [
      'a numeric client_name',
      { ...CLAUDE, client_name: 5 },
      'invalid_client_metadata',
      'client_name must be a string',
    ],
    [
      'a client_name with a bidi override',
      { ...CLAUDE, client_name: 'Claude\u202e' },
      'invalid_client_metadata',
      'client_name contains control characters',
    ],
    [
      'an http client_uri',
      { ...CLAUDE, client_uri: 'http://claude.ai' },
      'invalid_client_metadata',
      'client_uri must be an https URL',
    ],
    [
      'a javascript logo_uri',
      { ...CLAUDE, logo_uri: 'javascript:alert(1)' },
      'invalid_client_metadata',
      'logo_uri must be an https URL',
    ],
    [
      'a malformed scope',
      { ...CLAUDE, scope: 'a  "b"' },
      'invalid_client_metadata',
      'scope must be scope tokens',
    ],
    ['a scope array', { ...CLAUDE, scope: ['mcp'] }, 'invalid_client_metadata', 'scope must be a string'],
  ];
  it.each(invalid)('refuses %s', async (_what, body, code, description) => {
    const error = await oauthError(registry().register(body));
    expect(error.code).toBe(code);
    expect(error.status).toBe(400);
    expect(error.error).toBe(code);
    expect(error.description).toContain(description);
    expect(await store.count('')).toBe(0);
  });

  // [field, body, description]
  const oversized: Array<[string, Record<string, unknown>, string]> = [
    ['client_name', { client_name: 'n'.repeat(201) }, 'client_name is longer than 200 characters'],
    ['client_uri', { client_uri: `https://a.example/${'p'.repeat(2000)}` }, 'client_uri is longer than 2000'],
    ['logo_uri', { logo_uri: `https://a.example/${'p'.repeat(2000)}` }, 'logo_uri is longer than 2000'],
    ['scope', { scope: 's'.repeat(1001) }, 'scope is longer than 1000'],
    ['software_id', { software_id: 'i'.repeat(201) }, 'software_id is longer than 200'],
    ['contacts', { contacts: Array.from({ length: 11 }, (_, i) => `${i}@a.example`) }, 'at most 10'],
    [
      'a redirect URI',
      { redirect_uris: [`https://a.example/${'p'.repeat(2000)}`] },
      'is longer than 2000 characters',
    ],
  ];
  it.each(oversized)('refuses an oversized %s', async (_field, extra, description) => {
    const error = await oauthError(registry().register({ ...CLAUDE, ...extra }));
    expect(error.message).toContain(description);
    expect(await store.count('')).toBe(0);
  });

  it('accepts fields at their size limits', async () => {
    const info = await registry().register({
      ...CLAUDE,
      client_name: 'n'.repeat(200),
      scope: 's'.repeat(1000),
    });
    expect(info.client_name).toHaveLength(200);
  });

  it('reports several problems at once', async () => {
    const error = await oauthError(
      registry().register({ redirect_uris: ['javascript:x'], client_name: 5, grant_types: ['password'] }),
    );
    expect(error.code).toBe('invalid_redirect_uri');
    expect(error.message).toContain('javascript');
    expect(error.message).toContain('client_name must be a string');
    expect(error.message).toContain('"password" is not supported');
  });

  it('refuses with access_denied and says what to do when registration is off', async () => {
    const error = await oauthError(registry({ dcrEnabled: false }).register(CLAUDE));
    expect(error.code).toBe('access_denied');
    expect(error.status).toBe(403);
    expect(error.message).toMatch(/registration is turned off.*operator.*client id/);
    expect(await store.count('')).toBe(0);
  });

  it('answers temporarily_unavailable when the store is down', async () => {
    const down = new MemoryStateStore();
    down.set = async () => {
      throw new StoreUnavailableError('redis down');
    };
    const error = await oauthError(registry({ store: down }).register(CLAUDE));
    expect(error.code).toBe('temporarily_unavailable');
    expect(error.status).toBe(503);
    await down.close();
  });
});

describe('authenticate', () => {
  it('accepts a public client by client_id alone and refuses it with a secret', async () => {
    const reg = registry();
    const { client_id } = await reg.register(CLAUDE);
    expect((await reg.authenticate(client_id, undefined, 'none')).client_id).toBe(client_id);
    expect((await reg.authenticate(client_id, '', 'client_secret_post')).client_id).toBe(client_id);
    const error = await oauthError(reg.authenticate(client_id, 'guess', 'client_secret_basic'));
    expect(error).toBeInstanceOf(InvalidClientError);
    expect(error.message).toContain('public');
  });

  it('accepts a confidential client with its secret by either secret method', async () => {
    const reg = registry();
    const info = await reg.register({ ...CLAUDE, token_endpoint_auth_method: 'client_secret_basic' });
    const viaBasic = await reg.authenticate(info.client_id, info.client_secret, 'client_secret_basic');
    expect(viaBasic).toMatchObject({ client_id: info.client_id, confidential: true });
    expect(viaBasic).not.toHaveProperty('secret_hash');
    const viaPost = await reg.authenticate(info.client_id, info.client_secret, 'client_secret_post');
    expect(viaPost.client_id).toBe(info.client_id);
  });

  it('refuses a confidential client with a wrong, missing or other client secret', async () => {
    const reg = registry();
    const a = await reg.register({ ...CLAUDE, token_endpoint_auth_method: 'client_secret_post' });
    const b = await reg.register({ ...CLAUDE, token_endpoint_auth_method: 'client_secret_post' });
    const wrong = await oauthError(
      reg.authenticate(a.client_id, `${a.client_secret}x`, 'client_secret_post'),
    );
    expect(wrong.code).toBe('invalid_client');
    expect(wrong.status).toBe(401);
    expect(wrong.message).toContain('wrong client_secret');
    expect(
      (await oauthError(reg.authenticate(a.client_id, b.client_secret, 'client_secret_post'))).code,
    ).toBe('invalid_client');
    const missing = await oauthError(reg.authenticate(a.client_id, undefined, 'none'));
    expect(missing.message).toContain('confidential');
    // A secret sent with method none is not a secret presented.
    expect((await oauthError(reg.authenticate(a.client_id, a.client_secret, 'none'))).code).toBe(
      'invalid_client',
    );
  });

  it('answers invalid_client (401) for an unknown or malformed client id, so clients register again', async () => {
    const reg = registry();
    for (const id of ['unknown-client-id', '', 'x'.repeat(5000), 'client:../../etc', 'https://claude.ai/x']) {
      const error = await oauthError(reg.authenticate(id, undefined, 'none'));
      expect(error.code).toBe('invalid_client');
      expect(error.status).toBe(401);
      expect(error.message).toContain('register again');
    }
  });
});

describe('lifetime', () => {
  it('stores a registration nobody used for an hour, a used one for 90 days from its last use', async () => {
    const ttls = new Map<string, number>();
    const set = store.set.bind(store);
    store.set = async (key, value, ttl) => {
      ttls.set(key, ttl);
      return set(key, value, ttl);
    };
    const reg = registry();
    const unused = await reg.register(CLAUDE);
    const used = await reg.register(CLAUDE);
    expect(ttls.get(`client:${used.client_id}`)).toBe(UNUSED_CLIENT_TTL_MS);
    await reg.recordUse(used.client_id);
    expect(ttls.get(`client:${unused.client_id}`)).toBe(UNUSED_CLIENT_TTL_MS);
    expect(ttls.get(`client:${used.client_id}`)).toBe(CLIENT_TTL_MS);
    expect(JSON.parse((await store.get(`client:${used.client_id}`))!).used_at).toBe(clock);
    // The record is the same client after the rewrite.
    expect((await reg.get(used.client_id))?.redirect_uris).toEqual(CLAUDE.redirect_uris);
  });

  it('writes the use back at most once a day', async () => {
    const reg = registry();
    const { client_id } = await reg.register(CLAUDE);
    await reg.recordUse(client_id);
    const writes: string[] = [];
    const set = store.set.bind(store);
    store.set = async (key, value, ttl) => {
      writes.push(key);
      return set(key, value, ttl);
    };
    clock += 60 * 60 * 1000;
    await reg.recordUse(client_id);
    expect(writes).toEqual([]);
    clock += 24 * 60 * 60 * 1000;
    await reg.recordUse(client_id);
    expect(writes).toEqual([`client:${client_id}`]);
  });
});

describe('delete and list', () => {
  it('deletes a dynamic client, after which it is unknown', async () => {
    const reg = registry();
    const { client_id } = await reg.register(CLAUDE);
    expect(await reg.delete(client_id)).toBe('deleted');
    expect(await reg.get(client_id)).toBeUndefined();
    expect(await reg.delete(client_id)).toBe('not_found');
    expect((await oauthError(reg.authenticate(client_id, undefined, 'none'))).code).toBe('invalid_client');
  });

  it('lists pre-registered and dynamic clients', async () => {
    const reg = registry({
      preRegistered: [
        { clientId: 'chatgpt', redirectUris: ['https://chatgpt.com/connector_platform_oauth_redirect'] },
      ],
    });
    const { client_id } = await reg.register(CLAUDE);
    const ids = (await reg.list()).map((c) => `${c.source}:${c.client_id}`);
    expect(ids.sort()).toEqual([`dynamic:${client_id}`, 'pre-registered:chatgpt'].sort());
  });
});

describe('pre-registered clients', () => {
  const PRE = {
    clientId: 'claude-team',
    clientSecret: 'a-long-operator-chosen-secret',
    redirectUris: ['https://claude.ai/api/mcp/auth_callback', 'https://claude.com/api/mcp/auth_callback'],
    name: 'Claude (team)',
  };

  it('serves them from config with their secret, even when registration is off', async () => {
    const reg = registry({ dcrEnabled: false, preRegistered: [PRE] });
    const client = await reg.get('claude-team');
    expect(client).toMatchObject({
      client_id: 'claude-team',
      client_name: 'Claude (team)',
      redirect_uris: PRE.redirectUris,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token'],
      source: 'pre-registered',
      confidential: true,
    });
    expect((await reg.authenticate('claude-team', PRE.clientSecret, 'client_secret_post')).client_id).toBe(
      'claude-team',
    );
    expect(
      (await oauthError(reg.authenticate('claude-team', 'wrong-secret-xxxxxxxx', 'client_secret_basic')))
        .code,
    ).toBe('invalid_client');
    expect(await store.count('')).toBe(0);
  });

  it('allows a public pre-registered client (no secret)', async () => {
    const reg = registry({
      preRegistered: [{ clientId: 'inspector', redirectUris: ['http://localhost:6274/oauth/callback'] }],
    });
    const client = await reg.authenticate('inspector', undefined, 'none');
    expect(client).toMatchObject({
      confidential: false,
      token_endpoint_auth_method: 'none',
      client_name: 'inspector',
    });
  });

  it('cannot be deleted', async () => {
    const reg = registry({ preRegistered: [PRE] });
    expect(await reg.delete('claude-team')).toBe('pre_registered');
    expect(await reg.get('claude-team')).toBeDefined();
  });

  // [what, client, part of the message]
  const bad: Array<[string, Parameters<typeof registry>[0], string]> = [
    [
      'an invalid redirect URI',
      { preRegistered: [{ ...PRE, redirectUris: ['http://evil.example/cb'] }] },
      'redirect URI',
    ],
    ['no redirect URI', { preRegistered: [{ ...PRE, redirectUris: [] }] }, 'at least one redirect URI'],
    ['a short secret', { preRegistered: [{ ...PRE, clientSecret: 'short' }] }, 'at least 16 characters'],
    [
      'a URL client id',
      { preRegistered: [{ ...PRE, clientId: 'https://claude.ai/meta' }] },
      'must not be a URL',
    ],
    ['a client id with spaces', { preRegistered: [{ ...PRE, clientId: 'a b' }] }, 'printable ASCII'],
    ['a duplicate', { preRegistered: [PRE, PRE] }, 'listed twice'],
  ];
  it.each(bad)('refuses %s at construction, naming the client', (_what, options, message) => {
    expect(() => registry(options)).toThrow(message);
    expect(() => registry(options)).toThrow(/pre-registered client "/);
  });
});

describe('metadata document client ids', () => {
  const DOC = 'https://claude.ai/oauth/mcp-oauth-client-metadata';
  const documentClient: OAuthClient = {
    client_id: DOC,
    client_id_issued_at: 0,
    redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
    token_endpoint_auth_method: 'none',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    source: 'metadata-document',
    confidential: false,
  };

  it('delegates URL client ids to the resolver and authenticates them as public clients', async () => {
    const asked: string[] = [];
    const resolver: MetadataDocumentResolver = {
      resolve: async (id) => {
        asked.push(id);
        return documentClient;
      },
      forget: async () => {},
    };
    const reg = registry({ metadataDocuments: resolver });
    expect(await reg.get(DOC)).toEqual(documentClient);
    expect(await reg.authenticate(DOC, undefined, 'none')).toEqual(documentClient);
    expect(asked).toEqual([DOC, DOC]);
  });

  it('does not know URL client ids without a resolver', async () => {
    expect(await registry().get(DOC)).toBeUndefined();
  });

  it('does not look up ids of other forms in the store', async () => {
    const seen: string[] = [];
    const spy: StateStore = Object.assign(Object.create(store) as StateStore, {
      get: async (key: string) => {
        seen.push(key);
        return undefined;
      },
    });
    const reg = registry({ store: spy });
    expect(await reg.get('a:b')).toBeUndefined();
    expect(await reg.get('../x')).toBeUndefined();
    expect(seen).toEqual([]);
    expect(await reg.get('abc_DEF-123')).toBeUndefined();
    expect(seen).toEqual(['client:abc_DEF-123']);
  });
});
