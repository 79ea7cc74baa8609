import type { ServerResponse } from 'node:http';

/** The seed's security headers; the CSP is configurable (`CONTENT_SECURITY_POLICY`). */
export function securityHeaders(contentSecurityPolicy: string): ReadonlyArray<readonly [string, string]> {
  return [
    ['X-Frame-Options', 'DENY'],
    ['X-Content-Type-Options', 'nosniff'],
    ['X-XSS-Protection', '0'],
    ['Content-Security-Policy', contentSecurityPolicy],
    ['Referrer-Policy', 'no-referrer'],
    ['Permissions-Policy', 'camera=(), microphone=(), geolocation=(), payment=(), usb=()'],
  ];
}

/** On responses the proxy writes itself: always set. */
export function applySecurityHeaders(
  res: ServerResponse,
  headers: ReadonlyArray<readonly [string, string]>,
): void {
  for (const [name, value] of headers) res.setHeader(name, value);
}
