import { z } from 'zod';
import { InvalidClientMetadataError, InvalidRedirectUriError, type OAuthError } from './errors.js';
import type { TokenEndpointAuthMethod } from './metadata.js';
import { validateRedirectUri } from './redirect-uris.js';

/**
 * RFC 7591 client metadata as the facade accepts it, from a registration request body (clients.ts)
 * or a client ID metadata document (cimd.ts). Fields the facade has no use for (jwks, software
 * statements, ...) are dropped; every kept field is bounded in size, since it is stored for months
 * and shown on the consent page.
 */

export type GrantType = 'authorization_code' | 'refresh_token';
export const GRANT_TYPES: readonly GrantType[] = ['authorization_code', 'refresh_token'];

export const MAX_REDIRECT_URIS = 20;
export const MAX_CLIENT_NAME_LENGTH = 200;
export const MAX_URI_LENGTH = 2000;
export const MAX_SCOPE_LENGTH = 1000;
export const MAX_CONTACTS = 10;
export const MAX_SHORT_STRING = 200;

export interface ClientMetadata {
  redirect_uris: string[];
  token_endpoint_auth_method: TokenEndpointAuthMethod;
  grant_types: GrantType[];
  response_types: ['code'];
  client_name?: string;
  client_uri?: string;
  logo_uri?: string;
  tos_uri?: string;
  policy_uri?: string;
  scope?: string;
  contacts?: string[];
  software_id?: string;
  software_version?: string;
}

export interface ClientMetadataRules {
  /** What an absent token_endpoint_auth_method means (RFC 7591 §2: client_secret_basic). */
  defaultAuthMethod: TokenEndpointAuthMethod;
  allowedAuthMethods: readonly TokenEndpointAuthMethod[];
}

/** C0/C1 controls and the bidirectional overrides that could disguise a name on the consent page. */
function isDisplayUnsafe(value: string): boolean {
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c === 0x200e || c === 0x200f) return true;
    if ((c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069)) return true;
  }
  return false;
}

/** RFC 6749 §3.3: space-separated scope-tokens of %x21 / %x23-5B / %x5D-7E. */
const SCOPE = /^[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*$/;

function isHttpsUrl(value: string): boolean {
  if (/[^\x21-\x7e]|[\\#]/.test(value)) return false;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' && url.username === '' && url.password === '';
  } catch {
    return false;
  }
}

/** An https URL field; an empty string counts as absent (some clients send `"logo_uri": ""`). */
function httpsUrlField(name: string) {
  return z.preprocess(
    (v) => (v === '' || v === null ? undefined : v),
    z
      .string({ error: `${name} must be a string` })
      .max(MAX_URI_LENGTH, { error: `${name} is longer than ${MAX_URI_LENGTH} characters` })
      .refine(isHttpsUrl, { error: `${name} must be an https URL without userinfo or fragment` })
      .optional(),
  );
}

function displayString(name: string, max: number) {
  return z
    .string({ error: `${name} must be a string` })
    .max(max, { error: `${name} is longer than ${max} characters` })
    .refine((v) => !isDisplayUnsafe(v), { error: `${name} contains control characters` })
    .optional();
}

function unique<T>(values: T[]): T[] {
  return [...new Set(values)];
}

function metadataSchema(rules: ClientMetadataRules) {
  const methods = rules.allowedAuthMethods.join(', ');
  return z.object({
    redirect_uris: z
      .array(z.string({ error: 'each of redirect_uris must be a string' }), {
        error: (issue) =>
          issue.input === undefined
            ? 'redirect_uris is required: list the URIs the client receives authorization codes at'
            : 'redirect_uris must be an array of strings',
      })
      .min(1, { error: 'redirect_uris must list at least one URI' })
      .max(MAX_REDIRECT_URIS, { error: `redirect_uris may list at most ${MAX_REDIRECT_URIS} URIs` })
      .superRefine((uris, ctx) => {
        uris.forEach((uri, i) => {
          const check = validateRedirectUri(uri);
          if (!check.ok) {
            const shown = uri.length > 100 ? `${uri.slice(0, 100)}...` : uri;
            ctx.addIssue({ code: 'custom', path: [i], message: `${JSON.stringify(shown)} ${check.reason}` });
          }
        });
      })
      .transform(unique),
    token_endpoint_auth_method: z
      .string({ error: 'token_endpoint_auth_method must be a string' })
      .optional()
      .transform((v, ctx): TokenEndpointAuthMethod => {
        const method = (v ?? rules.defaultAuthMethod) as TokenEndpointAuthMethod;
        if (!rules.allowedAuthMethods.includes(method)) {
          ctx.addIssue({
            code: 'custom',
            message: `token_endpoint_auth_method ${JSON.stringify(method.slice(0, 50))} is not supported; use one of ${methods}`,
          });
          return z.NEVER;
        }
        return method;
      }),
    grant_types: z
      .array(z.string({ error: 'each of grant_types must be a string' }), {
        error: 'grant_types must be an array of strings',
      })
      .max(10, { error: 'grant_types lists too many values' })
      .optional()
      .transform((v) => unique(v ?? ['authorization_code']))
      .superRefine((grants, ctx) => {
        for (const g of grants) {
          if (!GRANT_TYPES.includes(g as GrantType)) {
            ctx.addIssue({
              code: 'custom',
              message: `grant type ${JSON.stringify(g.slice(0, 80))} is not supported; use authorization_code and refresh_token`,
            });
          }
        }
        if (!grants.includes('authorization_code')) {
          ctx.addIssue({ code: 'custom', message: 'grant_types must include authorization_code' });
        }
      })
      .transform((v) => v as GrantType[]),
    response_types: z
      .array(z.string({ error: 'each of response_types must be a string' }), {
        error: 'response_types must be an array of strings',
      })
      .max(10, { error: 'response_types lists too many values' })
      .optional()
      .transform((v) => unique(v ?? ['code']))
      .refine((v) => v.length === 1 && v[0] === 'code', { error: 'response_types must be ["code"]' })
      .transform((): ['code'] => ['code']),
    client_name: displayString('client_name', MAX_CLIENT_NAME_LENGTH),
    client_uri: httpsUrlField('client_uri'),
    logo_uri: httpsUrlField('logo_uri'),
    tos_uri: httpsUrlField('tos_uri'),
    policy_uri: httpsUrlField('policy_uri'),
    scope: z
      .string({ error: 'scope must be a string' })
      .max(MAX_SCOPE_LENGTH, { error: `scope is longer than ${MAX_SCOPE_LENGTH} characters` })
      .refine((v) => SCOPE.test(v), { error: 'scope must be scope tokens separated by single spaces' })
      .optional(),
    contacts: z
      .array(
        z
          .string({ error: 'each of contacts must be a string' })
          .max(320, { error: 'a contact is longer than 320 characters' }),
        { error: 'contacts must be an array of strings' },
      )
      .max(MAX_CONTACTS, { error: `contacts may list at most ${MAX_CONTACTS} addresses` })
      .optional(),
    software_id: displayString('software_id', MAX_SHORT_STRING),
    software_version: displayString('software_version', MAX_SHORT_STRING),
  });
}

/**
 * Validates client metadata. Throws InvalidRedirectUriError when a redirect URI is the problem,
 * InvalidClientMetadataError otherwise, with every problem found in the description.
 */
export function parseClientMetadata(body: unknown, rules: ClientMetadataRules): ClientMetadata {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidClientMetadataError('the client metadata must be a JSON object');
  }
  const result = metadataSchema(rules).safeParse(body);
  if (result.success) {
    const metadata: ClientMetadata = { ...result.data };
    for (const key of Object.keys(metadata) as Array<keyof ClientMetadata>) {
      if (metadata[key] === undefined) delete metadata[key];
    }
    return metadata;
  }
  const issues = result.error.issues;
  const messages = issues.slice(0, 5).map((issue) => {
    const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p))).join('');
    // Messages written above already name their field; zod's own (rare) ones get the path.
    return issue.message.includes(String(issue.path[0] ?? '')) && issue.path.length <= 1
      ? issue.message
      : `${path}: ${issue.message}`;
  });
  if (issues.length > 5) messages.push(`and ${issues.length - 5} more`);
  const description = messages.join('; ');
  const error: OAuthError = issues.some((i) => i.path[0] === 'redirect_uris')
    ? new InvalidRedirectUriError(description)
    : new InvalidClientMetadataError(description);
  throw error;
}
