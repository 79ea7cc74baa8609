import type { IncomingMessage, ServerResponse } from 'node:http';

/** Who the caller is, as the backend learns it through identity headers. */
export interface Identity {
  user: string;
  email?: string;
  groups?: readonly string[];
}

/**
 * The authentication stage's verdict. `allow` lets the request be forwarded (with the
 * identity, if any); `responded` means the stage already answered (401, 302 to login, 403).
 */
export type AuthDecision =
  | { kind: 'allow'; identity?: Identity; credentialsConsumed: boolean }
  | { kind: 'responded'; result: string };

export interface Authenticator {
  readonly mode: string;
  /**
   * Sync or async: a stage that decides from the request alone (bypass, a cached session)
   * returns the decision directly, so the request is forwarded in the same tick; one that
   * must wait (token introspection, a session store) returns a promise.
   */
  authenticate(req: IncomingMessage, res: ServerResponse): AuthDecision | Promise<AuthDecision>;
}

/** Shared and frozen: an anonymous `allow` carries nothing request-specific. */
const ALLOW_ANONYMOUS: AuthDecision = Object.freeze({ kind: 'allow', credentialsConsumed: false });

/**
 * AUTH_MODE=bypass: every request passes without login (local development). The client's
 * Authorization header is left alone, since no credential of the proxy's was consumed.
 */
export class BypassAuthenticator implements Authenticator {
  readonly mode = 'bypass';

  authenticate(): AuthDecision {
    return ALLOW_ANONYMOUS;
  }
}
