/** Values computed from several settings, which both the cross-field rules and the Config use. */
import type { ParsedValues } from './parse.js';

/** PUBLIC_URL's origin, or `http://localhost:SERVER_PORT` when it is unset. */
export function publicUrlOf(values: ParsedValues): URL {
  if (values.PUBLIC_URL) return new URL(values.PUBLIC_URL.origin);
  // Without a valid SERVER_PORT (only while its problem is being reported) the port is left out.
  const port = values.SERVER_PORT === undefined ? '' : `:${values.SERVER_PORT}`;
  return new URL(`http://localhost${port}`);
}

/** OIDC_SCOPES, written comma or space separated, as one list. */
export function oidcScopes(values: ParsedValues): string[] {
  return (values.OIDC_SCOPES ?? []).flatMap((s) => s.split(/\s+/)).filter(Boolean);
}
