import { STORE_KEY_PREFIXES } from './key-prefixes.js';
import type { SealingKeys } from './sealing-keys.js';
import type { StateStore } from './state-store.js';

const CHECK_KEY = STORE_KEY_PREFIXES.sealingCheck;
const CHECK_TEXT = 'mcp-oidc-proxy sealing check';
/** The contract needs a finite TTL; the record is rewritten by every start, so this is never reached. */
const CHECK_TTL_MS = 10 * 365 * 24 * 3600 * 1000;

/** What a start found in the store. */
export type SealingClaim =
  /** Nothing sealed yet under this key prefix: the store is this secret's from now on. */
  | 'new'
  /** Sealed with this instance's SESSION_SECRET: instances share state as they should. */
  | 'same'
  /** Sealed with another SESSION_SECRET (a restart with a new secret, or another deployment on the same prefix). */
  | 'other';

/**
 * Which SESSION_SECRET the state under this key prefix is sealed with: one record sealed with the
 * secret of the instance that started last. A start claims the store for its own secret (state
 * sealed with another one is unreadable to it anyway); the record then tells an instance whether
 * it may replace what it cannot open (the signing key): the instance whose secret the store is
 * sealed with may, one with a stale secret may not, so two deployments wrongly sharing a prefix
 * never take the signing key from each other in turn.
 */
export class SealingCheck {
  constructor(
    private readonly store: StateStore,
    private readonly keys: SealingKeys,
  ) {}

  /** Claims the store for this instance's secret, saying what it held before. */
  async claim(): Promise<SealingClaim> {
    const sealed = this.keys.encrypt(CHECK_TEXT, CHECK_KEY);
    if (await this.store.setIfAbsent(CHECK_KEY, sealed, CHECK_TTL_MS)) return 'new';
    if (await this.isMine()) return 'same';
    await this.store.set(CHECK_KEY, sealed, CHECK_TTL_MS);
    return 'other';
  }

  /** Whether the store is sealed with this instance's secret (absent: nobody claimed it, so yes). */
  async isMine(): Promise<boolean> {
    const sealed = await this.store.get(CHECK_KEY);
    return sealed === undefined || this.keys.decrypt(sealed, CHECK_KEY) === CHECK_TEXT;
  }
}
