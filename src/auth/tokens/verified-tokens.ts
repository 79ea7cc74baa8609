import type { AccessTokenClaims } from './access-tokens.js';

/** A token whose signature and claims passed the checks, as AccessTokens remembers it. */
export interface VerifiedToken {
  claims: AccessTokenClaims;
  /** The key that verified the signature, and its kid. */
  kid: string;
  key: CryptoKey;
  /** `nbf`, epoch seconds. */
  notBefore: number | undefined;
  /** The store keys of the revocations that cover the token, read on every request. */
  revocationKeys: { jti: string; subject: string; client: string; grant?: string };
}

/** A small LRU of verified tokens by their string, bounded in entries and in characters held. */
export class VerifiedTokens {
  private readonly entries = new Map<string, VerifiedToken>();
  private chars = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxChars: number,
  ) {}

  get(token: string): VerifiedToken | undefined {
    const entry = this.entries.get(token);
    if (entry !== undefined) {
      // Most recently used last: the first entry is the one evicted.
      this.entries.delete(token);
      this.entries.set(token, entry);
    }
    return entry;
  }

  set(token: string, entry: VerifiedToken): void {
    if (token.length > this.maxChars) return;
    this.delete(token);
    this.entries.set(token, entry);
    this.chars += token.length;
    while (this.entries.size > this.maxEntries || this.chars > this.maxChars) {
      this.delete(this.entries.keys().next().value as string);
    }
  }

  delete(token: string): void {
    if (this.entries.delete(token)) this.chars -= token.length;
  }
}
