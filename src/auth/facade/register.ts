import type { RouteHandler } from '../authenticator.js';
import type { FacadeDeps } from './deps.js';
import { InvalidClientMetadataError } from './errors.js';
import { rateLimited, writeJson, writeJsonFailure, writeMethodNotAllowed } from './http.js';

/** Registration bodies are small JSON documents; more is refused unread. */
const MAX_REGISTRATION_BYTES = 64 * 1024;

/**
 * POST /register: Dynamic Client Registration (RFC 7591). The body is validated by the
 * ClientRegistry; the answer is the client information, 201, never cached.
 */
export function createRegisterHandler(deps: FacadeDeps): RouteHandler {
  return async (req, res, ctx) => {
    if (await rateLimited(deps, res, ctx)) return;
    if (req.method !== 'POST') return writeMethodNotAllowed(res, 'POST');
    try {
      const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
      if (type !== 'application/json') {
        req.resume();
        throw new InvalidClientMetadataError('the registration body must be application/json');
      }
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of req) {
        size += (chunk as Buffer).length;
        if (size > MAX_REGISTRATION_BYTES) {
          res.setHeader('connection', 'close');
          req.resume();
          throw new InvalidClientMetadataError(
            `the registration body is larger than ${MAX_REGISTRATION_BYTES} bytes`,
          );
        }
        chunks.push(chunk as Buffer);
      }
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        throw new InvalidClientMetadataError('the registration body is not valid JSON');
      }
      const client = await deps.clients.register(body);
      deps.audit.record('client_registered', {
        client_id: client.client_id,
        client_name: client.client_name,
        ip: ctx.clientIp,
      });
      writeJson(res, 201, client);
    } catch (error) {
      writeJsonFailure(deps, res, error, ctx);
    }
  };
}
