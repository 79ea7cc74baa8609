import { describe, expect, it } from 'vitest';
import {
  type McpAccessConfig,
  McpAccessPolicy,
  type McpCaller,
  mcpAccessProblems,
} from '../../src/mcp/access-policy.js';

const alice: McpCaller = { email: 'alice@example.com', groups: ['admins'] };
const bob: McpCaller = { email: 'bob@other.org', groups: ['eng'] };

const policy = (config: McpAccessConfig): McpAccessPolicy => McpAccessPolicy.compile(config);

describe('McpAccessPolicy.decide: which rule decides', () => {
  it('lets the first rule whose pattern matches decide, in order', () => {
    const p = policy({
      rules: [
        { tools: ['delete_*'], allow: { groups: ['admins'] } },
        { tools: ['*'], allow: { groups: ['eng'] } },
      ],
    });
    expect(p.decide('tool', 'delete_file', alice)).toEqual({ allowed: true });
    expect(p.decide('tool', 'delete_file', bob)).toEqual({ allowed: false, reason: 'denied', rule: 0 });
    // Not a delete: the second rule, which lets bob in and not alice.
    expect(p.decide('tool', 'read_file', bob)).toEqual({ allowed: true });
    expect(p.decide('tool', 'read_file', alice)).toEqual({ allowed: false, reason: 'denied', rule: 1 });
  });

  it('a later rule that would allow does not rescue a denial by an earlier one', () => {
    const p = policy({ rules: [{ tools: ['x'], allow: { groups: ['nobody'] } }, { tools: ['x'] }] });
    expect(p.decide('tool', 'x', alice)).toEqual({ allowed: false, reason: 'denied', rule: 0 });
  });

  it('matches a rule only for the kinds it names', () => {
    const p = policy({ default: 'deny', rules: [{ tools: ['search'] }, { prompts: ['summary'] }] });
    expect(p.decide('tool', 'search', alice).allowed).toBe(true);
    expect(p.decide('prompt', 'search', alice)).toEqual({
      allowed: false,
      reason: 'denied',
      rule: 'default',
    });
    expect(p.decide('prompt', 'summary', alice).allowed).toBe(true);
    expect(p.decide('resource', 'summary', alice).allowed).toBe(false);
  });

  it('gives an unmatched name the default: allow when omitted, or deny', () => {
    const rules = [{ tools: ['admin_*'], allow: { groups: ['admins'] } }];
    expect(policy({ rules }).decide('tool', 'search', bob)).toEqual({ allowed: true });
    expect(policy({ default: 'allow', rules }).decide('tool', 'search', bob)).toEqual({ allowed: true });
    expect(policy({ default: 'deny', rules }).decide('tool', 'search', bob)).toEqual({
      allowed: false,
      reason: 'denied',
      rule: 'default',
    });
  });
});

describe('glob patterns', () => {
  const matches = (pattern: string, name: string, kind: 'tool' | 'resource' = 'tool'): boolean =>
    policy({ default: 'deny', rules: [{ [`${kind}s`]: [pattern] }] }).decide(kind, name, alice).allowed;

  it('take * as any run of characters, none included', () => {
    expect(matches('delete_*', 'delete_file')).toBe(true);
    expect(matches('delete_*', 'delete_')).toBe(true);
    expect(matches('*_file', 'delete_file')).toBe(true);
    expect(matches('a*b*c', 'aXXbYYc')).toBe(true);
    expect(matches('*', '')).toBe(true);
    expect(matches('delete_*', 'undelete_file')).toBe(false);
    expect(matches('delete_*', 'Delete_file')).toBe(false);
  });

  it('match the whole name, exactly', () => {
    expect(matches('drop_table', 'drop_table')).toBe(true);
    expect(matches('drop_table', 'drop_table2')).toBe(false);
    expect(matches('drop_table', 'x_drop_table')).toBe(false);
  });

  it('take * across / and newlines in a resource URI', () => {
    expect(matches('file:///srv/public/*', 'file:///srv/public/a/b/c.txt', 'resource')).toBe(true);
    expect(matches('file:///srv/public/*', 'file:///srv/public/a\nb', 'resource')).toBe(true);
    expect(matches('file:///srv/public/*', 'file:///srv/private/a', 'resource')).toBe(false);
  });

  it('take dots, ? and every regular-expression metacharacter literally', () => {
    expect(matches('a.b', 'a.b')).toBe(true);
    expect(matches('a.b', 'aXb')).toBe(false);
    expect(matches('get?', 'get?')).toBe(true);
    expect(matches('get?', 'getX')).toBe(false);
    expect(matches('get?', 'ge')).toBe(false);
    const special = 'x^$.|?+()[]{}\\/-y';
    expect(matches(special, special)).toBe(true);
    expect(matches('(a|b)', 'a')).toBe(false);
    expect(matches('[ab]', 'a')).toBe(false);
    expect(matches('a+', 'aa')).toBe(false);
    expect(matches('https://x.example/q?id=*', 'https://x.example/q?id=7', 'resource')).toBe(true);
    expect(matches('https://x.example/q?id=*', 'https://x.example/qXid=7', 'resource')).toBe(false);
  });

  it('match a resource template by its uriTemplate, as given', () => {
    expect(matches('file:///{path}', 'file:///{path}', 'resource')).toBe(true);
    expect(matches('db://tables/*', 'db://tables/{name}', 'resource')).toBe(true);
  });

  it('match when any pattern of the list does', () => {
    const p = policy({ default: 'deny', rules: [{ tools: ['a', 'b*'] }] });
    expect(['a', 'bc', 'c'].map((n) => p.decide('tool', n, alice).allowed)).toEqual([true, true, false]);
  });
});

describe('allow: the allow-list semantics', () => {
  const only = (allow: McpAccessConfig['rules'][number]['allow']) =>
    policy({ rules: [{ tools: ['t'], allow }] });
  const allowed = (p: McpAccessPolicy, caller: McpCaller | undefined): boolean =>
    p.decide('tool', 't', caller).allowed;

  it('lets anyone in when omitted or {}', () => {
    for (const p of [policy({ rules: [{ tools: ['t'] }] }), only({})]) {
      expect(allowed(p, alice)).toBe(true);
      expect(allowed(p, { groups: [] })).toBe(true);
      expect(allowed(p, undefined)).toBe(true);
    }
  });

  it('matches exact emails (case-insensitive) and *@domain', () => {
    expect(allowed(only({ emails: ['Alice@Example.com'] }), alice)).toBe(true);
    expect(allowed(only({ emails: ['alice@example.com'] }), bob)).toBe(false);
    expect(allowed(only({ emails: ['*@other.org'] }), bob)).toBe(true);
  });

  it('matches domains exactly, subdomains only with *.', () => {
    expect(allowed(only({ domains: ['example.com'] }), alice)).toBe(true);
    expect(allowed(only({ domains: ['example.com'] }), { email: 'eve@sub.example.com', groups: [] })).toBe(
      false,
    );
    expect(allowed(only({ domains: ['*.example.com'] }), { email: 'eve@sub.example.com', groups: [] })).toBe(
      true,
    );
  });

  it('matches groups exactly and case-sensitively', () => {
    expect(allowed(only({ groups: ['admins'] }), alice)).toBe(true);
    expect(allowed(only({ groups: ['Admins'] }), alice)).toBe(false);
  });

  it('lets any one of emails, domains or groups in', () => {
    const p = only({ emails: ['carol@example.net'], domains: ['other.org'], groups: ['admins'] });
    expect(allowed(p, alice)).toBe(true);
    expect(allowed(p, bob)).toBe(true);
    expect(allowed(p, { email: 'carol@example.net', groups: [] })).toBe(true);
    expect(allowed(p, { email: 'dave@example.net', groups: ['eng'] })).toBe(false);
  });

  it('does not match an unverified email by email or domain; groups still apply', () => {
    const unverified: McpCaller = { ...alice, emailVerified: false };
    expect(allowed(only({ emails: ['alice@example.com'] }), unverified)).toBe(false);
    expect(allowed(only({ domains: ['example.com'] }), unverified)).toBe(false);
    expect(allowed(only({ groups: ['admins'] }), unverified)).toBe(true);
  });

  it('denies a caller without an identity (bypass mode) wherever a rule names anyone', () => {
    const p = policy({
      rules: [
        { tools: ['admin_*'], allow: { groups: ['admins'] } },
        { tools: ['*'], allow: {} },
      ],
    });
    expect(p.decide('tool', 'admin_reset', undefined)).toEqual({ allowed: false, reason: 'denied', rule: 0 });
    expect(p.decide('tool', 'search', undefined)).toEqual({ allowed: true });
    expect(policy({ default: 'deny', rules: [{ tools: ['x'] }] }).decide('tool', 'y', undefined)).toEqual({
      allowed: false,
      reason: 'denied',
      rule: 'default',
    });
  });
});

describe('step-up scopes', () => {
  const p = policy({
    rules: [
      { tools: ['delete_*'], allow: { groups: ['admins'] }, scope: 'mcp:admin' },
      { tools: ['deploy'], scope: 'mcp:deploy' },
      { tools: ['audit_*'], allow: { groups: ['admins'] }, scope: 'mcp:admin' },
    ],
  });

  it('judge a browser cookie session (no scopes) by allow alone', () => {
    expect(p.decide('tool', 'delete_file', alice)).toEqual({ allowed: true });
    expect(p.decide('tool', 'delete_file', bob)).toEqual({ allowed: false, reason: 'denied', rule: 0 });
  });

  it('allow a token carrying the scope', () => {
    expect(p.decide('tool', 'delete_file', { ...alice, scopes: ['mcp', 'mcp:admin'] })).toEqual({
      allowed: true,
    });
  });

  it('ask a token without the scope for every scope needed: its own plus the missing one', () => {
    expect(p.decide('tool', 'delete_file', { ...alice, scopes: ['mcp'] })).toEqual({
      allowed: false,
      reason: 'scope',
      required: ['mcp', 'mcp:admin'],
    });
    expect(p.decide('tool', 'delete_file', { ...alice, scopes: ['mcp', 'mcp:deploy'] })).toEqual({
      allowed: false,
      reason: 'scope',
      required: ['mcp', 'mcp:deploy', 'mcp:admin'],
    });
  });

  it('always name the base scope mcp in what is required', () => {
    expect(p.decide('tool', 'deploy', { ...bob, scopes: [] })).toEqual({
      allowed: false,
      reason: 'scope',
      required: ['mcp', 'mcp:deploy'],
    });
  });

  it('deny a caller the rule does not allow, scope or not', () => {
    expect(p.decide('tool', 'delete_file', { ...bob, scopes: ['mcp', 'mcp:admin'] })).toEqual({
      allowed: false,
      reason: 'denied',
      rule: 0,
    });
    expect(p.decide('tool', 'delete_file', { ...bob, scopes: ['mcp'] })).toEqual({
      allowed: false,
      reason: 'denied',
      rule: 0,
    });
  });

  it('need no token scope in bypass mode (no tokens there)', () => {
    expect(p.decide('tool', 'deploy', undefined)).toEqual({ allowed: true });
  });

  it('list every scope the rules name, once, in rule order', () => {
    expect(p.scopes).toEqual(['mcp:admin', 'mcp:deploy']);
    expect(policy({ rules: [{ tools: ['*'] }] }).scopes).toEqual([]);
  });

  it('grant at /authorize only the scopes of rules whose allow matches the user', () => {
    expect(p.grantableScopes(alice)).toEqual(['mcp:admin', 'mcp:deploy']);
    expect(p.grantableScopes(bob)).toEqual(['mcp:deploy']);
    expect(p.grantableScopes({ ...alice, emailVerified: false })).toEqual(['mcp:admin', 'mcp:deploy']);
    expect(policy({ rules: [{ tools: ['*'] }] }).grantableScopes(alice)).toEqual([]);
  });
});

describe('visible: list filtering', () => {
  const p = policy({
    default: 'deny',
    rules: [
      { tools: ['delete_*'], allow: { groups: ['admins'] }, scope: 'mcp:admin' },
      { tools: ['read_*'] },
    ],
  });

  it('shows what the caller may use, and what only lacks a step-up scope', () => {
    const token = { ...alice, scopes: ['mcp'] };
    expect(p.visible('tool', 'read_file', token)).toBe(true);
    expect(p.visible('tool', 'delete_file', token)).toBe(true);
    expect(p.visible('tool', 'delete_file', alice)).toBe(true);
  });

  it('hides what a rule denies the caller, and what the default denies', () => {
    expect(p.visible('tool', 'delete_file', { ...bob, scopes: ['mcp'] })).toBe(false);
    expect(p.visible('tool', 'delete_file', bob)).toBe(false);
    expect(p.visible('tool', 'write_file', alice)).toBe(false);
    expect(p.visible('tool', 'delete_file', undefined)).toBe(false);
  });
});

describe('usesIdentity', () => {
  it('is true when a rule names emails, domains or groups', () => {
    expect(policy({ rules: [{ tools: ['*'] }, { prompts: ['*'], allow: {} }] }).usesIdentity).toBe(false);
    expect(policy({ rules: [{ tools: ['*'], scope: 'mcp:x' }] }).usesIdentity).toBe(false);
    for (const allow of [{ emails: ['a@b.c'] }, { domains: ['b.c'] }, { groups: ['g'] }]) {
      const p = policy({ rules: [{ tools: ['x'] }, { tools: ['*'], allow }] });
      expect(p.usesIdentity).toBe(true);
      expect(p.identityRules).toEqual([1]);
    }
  });
});

describe('mcpAccessProblems', () => {
  it('finds nothing in a valid configuration', () => {
    expect(
      mcpAccessProblems({
        default: 'deny',
        rules: [
          { tools: ['delete_*', 'drop_table'], allow: { groups: ['admins'] }, scope: 'mcp:admin' },
          { prompts: ['*'], allow: { domains: ['example.com', '*.example.org'] } },
          { resources: ['file:///srv/public/*'], allow: {} },
          { tools: ['x'], prompts: ['y'], resources: ['z'], allow: { emails: ['a@example.com', '*@b.org'] } },
        ],
      }),
    ).toEqual([]);
    expect(mcpAccessProblems({ rules: [{ tools: ['*'] }] })).toEqual([]);
  });

  it('wants a mapping', () => {
    for (const raw of [null, 'deny', [], [{ tools: ['*'] }], 3])
      expect(mcpAccessProblems(raw), JSON.stringify(raw)).toEqual([
        expect.stringMatching(/^mcp_access must be a mapping with rules \(and optionally default\), e\.g\. /),
      ]);
  });

  it('wants rules, and says why', () => {
    const missing = expect.stringMatching(
      /^mcp_access\.rules is missing or empty: every tool, prompt and resource would get the default/,
    );
    expect(mcpAccessProblems({})).toEqual([missing]);
    expect(mcpAccessProblems({ default: 'deny' })).toEqual([missing]);
    expect(mcpAccessProblems({ rules: [] })).toEqual([missing]);
    expect(mcpAccessProblems({ rules: { tools: ['*'] } })).toEqual([
      'mcp_access.rules must be a list of rules, each a mapping such as {"tools": ["*"], "allow": {}}',
    ]);
  });

  it('names unknown keys, with a guess where one is close', () => {
    expect(mcpAccessProblems({ rule: [], rules: [{ tool: ['x'], tools: ['y'], alow: {}, foo: 1 }] })).toEqual(
      [
        'mcp_access.rule is not a known key; did you mean rules? (the keys here are default, rules)',
        'mcp_access.rules[0].tool is not a known key; did you mean tools? (the keys here are tools, prompts, resources, allow, scope)',
        'mcp_access.rules[0].alow is not a known key; did you mean allow? (the keys here are tools, prompts, resources, allow, scope)',
        'mcp_access.rules[0].foo is not a known key (the keys here are tools, prompts, resources, allow, scope)',
      ],
    );
    expect(mcpAccessProblems({ rules: [{ tools: ['x'], allow: { group: ['a'] } }] })).toEqual([
      'mcp_access.rules[0].allow.group is not a known key; did you mean groups? (the keys here are emails, domains, groups)',
    ]);
  });

  it('wants default to be allow or deny', () => {
    expect(mcpAccessProblems({ default: 'Deny', rules: [{ tools: ['*'] }] })).toEqual([
      'mcp_access.default must be allow or deny (what a tool, prompt or resource no rule matches gets)',
    ]);
  });

  it('wants each rule to be a mapping naming patterns', () => {
    expect(mcpAccessProblems({ rules: ['tools', { allow: {} }, { scope: 'mcp:x' }] })).toEqual([
      'mcp_access.rules[0] must be a mapping with tools, prompts or resources (and optionally allow and scope)',
      'mcp_access.rules[1] names no tools, prompts or resources: give at least one list of name patterns',
      'mcp_access.rules[2] names no tools, prompts or resources: give at least one list of name patterns',
    ]);
  });

  it('wants pattern lists of non-empty strings', () => {
    expect(
      mcpAccessProblems({
        rules: [{ tools: 'delete_*' }, { prompts: [] }, { resources: ['ok', '', 3, ' '] }],
      }),
    ).toEqual([
      'mcp_access.rules[0].tools must be a list of name patterns, e.g. ["delete_*"]',
      'mcp_access.rules[1].prompts is an empty list, which reads as nobody or as anything; give at least one name pattern, or remove the key',
      'mcp_access.rules[2].resources[1] must be a non-empty string (a name pattern)',
      'mcp_access.rules[2].resources[2] must be a non-empty string (a name pattern)',
      'mcp_access.rules[2].resources[3] must be a non-empty string (a name pattern)',
    ]);
  });

  it('wants allow to be a mapping of lists whose entries can match', () => {
    expect(
      mcpAccessProblems({
        rules: [
          { tools: ['a'], allow: ['admins'] },
          { tools: ['b'], allow: { groups: [] } },
          {
            tools: ['c'],
            allow: { emails: ['alice', '*@example.com'], domains: ['@example.com'], groups: [''] },
          },
          { tools: ['d'], allow: { domains: 'example.com' } },
        ],
      }),
    ).toEqual([
      'mcp_access.rules[0].allow must be a mapping of emails, domains and/or groups lists, or {} for anyone',
      'mcp_access.rules[1].allow.groups is an empty list, which reads as nobody or as anything; give at least one group, or write allow: {} for anyone',
      'mcp_access.rules[2].allow.emails[0]: "alice" is not an email address (name@domain) or *@domain.',
      'mcp_access.rules[2].allow.domains[0]: "@example.com" is not a domain; use example.com, or *.example.com for its subdomains.',
      'mcp_access.rules[2].allow.groups[0] must be a non-empty string (a group)',
      'mcp_access.rules[3].allow.domains must be a list of domains, e.g. ["example.com"]',
    ]);
  });

  it('wants scope to be one OAuth scope token, other than the base scope', () => {
    const scope = (s: unknown): string[] => mcpAccessProblems({ rules: [{ tools: ['x'], scope: s }] });
    for (const good of ['mcp:admin', 'admin', 'https://example.com/scope!#[]~'])
      expect(scope(good)).toEqual([]);
    for (const bad of ['mcp:a mcp:b', '', 'quote"d', 'back\\slash', 'café', 3, ['mcp:admin']])
      expect(scope(bad), String(bad)).toEqual([
        'mcp_access.rules[0].scope must be one OAuth scope (RFC 6749: printable ASCII without spaces, " or \\), e.g. mcp:admin',
      ]);
    expect(scope('mcp')).toEqual([
      'mcp_access.rules[0].scope is mcp, the base scope every token has: it would require nothing; name a step-up scope such as mcp:admin, or remove scope',
    ]);
  });

  it('reports every problem at once', () => {
    const problems = mcpAccessProblems({
      default: 'block',
      extra: true,
      rules: [{ tools: [] }, { prompts: ['p'], scope: 'a b', allow: { teams: ['x'] } }, 7],
    });
    expect(problems.map((p) => p.split(' ')[0])).toEqual([
      'mcp_access.extra',
      'mcp_access.default',
      'mcp_access.rules[0].tools',
      'mcp_access.rules[1].allow.teams',
      'mcp_access.rules[1].scope',
      'mcp_access.rules[2]',
    ]);
  });

  it('is what compile holds a configuration to', () => {
    expect(() => McpAccessPolicy.compile({ rules: [] })).toThrow(
      /^invalid MCP access rules: mcp_access\.rules/,
    );
  });
});
