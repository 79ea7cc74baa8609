import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthContext, RouteHandler } from '../authenticator.js';
import type { AuthorizationServer } from './authorization-server.js';
import type { ClientRegistry, OAuthClient } from './clients.js';
import { InvalidClientError, InvalidRequestError } from './errors.js';
import { param, rateLimited, readFormBody, writeJsonFailure, writeMethodNotAllowed } from './http.js';
import type { TokenEndpointAuthMethod } from './metadata.js';

/**
 * Client authentication at /token and /revoke (RFC 6749 §2.3.1): `client_secret_basic` (the
 * Authorization header), `client_secret_post` (client_id and client_secret in the form), or
 * `none` (client_id only, public clients). Using two methods in one request is refused (§2.3).
 * Which method a client may use is the registry's decision (ClientRegistry.authenticate).
 */

export interface AuthenticatedClient {
  client: OAuthClient;
  method: TokenEndpointAuthMethod;
}

/** The `WWW-Authenticate` of a 401 to a request that authenticated with HTTP Basic (RFC 6749 §5.2). */
export function basicChallenge(issuer: string): string {
  return `Basic realm="${issuer}"`;
}

/**
 * True when the request uses the HTTP Basic scheme (its 401 then needs the Basic challenge), even
 * with no credentials after it: `Authorization: Basic` alone is an attempt at Basic, to be refused
 * as one, not ignored in favour of a client_id in the body.
 */
export function usesBasicAuth(req: IncomingMessage): boolean {
  return /^basic(?:\s|$)/i.test(req.headers.authorization ?? '');
}

/**
 * The client this request authenticates as. Throws InvalidClientError (401) for unknown clients
 * and bad credentials, InvalidRequestError for malformed or conflicting credentials, and
 * TemporarilyUnavailableError when the client store is down.
 */
export async function authenticateClient(
  clients: ClientRegistry,
  req: IncomingMessage,
  params: URLSearchParams,
): Promise<AuthenticatedClient> {
  const bodyId = param(params, 'client_id');
  const bodySecret = param(params, 'client_secret');
  if (usesBasicAuth(req)) {
    const { id, secret } = parseBasic(req.headers.authorization!);
    if (bodySecret !== undefined) {
      throw new InvalidRequestError(
        'the client authenticated twice (Authorization header and client_secret); use one method',
      );
    }
    if (bodyId !== undefined && bodyId !== id) {
      throw new InvalidRequestError('client_id in the body differs from the one in the Authorization header');
    }
    const client = await clients.authenticate(id, secret, 'client_secret_basic');
    return { client, method: 'client_secret_basic' };
  }
  if (bodyId === undefined) {
    throw new InvalidClientError(
      'no client authentication: send client_id (and client_secret for a confidential client)',
    );
  }
  const method: TokenEndpointAuthMethod = bodySecret === undefined ? 'none' : 'client_secret_post';
  const client = await clients.authenticate(bodyId, bodySecret, method);
  return { client, method };
}

/**
 * `Basic base64(urlencode(id) ":" urlencode(secret))`: RFC 6749 §2.3.1 form-encodes both parts
 * before joining them, so they are decoded after the split (`+` is a space).
 */
function parseBasic(header: string): { id: string; secret: string } {
  const encoded = header.replace(/^basic/i, '').trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) {
    throw new InvalidClientError('the Authorization header is not valid Basic credentials');
  }
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) throw new InvalidClientError('the Basic credentials have no ":" between id and secret');
  const id = formDecode(decoded.slice(0, colon));
  const secret = formDecode(decoded.slice(colon + 1));
  if (id === undefined || secret === undefined || id === '') {
    throw new InvalidClientError('the Basic credentials are not form-url-encoded id and secret');
  }
  return { id, secret };
}

function formDecode(value: string): string | undefined {
  try {
    return decodeURIComponent(value.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

/**
 * An endpoint only authenticated clients call with a POSTed form (/token, /revoke): it spends the
 * login budget, checks the method, reads the form and authenticates the client before `handle`
 * runs; a failure becomes an OAuth error body, and a failed Basic authentication also gets its
 * `WWW-Authenticate` challenge (RFC 6749 §5.2).
 */
export function clientEndpoint(
  server: AuthorizationServer,
  handle: (
    client: OAuthClient,
    params: URLSearchParams,
    res: ServerResponse,
    ctx: AuthContext,
  ) => Promise<void>,
): RouteHandler {
  const { issuer } = server;
  return async (req, res, ctx) => {
    if (await rateLimited(server, res, ctx)) return;
    if (req.method !== 'POST') return writeMethodNotAllowed(res, 'POST', ctx.requestId);
    const basic = usesBasicAuth(req);
    try {
      const params = await readFormBody(req, res);
      const { client } = await authenticateClient(server.clients, req, params);
      await handle(client, params, res, ctx);
    } catch (error) {
      if (error instanceof InvalidClientError && basic) {
        res.setHeader('www-authenticate', basicChallenge(issuer));
      }
      writeJsonFailure(server, res, error, ctx);
    }
  };
}
