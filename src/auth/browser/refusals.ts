import type { IncomingMessage } from 'node:http';
import type { Config } from '../../config/types.js';
import type { Logger } from '../../observability/logger.js';
import { StoreUnavailableError } from '../../store/state-store.js';
import type { AuditLog } from '../audit.js';
import { type Challenge, htmlChallenge, jsonChallenge } from '../challenge.js';
import { type ProtectedResource, serverPolicyRefusal } from '../facade/resources.js';
import type { UpstreamIdentity } from '../oidc/provider.js';
import { checkAllowLists } from '../policy/audited.js';
import { page } from './pages.js';

/**
 * The answers the browser login refuses with, both on a request's session check and on its own
 * endpoints: a page for a browser navigating, JSON for anything else.
 */

/** A browser navigating (it asks for HTML with GET or HEAD), rather than a script or an MCP client. */
export function wantsHtml(req: IncomingMessage): boolean {
  const method = req.method ?? 'GET';
  return (method === 'GET' || method === 'HEAD') && /\btext\/html\b/i.test(req.headers.accept ?? '');
}

/**
 * The allow-lists, applied at login and on every request (ALLOWED_*, then the `server`'s own when
 * the request is for one): undefined when the user may pass, else the 403 to answer with (the
 * refusal is audited).
 */
export function policyRefusal(
  deps: { config: Config; audit: AuditLog },
  req: IncomingMessage,
  identity: UpstreamIdentity,
  clientIp: string,
  server?: ProtectedResource,
): Challenge | undefined {
  const verdict = checkAllowLists(deps.audit, deps.config.auth.policy, identity, { ip: clientIp });
  const reason = verdict.allowed ? server && serverPolicyRefusal(server, identity) : verdict.reason;
  if (reason === undefined) return undefined;
  if (verdict.allowed && server) {
    deps.audit.record('access_denied', {
      sub: identity.sub,
      email: identity.email,
      ip: clientIp,
      server: server.name,
      reason,
    });
  }
  if (wantsHtml(req)) {
    return htmlChallenge(
      403,
      // prompt=login makes the provider ask for credentials again instead of reusing its
      // session, so the user can switch to an account that is allowed.
      page('Access denied', `You are signed in, but not allowed to use this server: ${reason}`, {
        href: '/login?prompt=login',
        text: 'Sign in with a different account',
      }),
      'denied',
    );
  }
  return jsonChallenge(403, 'access_denied', reason, 'denied');
}

/** 503 while the session store is down (never fail open); any other error is rethrown. */
export function storeUnavailable(logger: Logger, req: IncomingMessage, err: unknown): Challenge {
  logger.error({ err: (err as Error).message }, 'session store unavailable');
  const message =
    'Sessions cannot be checked right now (the session store is unavailable). Try again shortly.';
  if (!(err instanceof StoreUnavailableError)) throw err;
  return wantsHtml(req)
    ? htmlChallenge(503, page('Temporarily unavailable', message), 'store_unavailable', [
        ['retry-after', '5'],
      ])
    : jsonChallenge(503, 'temporarily_unavailable', message, 'store_unavailable', [['retry-after', '5']]);
}
