/**
 * The MCP access rules (`mcp_access`): which user may use which tool, prompt or resource.
 * Compiled once from the configuration; deciding is a walk over the rules, first match wins.
 *
 * - A rule names patterns for one or more kinds (`tools`, `prompts`, `resources`). The first rule
 *   whose list for the asked kind matches the name decides; no rule matching = `default` (allow
 *   when omitted).
 * - A pattern is a glob: `*` matches any run of characters (`/` included, and none at all); every
 *   other character, `?` and regular-expression metacharacters included, is itself. Matching is
 *   exact and case-sensitive, on the name as the client sent it (a resource's URI, a resource
 *   template's `uriTemplate`): no URI normalisation.
 * - `allow` is the allow-list semantics of ALLOWED_EMAILS / ALLOWED_DOMAINS / ALLOWED_GROUPS
 *   (evaluatePolicy: email_verified, `*.example.com`, exact groups); omitted or `{}` lets anyone
 *   in. A rule whose `allow` does not match the caller denies, whatever its `scope`.
 * - `scope` (step-up): a bearer token must also carry it; a browser cookie session is judged by
 *   `allow` alone. Without an identity (AUTH_MODE=bypass) only rules with an empty `allow` let in.
 */
import { MCP_SCOPE } from '../auth/facade/metadata.js';
import { evaluatePolicy, type PolicyConfig, policyConfigProblems } from '../auth/policy/policy.js';
import { editDistance } from '../config/edit-distance.js';

export type McpItemKind = 'tool' | 'prompt' | 'resource';

export interface McpAccessRuleConfig {
  tools?: string[];
  prompts?: string[];
  resources?: string[];
  allow?: { emails?: string[]; domains?: string[]; groups?: string[] };
  scope?: string;
}

export interface McpAccessConfig {
  default?: 'allow' | 'deny';
  rules: McpAccessRuleConfig[];
}

/** Who asks: undefined in bypass mode (no identity). `scopes` undefined = a browser cookie session (judged by `allow` alone). */
export interface McpCaller {
  email?: string;
  emailVerified?: boolean;
  groups: readonly string[];
  scopes?: readonly string[];
}

export type McpAccessDecision =
  | { allowed: true }
  | { allowed: false; reason: 'denied'; rule: number | 'default' }
  /** `required`: every scope the token needs, its own (the base scope `mcp` among them) plus the missing one. */
  | { allowed: false; reason: 'scope'; required: string[] };

/** The YAML key, at the start of every problem's path. */
const ROOT = 'mcp_access';
const TOP_KEYS = ['default', 'rules'] as const;
const PATTERN_KEYS = { tools: 'tool', prompts: 'prompt', resources: 'resource' } as const;
const RULE_KEYS = [...Object.keys(PATTERN_KEYS), 'allow', 'scope'] as const;
const ALLOW_KEYS = ['emails', 'domains', 'groups'] as const;
/** RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ). */
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/;

const ALLOWED: McpAccessDecision = Object.freeze({ allowed: true });

interface CompiledRule {
  /** One anchored expression per kind the rule names. */
  patterns: Partial<Record<McpItemKind, RegExp>>;
  allow: PolicyConfig;
  /** `allow` omitted or `{}`: anyone let in, even without an identity. */
  open: boolean;
  scope: string | undefined;
}

export class McpAccessPolicy {
  /** Every step-up scope the rules name, in rule order (for scopes_supported). */
  readonly scopes: readonly string[];
  /** The rules (by index) whose `allow` names emails, domains or groups. */
  readonly identityRules: readonly number[];

  private constructor(
    private readonly rules: readonly CompiledRule[],
    private readonly defaultAllows: boolean,
  ) {
    this.scopes = unique(rules.flatMap((r) => r.scope ?? []));
    this.identityRules = rules.flatMap((r, i) => (r.open ? [] : [i]));
  }

  /** A valid configuration (mcpAccessProblems finds nothing) as a policy; anything else is a programming error. */
  static compile(config: McpAccessConfig): McpAccessPolicy {
    const problems = mcpAccessProblems(config);
    if (problems.length > 0) throw new Error(`invalid MCP access rules: ${problems.join('; ')}`);
    const rules = config.rules.map((rule): CompiledRule => {
      const patterns: Partial<Record<McpItemKind, RegExp>> = {};
      for (const [key, kind] of Object.entries(PATTERN_KEYS) as Array<
        [keyof typeof PATTERN_KEYS, McpItemKind]
      >) {
        const list = rule[key];
        if (list) patterns[kind] = globsToRegExp(list);
      }
      const allow = {
        emails: rule.allow?.emails ?? [],
        domains: rule.allow?.domains ?? [],
        groups: rule.allow?.groups ?? [],
      };
      const open = allow.emails.length + allow.domains.length + allow.groups.length === 0;
      return { patterns, allow, open, scope: rule.scope };
    });
    return new McpAccessPolicy(rules, config.default !== 'deny');
  }

  /** True when a rule's `allow` names emails/domains/groups (these cannot be judged in bypass mode). */
  get usesIdentity(): boolean {
    return this.identityRules.length > 0;
  }

  decide(kind: McpItemKind, name: string, caller: McpCaller | undefined): McpAccessDecision {
    const index = this.rules.findIndex((rule) => rule.patterns[kind]?.test(name));
    const rule = this.rules[index];
    if (rule === undefined)
      return this.defaultAllows ? ALLOWED : { allowed: false, reason: 'denied', rule: 'default' };
    if (!letsIn(rule, caller)) return { allowed: false, reason: 'denied', rule: index };
    const held = caller?.scopes;
    if (rule.scope === undefined || held === undefined || held.includes(rule.scope)) return ALLOWED;
    return { allowed: false, reason: 'scope', required: unique([MCP_SCOPE, ...held, rule.scope]) };
  }

  /** For list filtering: allowed, or allowed by `allow` but missing a scope (the client discovers the step-up by calling). */
  visible(kind: McpItemKind, name: string, caller: McpCaller | undefined): boolean {
    const decision = this.decide(kind, name, caller);
    return decision.allowed || decision.reason === 'scope';
  }

  /** The step-up scopes this user may be granted at /authorize: those of rules whose `allow` matches them. */
  grantableScopes(caller: Omit<McpCaller, 'scopes'>): string[] {
    return unique(
      this.rules.flatMap((rule) => (rule.scope !== undefined && letsIn(rule, caller) ? rule.scope : [])),
    );
  }
}

/** A rule's `allow` against the caller; without an identity only an open rule lets in. */
function letsIn(rule: CompiledRule, caller: Omit<McpCaller, 'scopes'> | undefined): boolean {
  if (rule.open) return true;
  return caller !== undefined && evaluatePolicy(caller, rule.allow).allowed;
}

/** The patterns of one list as one anchored expression: `*` = any run of characters, the rest literal. */
function globsToRegExp(globs: readonly string[]): RegExp {
  const alternatives = globs.map((glob) =>
    glob
      .split('*')
      .map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&'))
      .join('[\\s\\S]*'),
  );
  return new RegExp(`^(?:${alternatives.join('|')})$`, 'u');
}

/** A value (MCP_ACCESS) that compiles: mcpAccessProblems finds nothing in it. */
export function isMcpAccessConfig(raw: unknown): raw is McpAccessConfig {
  return mcpAccessProblems(raw).length === 0;
}

function unique(values: readonly string[]): string[] {
  return [...new Set(values)];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** An unknown key's problem, with a guess when it is close to a known one. */
function unknownKey(path: string, key: string, known: readonly string[]): string {
  const guess = known.find((k) => editDistance(key.toLowerCase(), k) <= 2);
  const hint = guess ? `; did you mean ${guess}?` : '';
  return `${path}.${key} is not a known key${hint} (the keys here are ${known.join(', ')})`;
}

/**
 * Every problem with an `mcp_access` value, each naming its path (`mcp_access.rules[2].tools[0]`,
 * indexes from 0) and the fix. Empty = the value compiles.
 */
export function mcpAccessProblems(raw: unknown): string[] {
  if (!isRecord(raw))
    return [
      `${ROOT} must be a mapping with rules (and optionally default), e.g. {"default": "allow", "rules": [{"tools": ["delete_*"], "allow": {"groups": ["admins"]}}]}`,
    ];
  const problems: string[] = [];
  for (const key of Object.keys(raw))
    if (!(TOP_KEYS as readonly string[]).includes(key)) problems.push(unknownKey(ROOT, key, TOP_KEYS));
  if (raw.default !== undefined && raw.default !== 'allow' && raw.default !== 'deny')
    problems.push(
      `${ROOT}.default must be allow or deny (what a tool, prompt or resource no rule matches gets)`,
    );
  const rules = raw.rules;
  if (rules === undefined || (Array.isArray(rules) && rules.length === 0))
    problems.push(
      `${ROOT}.rules is missing or empty: every tool, prompt and resource would get the default, which is more likely a mistake (a mis-indented list) than meant; list at least one rule, or remove ${ROOT}`,
    );
  else if (!Array.isArray(rules))
    problems.push(
      `${ROOT}.rules must be a list of rules, each a mapping such as {"tools": ["*"], "allow": {}}`,
    );
  else problems.push(...rules.flatMap((rule, i) => ruleProblems(rule, `${ROOT}.rules[${i}]`)));
  return problems;
}

function ruleProblems(rule: unknown, path: string): string[] {
  if (!isRecord(rule))
    return [`${path} must be a mapping with tools, prompts or resources (and optionally allow and scope)`];
  const problems: string[] = [];
  for (const key of Object.keys(rule))
    if (!(RULE_KEYS as readonly string[]).includes(key)) problems.push(unknownKey(path, key, RULE_KEYS));
  const named = Object.keys(PATTERN_KEYS).filter((key) => rule[key] !== undefined);
  if (named.length === 0)
    problems.push(`${path} names no tools, prompts or resources: give at least one list of name patterns`);
  for (const key of named) problems.push(...stringListProblems(rule[key], `${path}.${key}`, 'name pattern'));
  if (rule.allow !== undefined) problems.push(...allowProblems(rule.allow, `${path}.allow`));
  const scope = rule.scope;
  if (scope !== undefined) {
    if (typeof scope !== 'string' || !SCOPE_TOKEN.test(scope))
      problems.push(
        `${path}.scope must be one OAuth scope (RFC 6749: printable ASCII without spaces, " or \\), e.g. mcp:admin`,
      );
    else if (scope === MCP_SCOPE)
      problems.push(
        `${path}.scope is ${MCP_SCOPE}, the base scope every token has: it would require nothing; name a step-up scope such as mcp:admin, or remove scope`,
      );
  }
  return problems;
}

function allowProblems(allow: unknown, path: string): string[] {
  if (!isRecord(allow))
    return [`${path} must be a mapping of emails, domains and/or groups lists, or {} for anyone`];
  const problems: string[] = [];
  for (const key of Object.keys(allow))
    if (!(ALLOW_KEYS as readonly string[]).includes(key)) problems.push(unknownKey(path, key, ALLOW_KEYS));
  for (const key of ALLOW_KEYS) {
    const list = allow[key];
    if (list === undefined) continue;
    const listProblems = stringListProblems(
      list,
      `${path}.${key}`,
      key.slice(0, -1),
      'write allow: {} for anyone',
    );
    problems.push(...listProblems);
    if (listProblems.length > 0 || key === 'groups') continue;
    (list as string[]).forEach((entry, i) => {
      const config = { emails: [], domains: [], groups: [], [key]: [entry] };
      // policyConfigProblems names the setting it checks (`ALLOWED_EMAILS: ...`): the path replaces it.
      for (const line of policyConfigProblems(config))
        problems.push(`${path}.${key}[${i}]: ${line.slice(line.indexOf(': ') + 2)}`);
    });
  }
  return problems;
}

/**
 * A non-empty list of non-blank strings; `what` names one entry in the messages, `orElse` the
 * other fix for an empty list.
 */
function stringListProblems(list: unknown, path: string, what: string, orElse = 'remove the key'): string[] {
  if (!Array.isArray(list)) return [`${path} must be a list of ${what}s, e.g. ["${exampleOf(what)}"]`];
  if (list.length === 0)
    return [
      `${path} is an empty list, which reads as nobody or as anything; give at least one ${what}, or ${orElse}`,
    ];
  return list.flatMap((entry, i) =>
    typeof entry === 'string' && entry.trim() !== ''
      ? []
      : [`${path}[${i}] must be a non-empty string (a ${what})`],
  );
}

function exampleOf(what: string): string {
  return { email: 'alice@example.com', domain: 'example.com', group: 'admins' }[what] ?? 'delete_*';
}
