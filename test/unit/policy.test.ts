import { describe, expect, it } from 'vitest';
import {
  claimAtPath,
  evaluatePolicy,
  groupsFromClaim,
  type PolicyConfig,
  type PolicySubject,
  policyConfigProblems,
} from '../../src/auth/policy/policy.js';

function config(partial: Partial<PolicyConfig>): PolicyConfig {
  return { emails: [], domains: [], groups: [], ...partial };
}

function subject(email: string | undefined, groups: string[] = [], emailVerified?: boolean): PolicySubject {
  return { email, groups, emailVerified };
}

describe('evaluatePolicy', () => {
  const cases: Array<{ name: string; subject: PolicySubject; config: PolicyConfig; allowed: boolean }> = [
    // Empty lists: anyone the provider authenticated.
    { name: 'empty lists allow anyone', subject: subject('x@y.org'), config: config({}), allowed: true },
    { name: 'empty lists allow no email', subject: subject(undefined), config: config({}), allowed: true },
    {
      name: 'lists of blank entries count as empty',
      subject: subject(undefined),
      config: config({ emails: [' '], domains: [''], groups: [''] }),
      allowed: true,
    },
    // Exact emails.
    {
      name: 'exact email',
      subject: subject('alice@example.com'),
      config: config({ emails: ['alice@example.com'] }),
      allowed: true,
    },
    {
      name: 'email is case-insensitive and trimmed (subject)',
      subject: subject('  ALICE@Example.COM '),
      config: config({ emails: ['alice@example.com'] }),
      allowed: true,
    },
    {
      name: 'email is case-insensitive and trimmed (entry)',
      subject: subject('alice@example.com'),
      config: config({ emails: [' Alice@EXAMPLE.com '] }),
      allowed: true,
    },
    {
      name: 'other email on the same domain',
      subject: subject('bob@example.com'),
      config: config({ emails: ['alice@example.com'] }),
      allowed: false,
    },
    {
      name: 'email entry is not a substring match',
      subject: subject('malice@example.com'),
      config: config({ emails: ['alice@example.com'] }),
      allowed: false,
    },
    // *@domain in ALLOWED_EMAILS.
    {
      name: '*@domain wildcard',
      subject: subject('bob@example.com'),
      config: config({ emails: ['*@example.com'] }),
      allowed: true,
    },
    {
      name: '*@domain does not cover subdomains',
      subject: subject('bob@sub.example.com'),
      config: config({ emails: ['*@example.com'] }),
      allowed: false,
    },
    {
      name: '*@domain does not match a suffix',
      subject: subject('bob@evil-example.com'),
      config: config({ emails: ['*@example.com'] }),
      allowed: false,
    },
    // ALLOWED_DOMAINS.
    {
      name: 'domain exact',
      subject: subject('bob@example.com'),
      config: config({ domains: ['example.com'] }),
      allowed: true,
    },
    {
      name: 'domain case-insensitive',
      subject: subject('Bob@EXAMPLE.com'),
      config: config({ domains: ['Example.Com'] }),
      allowed: true,
    },
    {
      name: 'domain does not match evil-example.com',
      subject: subject('bob@evil-example.com'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: 'domain does not match example.com.evil.org',
      subject: subject('bob@example.com.evil.org'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: 'domain does not match a subdomain',
      subject: subject('bob@sub.example.com'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: 'domain does not match a trailing-dot domain',
      subject: subject('bob@example.com.'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: '*.domain matches a subdomain',
      subject: subject('bob@sub.example.com'),
      config: config({ domains: ['*.example.com'] }),
      allowed: true,
    },
    {
      name: '*.domain matches a deeper subdomain',
      subject: subject('bob@a.b.example.com'),
      config: config({ domains: ['*.example.com'] }),
      allowed: true,
    },
    {
      name: '*.domain does not match the apex',
      subject: subject('bob@example.com'),
      config: config({ domains: ['*.example.com'] }),
      allowed: false,
    },
    {
      name: '*.domain does not match a suffix without a dot',
      subject: subject('bob@evilexample.com'),
      config: config({ domains: ['*.example.com'] }),
      allowed: false,
    },
    // Malformed emails match no email/domain rule.
    {
      name: 'multiple @ never matches the domain',
      subject: subject('a@b@example.com'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: 'multiple @ never matches *@domain',
      subject: subject('a@b@example.com'),
      config: config({ emails: ['*@example.com'] }),
      allowed: false,
    },
    {
      name: 'multiple @ never matches the same literal entry',
      subject: subject('a@b@example.com'),
      config: config({ emails: ['a@b@example.com'] }),
      allowed: false,
    },
    {
      name: 'email without @',
      subject: subject('example.com'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: 'email with empty local part',
      subject: subject('@example.com'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: 'email with inner whitespace',
      subject: subject('bob @example.com'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    // Unicode is compared literally; only ASCII letters are case-folded.
    {
      name: 'Cyrillic lookalike domain',
      subject: subject('bob@ex\u0430mple.com'),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: 'KELVIN SIGN does not fold to k',
      subject: subject('bob@\u212Aey.com'),
      config: config({ domains: ['key.com'] }),
      allowed: false,
    },
    {
      name: 'fullwidth lookalike email',
      subject: subject('\uFF41lice@example.com'),
      config: config({ emails: ['alice@example.com'] }),
      allowed: false,
    },
    {
      name: 'punycode is not decoded',
      subject: subject('bob@xn--exmple-cua.com'),
      config: config({ domains: ['exämple.com'] }),
      allowed: false,
    },
    {
      name: 'identical unicode domain matches',
      subject: subject('bob@exämple.com'),
      config: config({ domains: ['exämple.com'] }),
      allowed: true,
    },
    // email_verified.
    {
      name: 'unverified email does not match the exact list',
      subject: subject('alice@example.com', [], false),
      config: config({ emails: ['alice@example.com'] }),
      allowed: false,
    },
    {
      name: 'unverified email does not match the domain',
      subject: subject('alice@example.com', [], false),
      config: config({ domains: ['example.com'] }),
      allowed: false,
    },
    {
      name: 'explicitly verified email matches',
      subject: subject('alice@example.com', [], true),
      config: config({ domains: ['example.com'] }),
      allowed: true,
    },
    {
      name: 'unverified email: groups still apply',
      subject: subject('alice@example.com', ['staff'], false),
      config: config({ domains: ['example.com'], groups: ['staff'] }),
      allowed: true,
    },
    // Groups.
    {
      name: 'any group matches',
      subject: subject(undefined, ['users', 'admins']),
      config: config({ groups: ['admins'] }),
      allowed: true,
    },
    {
      name: 'groups are case-sensitive',
      subject: subject(undefined, ['Admins']),
      config: config({ groups: ['admins'] }),
      allowed: false,
    },
    {
      name: 'group entries are trimmed',
      subject: subject(undefined, ['admins']),
      config: config({ groups: [' admins '] }),
      allowed: true,
    },
    {
      name: 'group is not a prefix match',
      subject: subject(undefined, ['admins-readonly']),
      config: config({ groups: ['admins'] }),
      allowed: false,
    },
    {
      name: 'no groups',
      subject: subject('bob@example.com'),
      config: config({ groups: ['admins'] }),
      allowed: false,
    },
    // Rules combine with OR.
    {
      name: 'email rule matches although groups do not',
      subject: subject('bob@example.com', ['users']),
      config: config({ domains: ['example.com'], groups: ['admins'] }),
      allowed: true,
    },
    {
      name: 'group matches although email does not',
      subject: subject('bob@other.org', ['admins']),
      config: config({ emails: ['alice@example.com'], groups: ['admins'] }),
      allowed: true,
    },
    {
      name: 'nothing matches',
      subject: subject('bob@other.org', ['users']),
      config: config({ emails: ['alice@example.com'], domains: ['example.com'], groups: ['admins'] }),
      allowed: false,
    },
  ];

  it.each(cases)('$name', ({ subject: s, config: c, allowed }) => {
    const decision = evaluatePolicy(s, c);
    expect(decision.allowed).toBe(allowed);
    if (!decision.allowed) expect(decision.reason).toMatch(/^\S.*\.$/);
  });

  const reasons: Array<{ name: string; subject: PolicySubject; config: PolicyConfig; reason: string }> = [
    {
      name: 'email and groups configured',
      subject: subject('  Bob@Other.org ', ['users']),
      config: config({ emails: ['alice@example.com'], domains: ['example.com'], groups: ['admins'] }),
      reason: 'bob@other.org is not in ALLOWED_EMAILS/ALLOWED_DOMAINS and is in none of ALLOWED_GROUPS.',
    },
    {
      name: 'only domains configured',
      subject: subject('bob@other.org'),
      config: config({ domains: ['example.com'] }),
      reason: 'bob@other.org is not in ALLOWED_DOMAINS.',
    },
    {
      name: 'only emails configured',
      subject: subject('bob@other.org'),
      config: config({ emails: ['alice@example.com'] }),
      reason: 'bob@other.org is not in ALLOWED_EMAILS.',
    },
    {
      name: 'only groups configured',
      subject: subject('bob@other.org', ['users']),
      config: config({ groups: ['admins'] }),
      reason: 'The account is in none of ALLOWED_GROUPS.',
    },
    {
      name: 'unverified email',
      subject: subject('alice@example.com', [], false),
      config: config({ domains: ['example.com'], groups: ['admins'] }),
      reason:
        'alice@example.com is not verified by the identity provider (email_verified is false), so ALLOWED_DOMAINS cannot match, and the account is in none of ALLOWED_GROUPS.',
    },
    {
      name: 'no email',
      subject: subject(undefined),
      config: config({ emails: ['alice@example.com'] }),
      reason: 'The account has no email address, so ALLOWED_EMAILS cannot match.',
    },
    {
      name: 'malformed email is not echoed',
      subject: subject('a@b@example.com'),
      config: config({ domains: ['example.com'] }),
      reason: "The account's email address is not of the form name@domain, so ALLOWED_DOMAINS cannot match.",
    },
  ];

  it.each(reasons)('reason: $name', ({ subject: s, config: c, reason }) => {
    expect(evaluatePolicy(s, c)).toEqual({ allowed: false, reason });
  });
});

describe('policyConfigProblems', () => {
  it('accepts valid entries', () => {
    expect(
      policyConfigProblems(
        config({
          emails: ['alice@example.com', '*@example.org', '*@*.example.net', ''],
          domains: ['example.com', '*.example.com', ' Example.ORG '],
          groups: ['anything goes'],
        }),
      ),
    ).toEqual([]);
  });

  it('names the variable and the entry of each problem', () => {
    const problems = policyConfigProblems(
      config({ emails: ['example.com', 'a@b@c.com', '*@'], domains: ['*', '@example.com', '.example.com'] }),
    );
    expect(problems).toHaveLength(6);
    expect(problems.slice(0, 3).every((p) => p.startsWith('ALLOWED_EMAILS: '))).toBe(true);
    expect(problems.slice(3).every((p) => p.startsWith('ALLOWED_DOMAINS: '))).toBe(true);
    expect(problems[4]).toContain('"@example.com"');
  });
});

describe('claimAtPath', () => {
  const claims: Record<string, unknown> = {
    groups: ['a', 'b'],
    realm_access: { roles: ['admin'] },
    'https://example.com/claims/groups': ['ns'],
    'https://example.com/app': { roles: ['nested-ns'] },
    'dotted.key': 'whole',
    dotted: { key: 'nested' },
    resource_access: { 'my.client': { roles: ['client-role'] } },
    empty: null,
    list: ['x'],
  };

  const cases: Array<{ path: string; expected: unknown }> = [
    { path: 'groups', expected: ['a', 'b'] },
    { path: 'realm_access.roles', expected: ['admin'] },
    { path: 'https://example.com/claims/groups', expected: ['ns'] },
    { path: 'https://example.com/app.roles', expected: ['nested-ns'] },
    { path: 'dotted.key', expected: 'whole' },
    { path: 'resource_access.my.client.roles', expected: ['client-role'] },
    { path: 'realm_access', expected: { roles: ['admin'] } },
    { path: 'missing', expected: undefined },
    { path: 'realm_access.missing', expected: undefined },
    { path: 'groups.length', expected: undefined },
    { path: 'list.0', expected: undefined },
    { path: 'empty.x', expected: undefined },
    { path: 'empty', expected: null },
    { path: '', expected: undefined },
    { path: '__proto__', expected: undefined },
    { path: 'constructor.name', expected: undefined },
    { path: 'realm_access.toString', expected: undefined },
  ];

  it.each(cases)('$path', ({ path, expected }) => {
    expect(claimAtPath(claims, path)).toEqual(expected);
  });

  it('backtracks when a dotted key exists but does not lead to the path', () => {
    expect(claimAtPath({ 'a.b': { x: 1 }, a: { b: { c: 2 } } }, 'a.b.c')).toBe(2);
  });
});

describe('groupsFromClaim', () => {
  const cases: Array<{ name: string; value: unknown; expected: string[] }> = [
    { name: 'string array', value: ['a', 'b'], expected: ['a', 'b'] },
    { name: 'array with numbers', value: ['a', 42, 1.5], expected: ['a', '42', '1.5'] },
    {
      name: 'array drops non-strings',
      value: ['a', null, { id: 'x' }, true, ['b'], Number.NaN],
      expected: ['a'],
    },
    { name: 'array trims and drops empties', value: [' a ', '', '  '], expected: ['a'] },
    { name: 'array dedupes', value: ['a', 'a', 'b'], expected: ['a', 'b'] },
    { name: 'comma string', value: 'a, b ,c', expected: ['a', 'b', 'c'] },
    { name: 'spaces are not separators', value: 'Domain Admins,Users', expected: ['Domain Admins', 'Users'] },
    { name: 'single string', value: 'admins', expected: ['admins'] },
    { name: 'empty string', value: '', expected: [] },
    { name: 'number', value: 7, expected: ['7'] },
    { name: 'infinite number', value: Number.POSITIVE_INFINITY, expected: [] },
    { name: 'object', value: { admins: true }, expected: [] },
    { name: 'boolean', value: true, expected: [] },
    { name: 'null', value: null, expected: [] },
    { name: 'undefined', value: undefined, expected: [] },
  ];

  it.each(cases)('$name', ({ value, expected }) => {
    expect(groupsFromClaim(value)).toEqual(expected);
  });

  it('group matching is case-sensitive end to end', () => {
    const groups = groupsFromClaim(claimAtPath({ realm_access: { roles: ['Admin'] } }, 'realm_access.roles'));
    expect(evaluatePolicy({ groups }, config({ groups: ['admin'] })).allowed).toBe(false);
    expect(evaluatePolicy({ groups }, config({ groups: ['Admin'] })).allowed).toBe(true);
  });
});
