// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
const UNSAFE = /[\u0000-\u001f\u007f\\]/;

/**
 * Where to land after login: a path on this proxy's own origin, or `/`. Only same-origin
 * targets pass (no open redirect): `//evil.example`, `/\evil.example`, `https://evil.example`,
 * `javascript:` and anything with control characters or backslashes fall back to `/`.
 */
export function safeReturnTo(rd: string | null | undefined, publicUrl: URL): string {
  if (!rd || rd.length > 2048 || UNSAFE.test(rd)) return '/';
  let target: URL;
  try {
    target = rd.startsWith('/') && !rd.startsWith('//') ? new URL(rd, publicUrl) : new URL(rd);
  } catch {
    return '/';
  }
  if (target.origin !== publicUrl.origin) return '/';
  return `${target.pathname}${target.search}${target.hash}`;
}
