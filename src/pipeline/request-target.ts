/**
 * The request target the proxy accepts, checked before anything else so that routing,
 * authentication and the backend all see one unambiguous path. Anything a server could
 * read two ways is refused with 400 rather than normalised:
 * - only origin-form (`/path?query`); absolute-form and `*` are refused;
 * - no dot segments (`/a/../b`, `/./`, also `/..;x/` which servlet containers read as `..`),
 *   no empty segments (`//`);
 * - no encoded slash, backslash, dot or NUL (`%2F`, `%5C`, `%2E`, `%00`), no raw backslash;
 * - every `%` must start a valid escape; no control characters or spaces.
 * The path is forwarded byte for byte as received.
 */
export interface RequestTarget {
  path: string;
  /** Including the leading `?`, or empty. */
  search: string;
}

export type TargetCheck = { ok: true; target: RequestTarget } | { ok: false; reason: string };

const FORBIDDEN_ESCAPES = /%(2f|5c|2e|00)/i;
const BAD_PERCENT = /%(?![0-9a-f]{2})/i;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
const CONTROL_OR_SPACE = /[\u0000-\u0020\u007f]/;

/**
 * True when `url` holds only letters, digits, `-`, `_`, `~` and `/`: no `%`, `.`, `;`, `?`,
 * `#`, backslash, space or control character, so of all the rules below only "no empty
 * segment" can apply. Most MCP traffic (`/mcp`) takes this path and skips the regexes.
 */
function isPlainPath(url: string): boolean {
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    const plain =
      (c >= 0x61 && c <= 0x7a) || // a-z
      (c >= 0x41 && c <= 0x5a) || // A-Z
      (c >= 0x30 && c <= 0x39) || // 0-9
      c === 0x2f || // /
      c === 0x2d || // -
      c === 0x5f || // _
      c === 0x7e; // ~
    if (!plain) return false;
  }
  return true;
}

export function checkRequestTarget(url: string | undefined): TargetCheck {
  if (url?.[0] !== '/') {
    return { ok: false, reason: 'the request target must be a path starting with / (origin-form)' };
  }
  if (isPlainPath(url) && !url.includes('//')) return { ok: true, target: { path: url, search: '' } };
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const search = q < 0 ? '' : url.slice(q);
  if (CONTROL_OR_SPACE.test(url) || url.includes('#')) {
    return { ok: false, reason: 'the request target contains a control character, space or #' };
  }
  if (BAD_PERCENT.test(url)) return { ok: false, reason: 'the request target has a malformed %-escape' };
  if (path.includes('\\')) return { ok: false, reason: 'the path contains a backslash' };
  if (FORBIDDEN_ESCAPES.test(path)) {
    return {
      ok: false,
      reason: 'the path contains an encoded slash, backslash, dot or NUL (%2F, %5C, %2E, %00)',
    };
  }
  if (path.includes('//')) return { ok: false, reason: 'the path contains an empty segment (//)' };
  for (const segment of path.split('/')) {
    // Servlet containers drop `;params` before resolving dots, so `..;/` climbs like `../`.
    const name = segment.split(';', 1)[0];
    if (name === '.' || name === '..')
      return { ok: false, reason: 'the path contains a dot segment (. or .., also with ;parameters)' };
  }
  return { ok: true, target: { path, search } };
}
