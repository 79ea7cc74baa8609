// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
const UNSAFE = /[\u0000-\u001f\u007f\\]/;

/**
 * Where to land after login: a path on this proxy's own origin, or `/`. Only same-origin
 * targets pass (no open redirect): `//evil.example`, `/\evil.example`, `https://evil.example`,
 * `javascript:` and anything with control characters or backslashes fall back to `/`.
 * The check runs on the normalised result too: dot segments can turn a path into a
 * scheme-relative one (`/.//evil.example` and `/%2e//evil.example` become `//evil.example`).
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
  const path = `${target.pathname}${target.search}${target.hash}`;
  return path.startsWith('/') && !path.startsWith('//') && !UNSAFE.test(path) ? path : '/';
}
