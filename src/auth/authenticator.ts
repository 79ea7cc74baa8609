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
  authenticate(req: IncomingMessage, res: ServerResponse): Promise<AuthDecision>;
}

/**
 * AUTH_MODE=bypass: every request passes without login (local development). The client's
 * Authorization header is left alone, since no credential of the proxy's was consumed.
 */
export class BypassAuthenticator implements Authenticator {
  readonly mode = 'bypass';

  async authenticate(): Promise<AuthDecision> {
    return { kind: 'allow', credentialsConsumed: false };
  }
}
