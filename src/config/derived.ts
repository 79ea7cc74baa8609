/** Values computed from several settings, which both the cross-field rules and the Config use. */
import { availableParallelism } from 'node:os';
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

/** What SERVER_WORKERS=auto means: one worker per CPU this process may use. */
export const AUTO_WORKERS = 'auto';

/** SERVER_WORKERS as a number of worker processes (`auto`: one per CPU); 1 when unset. */
export function workerCount(values: ParsedValues): number {
  const text = (values.SERVER_WORKERS ?? '1').toLowerCase();
  return text === AUTO_WORKERS ? availableParallelism() : Number(text);
}
