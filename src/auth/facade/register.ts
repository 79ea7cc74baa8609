import { BodyError, mediaType, readBody } from '../../http/body.js';
import type { RouteHandler } from '../authenticator.js';
import type { AuthorizationServer } from './authorization-server.js';
import { InvalidClientMetadataError } from './errors.js';
import { rateLimited, writeJson, writeJsonFailure, writeMethodNotAllowed } from './http.js';

/** Registration bodies are small JSON documents; more is refused unread. */
const MAX_REGISTRATION_BYTES = 64 * 1024;

/**
 * POST /register: Dynamic Client Registration (RFC 7591). The body is validated by the
 * ClientRegistry; the answer is the client information, 201, never cached.
 */
export function createRegisterHandler(server: AuthorizationServer): RouteHandler {
  return async (req, res, ctx) => {
    if (await rateLimited(server, res, ctx)) return;
    if (req.method !== 'POST') return writeMethodNotAllowed(res, 'POST', ctx.requestId);
    try {
      if (mediaType(req) !== 'application/json') {
        req.resume();
        throw new InvalidClientMetadataError('the registration body must be application/json');
      }
      const raw = await readBody(req, MAX_REGISTRATION_BYTES).catch((error: unknown) => {
        if (error instanceof BodyError && error.reason === 'too_large') {
          res.setHeader('connection', 'close');
          throw new InvalidClientMetadataError(
            `the registration body is larger than ${MAX_REGISTRATION_BYTES} bytes`,
          );
        }
        throw error;
      });
      let body: unknown;
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        throw new InvalidClientMetadataError('the registration body is not valid JSON');
      }
      const client = await server.clients.register(body);
      server.audit.record('client_registered', {
        client_id: client.client_id,
        client_name: client.client_name,
        ip: ctx.clientIp,
      });
      writeJson(res, 201, client);
    } catch (error) {
      writeJsonFailure(server, res, error, ctx);
    }
  };
}
