import { extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
import {
  OAuthMetadataSchema,
  OAuthProtectedResourceMetadataSchema,
  OpenIdProviderDiscoveryMetadataSchema,
} from '@modelcontextprotocol/sdk/shared/auth.js';
import { describe, expect, it } from 'vitest';
import {
  authorizationServerMetadata,
  issuerUrl,
  openIdConfiguration,
  protectedResourceMetadata,
  protectedResourceMetadataUrl,
  resourceUrl,
  wwwAuthenticateChallenge,
} from '../../src/auth/facade/metadata.js';

const PUBLIC = new URL('https://mcp.example.com');
const SCOPES = ['mcp'];

describe('protected resource metadata', () => {
  it('names PUBLIC_URL + MCP_PATH as the resource and the proxy as its authorization server', () => {
    const doc = protectedResourceMetadata({ publicUrl: PUBLIC, mcpPath: '/mcp', scopesSupported: SCOPES });
    expect(doc).toEqual({
      resource: 'https://mcp.example.com/mcp',
      authorization_servers: ['https://mcp.example.com'],
      bearer_methods_supported: ['header'],
      scopes_supported: ['mcp'],
    });
    expect(OAuthProtectedResourceMetadataSchema.parse(doc).resource).toBe('https://mcp.example.com/mcp');
  });

  it('keeps a non-default port and a nested MCP path, and adds a resource name when given', () => {
    const publicUrl = new URL('https://tunnel.example.net:8443');
    const doc = protectedResourceMetadata({
      publicUrl,
      mcpPath: '/api/v1/mcp',
      scopesSupported: [],
      resourceName: 'Team tools',
    });
    expect(doc.resource).toBe('https://tunnel.example.net:8443/api/v1/mcp');
    expect(doc.authorization_servers).toEqual(['https://tunnel.example.net:8443']);
    expect(doc.resource_name).toBe('Team tools');
  });

  it('puts the well-known segment before the MCP path (RFC 9728 §3.1), root form for MCP_PATH /', () => {
    expect(protectedResourceMetadataUrl(PUBLIC, '/mcp')).toBe(
      'https://mcp.example.com/.well-known/oauth-protected-resource/mcp',
    );
    expect(protectedResourceMetadataUrl(PUBLIC, '/')).toBe(
      'https://mcp.example.com/.well-known/oauth-protected-resource',
    );
    expect(resourceUrl(PUBLIC, '/')).toBe('https://mcp.example.com/');
  });

  it('takes the issuer from the origin only, without a trailing slash', () => {
    expect(issuerUrl(new URL('http://localhost:8080/'))).toBe('http://localhost:8080');
    expect(issuerUrl(PUBLIC)).toBe('https://mcp.example.com');
  });
});

describe('authorization server metadata', () => {
  it('advertises the facade endpoints and capabilities MCP clients require', () => {
    const doc = authorizationServerMetadata({ publicUrl: PUBLIC, scopesSupported: SCOPES });
    expect(doc).toEqual({
      issuer: 'https://mcp.example.com',
      authorization_endpoint: 'https://mcp.example.com/authorize',
      token_endpoint: 'https://mcp.example.com/token',
      registration_endpoint: 'https://mcp.example.com/register',
      revocation_endpoint: 'https://mcp.example.com/revoke',
      jwks_uri: 'https://mcp.example.com/jwks.json',
      scopes_supported: ['mcp'],
      response_types_supported: ['code'],
      response_modes_supported: ['query'],
      grant_types_supported: ['authorization_code', 'refresh_token'],
      code_challenge_methods_supported: ['S256'],
      token_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
      revocation_endpoint_auth_methods_supported: ['none', 'client_secret_basic', 'client_secret_post'],
      client_id_metadata_document_supported: true,
      authorization_response_iss_parameter_supported: true,
    });
    const parsed = OAuthMetadataSchema.parse(doc);
    expect(parsed.code_challenge_methods_supported).toEqual(['S256']);
  });

  it('leaves registration_endpoint out when registration is closed, and can turn metadata documents off', () => {
    const doc = authorizationServerMetadata({
      publicUrl: PUBLIC,
      scopesSupported: SCOPES,
      registrationEnabled: false,
      clientIdMetadataDocumentsEnabled: false,
    });
    expect(doc).not.toHaveProperty('registration_endpoint');
    expect(doc.client_id_metadata_document_supported).toBe(false);
    expect(OAuthMetadataSchema.safeParse(doc).success).toBe(true);
  });

  it('serves the same data as openid-configuration, with the required OIDC fields but no ID token claim', () => {
    const oauth = authorizationServerMetadata({ publicUrl: PUBLIC, scopesSupported: SCOPES });
    const oidc = openIdConfiguration({ publicUrl: PUBLIC, scopesSupported: SCOPES });
    expect(oidc).toEqual({
      ...oauth,
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: [],
    });
    expect(oidc.scopes_supported).not.toContain('openid');
    expect(oidc).not.toHaveProperty('userinfo_endpoint');
    // The MCP SDK's fallback discovery parses this schema; it must accept the document.
    const parsed = OpenIdProviderDiscoveryMetadataSchema.parse(oidc);
    expect(parsed.code_challenge_methods_supported).toEqual(['S256']);
  });
});

describe('wwwAuthenticateChallenge', () => {
  const resourceMetadataUrl = 'https://mcp.example.com/.well-known/oauth-protected-resource/mcp';

  it('has no error when no credentials were sent (RFC 6750 §3.1)', () => {
    expect(wwwAuthenticateChallenge({ resourceMetadataUrl, scope: 'mcp' })).toBe(
      'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp"',
    );
  });

  it('names invalid_token and its description when a token was sent', () => {
    expect(
      wwwAuthenticateChallenge({
        resourceMetadataUrl,
        scope: ['mcp', 'files:read'],
        error: 'invalid_token',
        description: 'The access token expired',
      }),
    ).toBe(
      'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp files:read", error="invalid_token", error_description="The access token expired"',
    );
  });

  it('names insufficient_scope with the full scope needed', () => {
    const header = wwwAuthenticateChallenge({
      resourceMetadataUrl,
      scope: 'mcp admin',
      error: 'insufficient_scope',
    });
    expect(header).toBe(
      'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp admin", error="insufficient_scope"',
    );
  });

  it('leaves scope out when none is needed', () => {
    expect(wwwAuthenticateChallenge({ resourceMetadataUrl, scope: [] })).toBe(
      `Bearer resource_metadata="${resourceMetadataUrl}"`,
    );
  });

  it('reduces a description to the characters RFC 6750 allows, so it cannot break out of the header', () => {
    const header = wwwAuthenticateChallenge({
      resourceMetadataUrl,
      scope: 'mcp',
      error: 'invalid_token',
      description: 'bad "token"\\ here\r\nSet-Cookie: x=1 caf\u00e9',
    });
    expect(header).toBe(
      `Bearer resource_metadata="${resourceMetadataUrl}", scope="mcp", error="invalid_token", error_description="bad 'token'/ here  Set-Cookie: x=1 caf "`,
    );
    expect(header).not.toMatch(/[\r\n]/);
  });

  it('refuses a scope or URL that cannot be quoted', () => {
    expect(() => wwwAuthenticateChallenge({ resourceMetadataUrl, scope: 'a"b' })).toThrow(RangeError);
    expect(() => wwwAuthenticateChallenge({ resourceMetadataUrl, scope: 'a  b' })).toThrow(RangeError);
    expect(() => wwwAuthenticateChallenge({ resourceMetadataUrl: 'https://x/"', scope: 'mcp' })).toThrow(
      RangeError,
    );
  });

  it('is read back by the MCP SDK client', () => {
    const header = wwwAuthenticateChallenge({
      resourceMetadataUrl,
      scope: 'mcp files:read',
      error: 'invalid_token',
      description: 'expired',
    });
    const parsed = extractWWWAuthenticateParams(
      new Response(null, { status: 401, headers: { 'www-authenticate': header } }),
    );
    expect(parsed.resourceMetadataUrl?.href).toBe(resourceMetadataUrl);
    expect(parsed.scope).toBe('mcp files:read');
    expect(parsed.error).toBe('invalid_token');
  });
});
