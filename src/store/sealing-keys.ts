import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';

/**
 * Keys derived from SESSION_SECRET (or a random per-process secret): one signs cookies,
 * one encrypts what the store holds, so Redis never sees a refresh token in clear and a
 * stolen Redis dump cannot be turned into cookies.
 */
export class SealingKeys {
  private readonly signing: Buffer;
  private readonly encryption: Buffer;

  constructor(secret: string | undefined) {
    const ikm = secret ? Buffer.from(secret, 'utf8') : randomBytes(32);
    this.signing = Buffer.from(hkdfSync('sha256', ikm, 'mcp-oidc-proxy', 'cookie-signing', 32));
    this.encryption = Buffer.from(hkdfSync('sha256', ikm, 'mcp-oidc-proxy', 'store-encryption', 32));
  }

  /**
   * `value.signature`: what a cookie carries. The purpose is part of what is signed, so a value
   * signed for one cookie (a login binding) is refused where another is expected (a session id).
   */
  sign(value: string, purpose: string): string {
    return `${value}.${this.mac(value, purpose)}`;
  }

  private mac(value: string, purpose: string): string {
    return createHmac('sha256', this.signing)
      .update(purpose)
      .update('\u0000')
      .update(value)
      .digest('base64url');
  }

  /** `value.signature` -> value, or undefined when the signature does not match for `purpose`. */
  unsign(signed: string, purpose: string): string | undefined {
    const dot = signed.lastIndexOf('.');
    if (dot <= 0) return undefined;
    const value = signed.slice(0, dot);
    const given = Buffer.from(signed.slice(dot + 1), 'utf8');
    const expected = Buffer.from(this.mac(value, purpose), 'utf8');
    return given.length === expected.length && timingSafeEqual(given, expected) ? value : undefined;
  }

  /** AES-256-GCM; `context` (the store key) is bound as associated data, so records cannot be swapped. */
  encrypt(plaintext: string, context: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.encryption, iv);
    cipher.setAAD(Buffer.from(context, 'utf8'));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
  }

  decrypt(sealed: string, context: string): string | undefined {
    try {
      const raw = Buffer.from(sealed, 'base64url');
      const decipher = createDecipheriv('aes-256-gcm', this.encryption, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}

/** 256 bits of randomness, URL-safe: session ids, login states. */
export function randomId(): string {
  return randomBytes(32).toString('base64url');
}
