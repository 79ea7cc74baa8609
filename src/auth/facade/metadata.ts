/**
 * Discovery documents of the authorization server facade and the protected resource, and the
 * `WWW-Authenticate` challenge that points MCP clients at them. Pure functions of PUBLIC_URL and
 * MCP_PATH: nothing here ever reads a Host header, since the MCP SDK refuses a `resource` that
 * differs from the URL it was given, and a forged Host must not move the issuer.
 */

/** The scope MCP clients are granted (the only one the proxy defines). */
export const MCP_SCOPE = 'mcp';

/** Access tokens live briefly; clients refresh them (the MCP authorization spec asks for short-lived tokens). */
export const ACCESS_TOKEN_TTL_SECONDS = 900;

/** Paths the facade answers at the origin root (the documented defaults; the metadata advertises them). */
export const FACADE_PATHS = {
  authorize: '/authorize',
  token: '/token',
  register: '/register',
  revoke: '/revoke',
  jwks: '/jwks.json',
  authorizationServerMetadata: '/.well-known/oauth-authorization-server',
  openIdConfiguration: '/.well-known/openid-configuration',
  protectedResourceMetadata: '/.well-known/oauth-protected-resource',
} as const;

export type TokenEndpointAuthMethod = 'none' | 'client_secret_basic' | 'client_secret_post';
export const TOKEN_ENDPOINT_AUTH_METHODS: readonly TokenEndpointAuthMethod[] = [
  'none',
  'client_secret_basic',
  'client_secret_post',
];

/** The issuer: PUBLIC_URL's origin, no path and no trailing slash (RFC 8414 §2, RFC 9207). */
export function issuerUrl(publicUrl: URL): string {
  return publicUrl.origin;
}

/** The protected resource, `PUBLIC_URL + MCP_PATH`: the audience of every token the proxy mints. */
export function resourceUrl(publicUrl: URL, mcpPath: string): string {
  return `${publicUrl.origin}${mcpPath}`;
}

/**
 * Where the resource's metadata lives (RFC 9728 §3.1): the well-known segment inserted between the
 * origin and the resource's path, a lone trailing `/` dropped (MCP_PATH `/` gives the root form).
 */
export function protectedResourceMetadataUrl(publicUrl: URL, mcpPath: string): string {
  const suffix = mcpPath === '/' ? '' : mcpPath;
  return `${publicUrl.origin}${FACADE_PATHS.protectedResourceMetadata}${suffix}`;
}

export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  bearer_methods_supported: ['header'];
  scopes_supported: string[];
  resource_name?: string;
}

export interface ProtectedResourceMetadataOptions {
  publicUrl: URL;
  mcpPath: string;
  scopesSupported: readonly string[];
  /** Human-readable name shown by some clients. */
  resourceName?: string;
}

/**
 * RFC 9728 metadata, served at both the path-inserted and the root well-known URL. Bearer tokens
 * are accepted in the Authorization header only (never the query string or a form body).
 */
export function protectedResourceMetadata(
  options: ProtectedResourceMetadataOptions,
): ProtectedResourceMetadata {
  const doc: ProtectedResourceMetadata = {
    resource: resourceUrl(options.publicUrl, options.mcpPath),
    authorization_servers: [issuerUrl(options.publicUrl)],
    bearer_methods_supported: ['header'],
    scopes_supported: [...options.scopesSupported],
  };
  if (options.resourceName) doc.resource_name = options.resourceName;
  return doc;
}

export interface AuthorizationServerMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  registration_endpoint?: string;
  revocation_endpoint: string;
  jwks_uri: string;
  scopes_supported: string[];
  response_types_supported: ['code'];
  response_modes_supported: ['query'];
  grant_types_supported: ['authorization_code', 'refresh_token'];
  code_challenge_methods_supported: ['S256'];
  token_endpoint_auth_methods_supported: TokenEndpointAuthMethod[];
  revocation_endpoint_auth_methods_supported: TokenEndpointAuthMethod[];
  client_id_metadata_document_supported: boolean;
  authorization_response_iss_parameter_supported: true;
}

export interface AuthorizationServerMetadataOptions {
  publicUrl: URL;
  scopesSupported: readonly string[];
  /**
   * Whether /register is open (dynamic client registration). When false, `registration_endpoint`
   * is left out, so clients ask their user for a pre-registered client id and secret instead of
   * trying to register and failing. Default true.
   */
  registrationEnabled?: boolean;
  /** Whether client ids may be metadata document URLs. Default true. */
  clientIdMetadataDocumentsEnabled?: boolean;
}

/** RFC 8414 metadata at /.well-known/oauth-authorization-server. */
export function authorizationServerMetadata(
  options: AuthorizationServerMetadataOptions,
): AuthorizationServerMetadata {
  const issuer = issuerUrl(options.publicUrl);
  const doc: AuthorizationServerMetadata = {
    issuer,
    authorization_endpoint: `${issuer}${FACADE_PATHS.authorize}`,
    token_endpoint: `${issuer}${FACADE_PATHS.token}`,
    revocation_endpoint: `${issuer}${FACADE_PATHS.revoke}`,
    jwks_uri: `${issuer}${FACADE_PATHS.jwks}`,
    scopes_supported: [...options.scopesSupported],
    response_types_supported: ['code'],
    response_modes_supported: ['query'],
    grant_types_supported: ['authorization_code', 'refresh_token'],
    code_challenge_methods_supported: ['S256'],
    token_endpoint_auth_methods_supported: [...TOKEN_ENDPOINT_AUTH_METHODS],
    revocation_endpoint_auth_methods_supported: [...TOKEN_ENDPOINT_AUTH_METHODS],
    client_id_metadata_document_supported: options.clientIdMetadataDocumentsEnabled ?? true,
    authorization_response_iss_parameter_supported: true,
  };
  if (options.registrationEnabled ?? true) doc.registration_endpoint = `${issuer}${FACADE_PATHS.register}`;
  return doc;
}

export interface OpenIdConfiguration extends AuthorizationServerMetadata {
  subject_types_supported: ['public'];
  id_token_signing_alg_values_supported: [];
}

/**
 * The same document at /.well-known/openid-configuration, for clients that only try OIDC
 * discovery (the MCP SDK falls back to it). OIDC Discovery makes `subject_types_supported` and
 * `id_token_signing_alg_values_supported` required, and the SDK's schema insists on both. The
 * proxy issues access tokens only, never ID tokens, so it claims no ID token algorithm (an empty
 * list: naming RS256 would promise ID tokens that never come), advertises no `openid` scope, no
 * userinfo endpoint and no claims. `subject_types_supported: ["public"]` is true of the `sub` in
 * its access tokens.
 */
export function openIdConfiguration(options: AuthorizationServerMetadataOptions): OpenIdConfiguration {
  return {
    ...authorizationServerMetadata(options),
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [],
  };
}

/** RFC 6750 §3.1 error codes a resource server puts in a challenge. */
export type BearerErrorCode = 'invalid_request' | 'invalid_token' | 'insufficient_scope';

export interface BearerChallengeOptions {
  resourceMetadataUrl: string;
  /** The scope needed (the full set, not only what is missing); omitted from the header when empty. */
  scope: string | readonly string[];
  /** Absent when the request carried no credentials (RFC 6750 §3.1): no `error=` then. */
  error?: BearerErrorCode;
  description?: string;
}

/** RFC 6750 §3: scope-token characters (NQCHAR, space separated). */
const SCOPE_VALUE = /^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$/;
/** Characters an error_description may hold (RFC 6750 §3: %x20-21 / %x23-5B / %x5D-7E). */
const NOT_DESCRIPTION_CHAR = /[^\x20\x21\x23-\x5b\x5d-\x7e]/g;
/** A URL in a quoted-string: printable ASCII without `"` and `\`. */
const QUOTABLE_URL = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

/**
 * The `WWW-Authenticate` value of a 401/403 from the MCP endpoint, e.g.
 * `Bearer resource_metadata="https://p.example/.well-known/oauth-protected-resource/mcp", scope="mcp"`
 * and, when a token was sent, `..., error="invalid_token", error_description="..."`.
 *
 * A description is reduced to the characters RFC 6750 allows in it (`"` and `\` become `'` and
 * `/`, anything else outside printable ASCII a space), so no text can break out of the header.
 * A scope or URL outside the allowed characters is a programming error and throws.
 */
export function wwwAuthenticateChallenge(options: BearerChallengeOptions): string {
  if (!QUOTABLE_URL.test(options.resourceMetadataUrl)) {
    throw new RangeError(`resourceMetadataUrl cannot be sent in a header: ${options.resourceMetadataUrl}`);
  }
  const params = [`resource_metadata="${options.resourceMetadataUrl}"`];
  const scope = typeof options.scope === 'string' ? options.scope : options.scope.join(' ');
  if (scope !== '') {
    if (!SCOPE_VALUE.test(scope)) throw new RangeError(`scope has characters RFC 6750 forbids: ${scope}`);
    params.push(`scope="${scope}"`);
  }
  if (options.error) {
    params.push(`error="${options.error}"`);
    if (options.description) {
      const description = options.description
        .replaceAll('"', "'")
        .replaceAll('\\', '/')
        .replace(NOT_DESCRIPTION_CHAR, ' ');
      params.push(`error_description="${description}"`);
    }
  }
  return `Bearer ${params.join(', ')}`;
}
