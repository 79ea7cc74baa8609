/**
 * The allow rules (ALLOWED_EMAILS, ALLOWED_DOMAINS, ALLOWED_GROUPS): who, among the people the
 * upstream provider authenticated, may reach the MCP server.
 *
 * Matching is deliberately literal and fails closed:
 * - Emails and domains are trimmed and compared case-insensitively for ASCII letters only.
 *   Full Unicode case folding is not used: `'\u212A'.toLowerCase()` (KELVIN SIGN) is an ASCII
 *   `k`, so it would let a lookalike domain match a configured one. Unicode and IDN lookalikes
 *   are therefore different strings, and no punycode conversion is done.
 * - An email is usable only when it has exactly one `@` with something on both sides
 *   (`a@b@example.com` matches nothing: which part is "the domain" depends on the parser,
 *   and RFC 5321 quoted local parts are not worth that risk).
 * - A domain entry matches the email's domain exactly: `example.com` does not match
 *   `sub.example.com`, `evil-example.com` or `example.com.evil.org`. Subdomains need an explicit
 *   `*.example.com` entry, which matches any depth of subdomain but not `example.com` itself.
 * - `ALLOWED_EMAILS` takes exact addresses and `*@example.com` wildcards (the same as
 *   `example.com` in `ALLOWED_DOMAINS`).
 * - Groups are compared exactly and case-sensitively: IdPs treat group ids and names as opaque.
 * - An email the provider marked `email_verified: false` matches no email or domain rule (a
 *   provider that lets users type any address would otherwise let them pick one on the list);
 *   groups still apply. A provider that sends no `email_verified` claim is trusted as-is.
 */

export interface PolicyConfig {
  emails: string[];
  domains: string[];
  groups: string[];
}

export interface PolicySubject {
  email?: string;
  emailVerified?: boolean;
  groups: readonly string[];
}

export type PolicyDecision = { allowed: true } | { allowed: false; reason: string };

const ALLOWED: PolicyDecision = Object.freeze({ allowed: true });

/** Lowercases ASCII letters only; see the module comment for why not `toLowerCase()`. */
function asciiLower(value: string): string {
  return value.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

function normalise(value: string): string {
  return asciiLower(value.trim());
}

interface ParsedEmail {
  address: string;
  domain: string;
}

/** `undefined` unless the value is `local@domain` with exactly one `@` and no whitespace. */
function parseEmail(value: string): ParsedEmail | undefined {
  const address = normalise(value);
  const at = address.indexOf('@');
  if (at <= 0 || at !== address.lastIndexOf('@') || at === address.length - 1) return undefined;
  if (/\s/.test(address)) return undefined;
  return { address, domain: address.slice(at + 1) };
}

/** `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`. */
function domainMatches(domain: string, entry: string): boolean {
  if (entry.startsWith('*.')) {
    const suffix = entry.slice(1);
    return domain.length > suffix.length && domain.endsWith(suffix);
  }
  return domain === entry;
}

function emailRuleMatches(email: ParsedEmail, config: PolicyConfig): boolean {
  for (const raw of config.emails) {
    const entry = normalise(raw);
    if (entry.startsWith('*@')) {
      if (domainMatches(email.domain, entry.slice(2))) return true;
    } else if (entry !== '' && entry === email.address) {
      return true;
    }
  }
  for (const raw of config.domains) {
    const entry = normalise(raw);
    if (entry !== '' && domainMatches(email.domain, entry)) return true;
  }
  return false;
}

function listNames(config: PolicyConfig): string {
  if (config.emails.length > 0 && config.domains.length > 0) return 'ALLOWED_EMAILS/ALLOWED_DOMAINS';
  return config.emails.length > 0 ? 'ALLOWED_EMAILS' : 'ALLOWED_DOMAINS';
}

/**
 * Decides whether an authenticated subject may pass. Empty lists allow anyone the provider
 * authenticated; otherwise any one matching rule allows. The denial reason is one sentence
 * fit for the 403 page and the audit log; it never echoes an unparsable email value.
 */
export function evaluatePolicy(subject: PolicySubject, config: PolicyConfig): PolicyDecision {
  const emails = config.emails.filter((e) => e.trim() !== '');
  const domains = config.domains.filter((d) => d.trim() !== '');
  const groups = config.groups.filter((g) => g.trim() !== '');
  if (emails.length === 0 && domains.length === 0 && groups.length === 0) return ALLOWED;
  const effective: PolicyConfig = { emails, domains, groups };

  if (groups.length > 0) {
    const wanted = new Set(groups.map((g) => g.trim()));
    if (subject.groups.some((g) => wanted.has(g))) return ALLOWED;
  }

  const email = subject.email === undefined ? undefined : parseEmail(subject.email);
  const verified = subject.emailVerified !== false;
  const emailRules = emails.length > 0 || domains.length > 0;
  if (emailRules && email && verified && emailRuleMatches(email, effective)) return ALLOWED;

  const groupClause = groups.length > 0 ? 'is in none of ALLOWED_GROUPS' : '';
  if (!emailRules) return { allowed: false, reason: `The account ${groupClause}.` };

  const lists = listNames(effective);
  let reason: string;
  if (subject.email === undefined || subject.email.trim() === '') {
    reason = `The account has no email address, so ${lists} cannot match`;
  } else if (!email) {
    reason = `The account's email address is not of the form name@domain, so ${lists} cannot match`;
  } else if (!verified) {
    reason = `${email.address} is not verified by the identity provider (email_verified is false), so ${lists} cannot match`;
  } else {
    reason = `${email.address} is not in ${lists}`;
  }
  if (groupClause === '') return { allowed: false, reason: `${reason}.` };
  // "bob@x is not in ..." reads on with "and is in none of"; the "so ... cannot match" forms
  // need their own subject.
  const joiner = reason.endsWith('cannot match') ? ', and the account ' : ' and ';
  return { allowed: false, reason: `${reason}${joiner}${groupClause}.` };
}

/**
 * Problems with allow-list entries that could never match, each naming the variable, for
 * config validation to report at start (an entry that never matches silently locks people out).
 */
export function policyConfigProblems(config: PolicyConfig): string[] {
  const problems: string[] = [];
  const domainOk = (d: string): boolean =>
    /^(\*\.)?[^\s@*]+$/.test(d) && !d.endsWith('.') && !d.startsWith('.');
  for (const raw of config.emails) {
    const entry = normalise(raw);
    if (entry === '') continue;
    if (entry.startsWith('*@')) {
      if (!domainOk(entry.slice(2))) problems.push(`ALLOWED_EMAILS: "${raw}" is not a valid *@domain entry.`);
    } else if (!parseEmail(entry) || entry.includes('*')) {
      problems.push(`ALLOWED_EMAILS: "${raw}" is not an email address (name@domain) or *@domain.`);
    }
  }
  for (const raw of config.domains) {
    const entry = normalise(raw);
    if (entry === '') continue;
    if (!domainOk(entry)) {
      problems.push(
        `ALLOWED_DOMAINS: "${raw}" is not a domain; use example.com, or *.example.com for its subdomains.`,
      );
    }
  }
  return problems;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function lookup(node: Record<string, unknown>, segments: readonly string[]): unknown {
  // Longest key first, so namespaced claim names containing dots
  // (`https://example.com/claims.groups`, `realm_access.roles` as one key) win over nesting.
  for (let take = segments.length; take >= 1; take--) {
    const key = segments.slice(0, take).join('.');
    if (!Object.hasOwn(node, key)) continue;
    const value = node[key];
    if (take === segments.length) return value;
    if (isRecord(value)) {
      const found = lookup(value, segments.slice(take));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

/**
 * Reads a claim by path: the whole path as one claim name first (Auth0-style namespaced claims
 * such as `https://example.com/claims/groups`), then dotted nesting (`realm_access.roles`),
 * where any run of segments may itself be a key containing dots. Only own properties are
 * read, so `__proto__` or `constructor` paths find nothing. `undefined` when absent.
 */
export function claimAtPath(claims: Record<string, unknown>, path: string): unknown {
  if (path === '' || !isRecord(claims)) return undefined;
  return lookup(claims, path.split('.'));
}

/**
 * Normalises a groups claim to a list of strings: an array keeps its strings and finite
 * numbers (as strings); a single string is split on commas only, never on spaces, because
 * group names such as "Domain Admins" contain spaces; a number becomes one group. Entries are
 * trimmed, empty ones dropped, duplicates removed. Anything else (objects, booleans, null)
 * gives `[]`.
 */
export function groupsFromClaim(value: unknown): string[] {
  let raw: unknown[];
  if (Array.isArray(value)) raw = value;
  else if (typeof value === 'string') raw = value.split(',');
  else if (typeof value === 'number') raw = [value];
  else return [];
  const out = new Set<string>();
  for (const item of raw) {
    if (typeof item === 'string') {
      const group = item.trim();
      if (group !== '') out.add(group);
    } else if (typeof item === 'number' && Number.isFinite(item)) {
      out.add(String(item));
    }
  }
  return [...out];
}
