import { STORE_KEY_PREFIXES } from '../../store/key-prefixes.js';
import { randomId, type SealingKeys } from '../../store/sealing-keys.js';
import type { StateStore } from '../../store/state-store.js';

/** How long the consent page's request stays answerable. */
export const PENDING_AUTHORIZATION_TTL_MS = 10 * 60 * 1000;
/** How long an approval is remembered per user and client. */
export const CONSENT_TTL_MS = 90 * 24 * 60 * 60 * 1000;

const PENDING_PREFIX = STORE_KEY_PREFIXES.pendingAuthorization;
const CONSENT_PREFIX = STORE_KEY_PREFIXES.consent;

/** A checked authorization request (/authorize). */
export interface AuthorizationRequest {
  clientId: string;
  redirectUri: string;
  codeChallenge: string;
  resource: string;
  scope: string;
  state?: string;
}

/** A request waiting on the user's decision, bound to the browser session that was shown the page. */
export interface PendingAuthorization extends AuthorizationRequest {
  sessionId: string;
}

/**
 * The user's approvals of clients, and the requests waiting for one.
 *
 * Store layout:
 * - `consent:<percent-encoded sub>:<client id>`: the approvals, `<resource>#<scope>` words (one MCP
 *   server's approval is not another's), for CONSENT_TTL_MS. The subject is encoded so a `:` in it
 *   cannot make one user's key another's, and all of a user's approvals share one prefix; words of
 *   another form (a scope alone, from before several servers) approve nothing, so the user is
 *   asked once more;
 * - `authz-request:<random id>`: a pending request, sealed with SealingKeys bound to its key (it
 *   names the session), taken (read and deleted at once) by the one decision that answers it.
 */
export class Consents {
  constructor(
    private readonly store: StateStore,
    private readonly keys: SealingKeys,
  ) {}

  /**
   * Remembers that the user approved the client for `scope` on `resource`, beside what they
   * approved for other servers.
   */
  async remember(sub: string, clientId: string, resource: string, scope: string): Promise<void> {
    const key = consentKey(sub, clientId);
    const kept = ((await this.store.get(key)) ?? '')
      .split(' ')
      .filter((word) => word !== '' && !word.startsWith(`${resource}#`));
    const approved = scope.split(' ').map((s) => `${resource}#${s}`);
    await this.store.set(key, [...kept, ...approved].join(' '), CONSENT_TTL_MS);
  }

  /** Whether the user approved the client before for every scope asked for now on `resource`. */
  async covers(sub: string, clientId: string, resource: string, scope: string): Promise<boolean> {
    const granted = await this.store.get(consentKey(sub, clientId));
    if (granted === undefined) return false;
    const have = new Set(granted.split(' '));
    return scope.split(' ').every((s) => have.has(`${resource}#${s}`));
  }

  /**
   * Forgets the approvals of a user or given to a client (admin "revoke user" / "revoke client"),
   * so the consent page is shown again; how many. The client id is whatever follows the encoded
   * subject's `:`.
   */
  async forget(match: { sub: string } | { clientId: string }): Promise<number> {
    const keys =
      'sub' in match
        ? await this.store.keys(consentKeyPrefix(match.sub))
        : (await this.store.keys(CONSENT_PREFIX)).filter(
            (key) => key.slice(key.indexOf(':', CONSENT_PREFIX.length) + 1) === match.clientId,
          );
    await Promise.all(keys.map((key) => this.store.delete(key)));
    return keys.length;
  }

  /** Holds a request while the consent page is shown; returns the id the page's form posts back. */
  async hold(pending: PendingAuthorization): Promise<string> {
    const requestId = randomId();
    const key = PENDING_PREFIX + requestId;
    await this.store.set(key, this.keys.encrypt(JSON.stringify(pending), key), PENDING_AUTHORIZATION_TTL_MS);
    return requestId;
  }

  /** The held request, once: undefined when it expired, was answered already or cannot be read. */
  async take(requestId: string): Promise<PendingAuthorization | undefined> {
    const key = PENDING_PREFIX + requestId;
    const sealed = await this.store.take(key);
    const plain = sealed === undefined ? undefined : this.keys.decrypt(sealed, key);
    return plain === undefined ? undefined : (JSON.parse(plain) as PendingAuthorization);
  }
}

function consentKey(sub: string, clientId: string): string {
  return `${consentKeyPrefix(sub)}${clientId}`;
}

function consentKeyPrefix(sub: string): string {
  return `${CONSENT_PREFIX}${encodeURIComponent(sub)}:`;
}
