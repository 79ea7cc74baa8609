import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';

describe('MCP discovery and bearer challenges (AUTH_MODE=oidc)', () => {
  let stack: OidcStack;

  beforeAll(async () => {
    stack = await startOidcStack({ ALLOWED_ORIGINS: 'http://localhost:6274' });
  });
  afterAll(async () => {
    await stack.close();
  });

  it('serves Protected Resource Metadata at the path and root forms, with resource from PUBLIC_URL', async () => {
    for (const path of [
      '/.well-known/oauth-protected-resource/mcp',
      '/.well-known/oauth-protected-resource',
    ]) {
      const res = await fetch(`${stack.url}${path}`, { headers: { host: 'localhost' } });
      expect(res.status, path).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body.resource).toBe(`${stack.url}/mcp`);
      expect(body.authorization_servers).toEqual([stack.url]);
      expect(body.bearer_methods_supported).toEqual(['header']);
    }
  });

  it('serves Authorization Server Metadata at both well-known names', async () => {
    for (const path of ['/.well-known/oauth-authorization-server', '/.well-known/openid-configuration']) {
      const res = await fetch(`${stack.url}${path}`);
      expect(res.status, path).toBe(200);
      const body = (await res.json()) as Record<string, unknown>;
      expect(body).toMatchObject({
        issuer: stack.url,
        authorization_endpoint: `${stack.url}/authorize`,
        token_endpoint: `${stack.url}/token`,
        registration_endpoint: `${stack.url}/register`,
        revocation_endpoint: `${stack.url}/revoke`,
        jwks_uri: `${stack.url}/jwks.json`,
        response_types_supported: ['code'],
        code_challenge_methods_supported: ['S256'],
        client_id_metadata_document_supported: true,
        authorization_response_iss_parameter_supported: true,
      });
      expect(body.token_endpoint_auth_methods_supported).toEqual(
        expect.arrayContaining(['none', 'client_secret_basic', 'client_secret_post']),
      );
    }
  });

  it('publishes a JWKS with a kid and no private parts', async () => {
    const res = await fetch(`${stack.url}/jwks.json`);
    expect(res.status).toBe(200);
    const { keys } = (await res.json()) as { keys: Array<Record<string, unknown>> };
    expect(keys.length).toBeGreaterThan(0);
    for (const key of keys) {
      expect(key.kid).toEqual(expect.any(String));
      expect(key.d).toBeUndefined();
    }
  });

  it('lets any web origin read the public endpoints, and answers their preflight', async () => {
    const meta = await fetch(`${stack.url}/.well-known/oauth-authorization-server`, {
      headers: { origin: 'https://inspector.example' },
    });
    expect(meta.status).toBe(200);
    expect(meta.headers.get('access-control-allow-origin')).toBe('*');
    const preflight = await fetch(`${stack.url}/token`, {
      method: 'OPTIONS',
      headers: { origin: 'https://inspector.example', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-headers')).toMatch(/Authorization/);
  });

  it('lets an allowed origin read the 401 challenge on /mcp, and refuses a foreign one', async () => {
    const res = await fetch(`${stack.url}/mcp`, {
      method: 'POST',
      headers: { origin: 'http://localhost:6274' },
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:6274');
    expect(res.headers.get('access-control-expose-headers')).toMatch(/WWW-Authenticate/);
    expect(res.headers.get('www-authenticate')).toBe(
      `Bearer resource_metadata="${stack.url}/.well-known/oauth-protected-resource/mcp", scope="mcp"`,
    );
    const preflight = await fetch(`${stack.url}/mcp`, {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:6274', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(204);
    const foreign = await fetch(`${stack.url}/mcp`, {
      method: 'POST',
      headers: { origin: 'https://evil.example' },
    });
    expect(foreign.status).toBe(403);
  });

  it('answers a bad bearer token with invalid_token, never reaching the backend', async () => {
    for (const token of ['not-a-jwt', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'a.b.c']) {
      const res = await fetch(`${stack.url}/mcp`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
      });
      expect(res.status, token).toBe(401);
      const header = res.headers.get('www-authenticate') ?? '';
      expect(header).toContain('error="invalid_token"');
      expect(header).toContain(`resource_metadata="${stack.url}/.well-known/oauth-protected-resource/mcp"`);
    }
  });
});
