/**
 * Cross-field rules: what must hold between settings, one rule per function, each named for
 * what it checks. A rule about a single setting belongs in that setting's table entry instead.
 */
import { isMcpAccessConfig, type McpAccessConfig, McpAccessPolicy } from '../mcp/access-policy.js';
import { isLoopbackHost, listenAddressOf, pathsOverlap } from './checks.js';
import { AUTO_WORKERS, oidcScopes, publicUrlOf, workerCount } from './derived.js';
import type { ParsedValues } from './parse.js';
import { readServers, type ServerEntry } from './servers.js';
import { flagFor, SETTINGS, type SettingEnv } from './settings.js';

export interface RuleInput {
  /** Each setting's value; absent when unset or when its text did not parse. */
  values: ParsedValues;
  /** The settings given a value (flag, environment, file or default), valid or not. */
  given: ReadonlySet<SettingEnv>;
  /** The settings given a value other than their default (by flag, environment or file), valid or not. */
  explicit: ReadonlySet<SettingEnv>;
  /** The settings whose own value was already reported wrong (by its kind or its check). */
  refused: ReadonlySet<SettingEnv>;
}

/** What a rule found wrong: the setting to change and how (the loader adds value and source). */
export interface RuleProblem {
  key: SettingEnv;
  message: string;
  /** The part of a structured setting at fault (`servers[1].path`), reported instead of its name. */
  path?: string;
}

export type CrossFieldRule = (input: RuleInput) => RuleProblem[];

/** MCP_PATH and a served METRICS_PATH: neither may be the other or under it. */
export function mcpPathClearOfMetricsPath({ values, refused }: RuleInput): RuleProblem[] {
  const { MCP_PATH: mcpPath, METRICS_PATH: metricsPath } = values;
  // An MCP_PATH already reported wrong is not compared: its own fix comes first. With
  // `servers:` it is not used.
  if (mcpPath === undefined || refused.has('MCP_PATH') || values.SERVERS !== undefined) return [];
  if (metricsPath === undefined || !values.METRICS_ENABLED || !pathsOverlap(mcpPath, metricsPath)) return [];
  return [{ key: 'MCP_PATH', message: `overlaps METRICS_PATH (${metricsPath}); give them different paths` }];
}

/** The `servers:` entries, once every one of them passed its check; none otherwise. */
function checkedServers({ values, refused }: RuleInput): ServerEntry[] {
  return values.SERVERS === undefined || refused.has('SERVERS') ? [] : readServers(values.SERVERS).entries;
}

/** Each `servers:` path and a served METRICS_PATH, as for MCP_PATH. */
export function serverPathsClearOfMetricsPath(input: RuleInput): RuleProblem[] {
  const { METRICS_PATH: metricsPath, METRICS_ENABLED: served } = input.values;
  if (metricsPath === undefined || !served) return [];
  return checkedServers(input).flatMap((server, i) =>
    pathsOverlap(server.path, metricsPath)
      ? [
          {
            key: 'SERVERS' as const,
            path: `servers[${i}].path`,
            message: `${server.path} overlaps METRICS_PATH (${metricsPath}); give them different paths`,
          },
        ]
      : [],
  );
}

/** What each single-target setting becomes with `servers:`, for the message that refuses it. */
const REPLACED_BY_SERVERS = {
  PROXY_TARGET_URL: "a servers: entry's url",
  PROXY_TARGET_HOST: "a servers: entry's url",
  PROXY_TARGET_PORT: "a servers: entry's url",
  PROXY_TARGET_COMMAND: "a servers: entry's command",
  MCP_PATH: "each servers: entry's path",
  MCP_ACCESS: "a servers: entry's mcp_access",
} as const satisfies Partial<Record<SettingEnv, string>>;

/**
 * `servers:` names every server's target, path and rules; the single-target settings beside it
 * would be silently ignored, which is more likely a half-done migration than meant.
 */
export function serversReplaceSingleTargetSettings({ given, explicit }: RuleInput): RuleProblem[] {
  if (!given.has('SERVERS')) return [];
  return Object.entries(REPLACED_BY_SERVERS).flatMap(([key, instead]) =>
    explicit.has(key as SettingEnv)
      ? [
          {
            key: key as SettingEnv,
            message: `cannot be used with servers: (the list names each server's target, path and rules); use ${instead} instead, and remove ${key}`,
          },
        ]
      : [],
  );
}

/** PROXY_TARGET_COMMAND is the target: a target URL beside it would be silently ignored. */
export function targetCommandExcludesTargetUrl({ given, explicit }: RuleInput): RuleProblem[] {
  // With `servers:` too, serversReplaceSingleTargetSettings names both already.
  if (!explicit.has('PROXY_TARGET_COMMAND') || given.has('SERVERS')) return [];
  return (['PROXY_TARGET_URL', 'PROXY_TARGET_HOST', 'PROXY_TARGET_PORT'] as const)
    .filter((key) => explicit.has(key))
    .map((key) => ({
      key,
      message: `cannot be used with PROXY_TARGET_COMMAND: the proxy runs that command as the MCP server; remove ${key}, or PROXY_TARGET_COMMAND to forward to a URL`,
    }));
}

/** AUTH_MODE=oidc needs the upstream provider's settings; GitHub has no discovery document. */
export function oidcModeHasProviderSettings({ values, given }: RuleInput): RuleProblem[] {
  if (values.AUTH_MODE !== 'oidc') return [];
  const required =
    values.OIDC_PROVIDER === 'github'
      ? (['OIDC_CLIENT_ID'] as const)
      : (['OIDC_DISCOVERY_URL', 'OIDC_CLIENT_ID'] as const);
  return required
    .filter((key) => !given.has(key))
    .map((key) => ({
      key,
      message: `is required when AUTH_MODE=oidc; ${howToSet(key)} (or use AUTH_MODE=bypass for local development without login)`,
    }));
}

/** How to set a setting, for "is required" messages. */
function howToSet(key: SettingEnv): string {
  const spec = SETTINGS.find((s) => s.env === key);
  if (!spec) return '';
  return `set the environment variable ${spec.env}, the YAML key ${spec.yaml} or the flag ${flagFor(spec)}`;
}

/** Browsers drop a Secure cookie that a plain http origin sets (loopback excepted). */
export function secureCookieNeedsHttpsPublicUrl({ values }: RuleInput): RuleProblem[] {
  const publicUrl = publicUrlOf(values);
  if (!values.SESSION_COOKIE_SECURE || publicUrl.protocol === 'https:' || isLoopbackHost(publicUrl.hostname))
    return [];
  return [
    {
      key: 'SESSION_COOKIE_SECURE',
      message:
        'is true but PUBLIC_URL is not https: browsers would drop the cookie; set PUBLIC_URL to the https URL',
    },
  ];
}

/** An OpenID Connect provider only answers as one to the openid scope (GitHub is plain OAuth). */
export function oidcScopesIncludeOpenid({ values }: RuleInput): RuleProblem[] {
  if (values.AUTH_MODE !== 'oidc' || values.OIDC_PROVIDER === 'github') return [];
  if (oidcScopes(values).includes('openid')) return [];
  return [
    {
      key: 'OIDC_SCOPES',
      message: 'must include openid for an OpenID Connect provider, e.g. "openid email profile"',
    },
  ];
}

/** An enabled admin API needs someone who can use it: a token holder or a group of admins. */
export function adminApiHasAWayIn({ values }: RuleInput): RuleProblem[] {
  if (!values.ADMIN_ENABLED || values.ADMIN_TOKEN || (values.ADMIN_GROUPS ?? []).length > 0) return [];
  return [
    {
      key: 'ADMIN_ENABLED',
      message:
        'is true but neither ADMIN_TOKEN nor ADMIN_GROUPS is set: nobody could use the admin API; set ADMIN_TOKEN (openssl rand -base64 48) or ADMIN_GROUPS',
    },
  ];
}

/** Without a token, admins are known by their login's groups, and AUTH_MODE=bypass has no login. */
export function adminGroupsNeedOidcLogin({ values }: RuleInput): RuleProblem[] {
  if (!values.ADMIN_ENABLED || values.ADMIN_TOKEN || values.AUTH_MODE !== 'bypass') return [];
  return [
    {
      key: 'ADMIN_GROUPS',
      message: 'needs AUTH_MODE=oidc (with AUTH_MODE=bypass nobody logs in); set ADMIN_TOKEN instead',
    },
  ];
}

/**
 * The admin listener: only for an enabled admin API; ADMIN_PUBLIC_URL only for that listener,
 * and on another origin than PUBLIC_URL (the whole point is that backend pages cannot share it).
 */
export function adminListenerIsSeparate({ values, refused }: RuleInput): RuleProblem[] {
  const problems: RuleProblem[] = [];
  const listen = values.ADMIN_LISTEN ? listenAddressOf(values.ADMIN_LISTEN) : undefined;
  if (values.ADMIN_LISTEN && !values.ADMIN_ENABLED) {
    problems.push({
      key: 'ADMIN_LISTEN',
      message: 'is set but ADMIN_ENABLED is not true: set ADMIN_ENABLED=true, or remove ADMIN_LISTEN',
    });
  }
  const adminUrl = values.ADMIN_PUBLIC_URL;
  if (adminUrl && !values.ADMIN_LISTEN && !refused.has('ADMIN_LISTEN')) {
    problems.push({
      key: 'ADMIN_PUBLIC_URL',
      message: 'needs ADMIN_LISTEN (the admin listener it names); without it /admin is served at PUBLIC_URL',
    });
  }
  const publicUrl = refused.has('PUBLIC_URL') ? undefined : publicUrlOf(values);
  if (adminUrl && publicUrl && adminUrl.origin === publicUrl.origin) {
    problems.push({
      key: 'ADMIN_PUBLIC_URL',
      message: `is PUBLIC_URL's origin (${publicUrl.origin}): give the admin listener another port or host name`,
    });
  }
  if (listen && listen.port !== 0 && listen.port === values.SERVER_PORT) {
    problems.push({
      key: 'ADMIN_LISTEN',
      message: `uses SERVER_PORT (${listen.port}): give the admin listener a port of its own`,
    });
  }
  return problems;
}

/** A rule's `allow` that names people cannot be judged in AUTH_MODE=bypass: nobody logs in. */
export function mcpAccessIdentityNeedsOidcLogin(input: RuleInput): RuleProblem[] {
  const { values, refused } = input;
  if (values.AUTH_MODE !== 'bypass') return [];
  const raw = values.MCP_ACCESS;
  const single =
    !refused.has('MCP_ACCESS') && isMcpAccessConfig(raw)
      ? identityRulesProblem(raw, 'mcp_access.rules', { key: 'MCP_ACCESS' })
      : [];
  const perServer = checkedServers(input).flatMap((server, i) =>
    server.access
      ? identityRulesProblem(server.access, 'rules', { key: 'SERVERS', path: `servers[${i}].mcp_access` })
      : [],
  );
  return [...single, ...perServer];
}

/**
 * A server's own allow-lists cannot be applied in AUTH_MODE=bypass (nobody logs in): left in
 * place they would let everyone in while reading as a restriction.
 */
export function serverAllowListsNeedOidcLogin(input: RuleInput): RuleProblem[] {
  if (input.values.AUTH_MODE !== 'bypass') return [];
  return checkedServers(input).flatMap((server, i) =>
    (['emails', 'domains', 'groups'] as const)
      .filter((list) => server.policy[list].length > 0)
      .map((list) => ({
        key: 'SERVERS' as const,
        path: `servers[${i}].allowed_${list}`,
        message: 'cannot be applied in bypass mode, where nobody logs in: remove it or use AUTH_MODE=oidc',
      })),
  );
}

/** The problem of rules whose `allow` names people, if any; `rulesPath` names their list. */
function identityRulesProblem(
  config: McpAccessConfig,
  rulesPath: string,
  at: Omit<RuleProblem, 'message'>,
): RuleProblem[] {
  const named = McpAccessPolicy.compile(config).identityRules;
  if (named.length === 0) return [];
  const which = named.map((i) => `${rulesPath}[${i}].allow`).join(', ');
  return [
    {
      ...at,
      message: `${which} ${named.length === 1 ? 'names' : 'name'} emails, domains or groups, but in bypass mode there is no user: use \`allow: {}\` or AUTH_MODE=oidc`,
    },
  ];
}

/**
 * Workers are separate processes: sessions, tokens, clients and rate limits in one worker's
 * memory would be unknown to the next request's worker. `auto` counts as several even on a
 * one-CPU machine, so a config valid here is valid on the bigger machine it is deployed to.
 */
export function severalWorkersNeedSharedStore({ values, refused }: RuleInput): RuleProblem[] {
  if (refused.has('SERVER_WORKERS') || !severalWorkers(values) || values.SESSION_STORE !== 'memory')
    return [];
  return [
    {
      key: 'SESSION_STORE',
      message: `is memory but SERVER_WORKERS=${values.SERVER_WORKERS} runs several worker processes, which must share sessions, tokens and rate limits: set SESSION_STORE=redis (with REDIS_URL), or SERVER_WORKERS=1`,
    },
  ];
}

/** SERVER_WORKERS asks for more than one worker (or for `auto`, which may be). */
function severalWorkers(values: ParsedValues): boolean {
  const text = values.SERVER_WORKERS;
  return text !== undefined && (text.toLowerCase() === AUTO_WORKERS || workerCount(values) > 1);
}

/**
 * A stdio server's MCP sessions live in the memory of the worker that started its child, and
 * the workers share connections, not sessions: the next request of a session may reach another
 * worker, which answers "Session not found".
 */
export function stdioServersNeedOneWorker(input: RuleInput): RuleProblem[] {
  const { values, refused } = input;
  if (refused.has('SERVER_WORKERS') || !severalWorkers(values)) return [];
  const stdio = values.SERVERS
    ? checkedServers(input).flatMap((server, i) =>
        server.target.kind === 'command' ? [`servers[${i}].command`] : [],
      )
    : values.PROXY_TARGET_COMMAND
      ? ['PROXY_TARGET_COMMAND']
      : [];
  if (stdio.length === 0) return [];
  return [
    {
      key: 'SERVER_WORKERS',
      message: `must be 1 with a stdio MCP server (${stdio.join(', ')}): its sessions live in the worker that runs the command, and another worker would answer their requests with "Session not found"; set SERVER_WORKERS=1, or serve the MCP server over HTTP and give its URL`,
    },
  ];
}

/** Every cross-field rule, in the order their problems are reported. */
export const CROSS_FIELD_RULES: readonly CrossFieldRule[] = [
  serversReplaceSingleTargetSettings,
  targetCommandExcludesTargetUrl,
  mcpPathClearOfMetricsPath,
  serverPathsClearOfMetricsPath,
  oidcModeHasProviderSettings,
  secureCookieNeedsHttpsPublicUrl,
  oidcScopesIncludeOpenid,
  adminApiHasAWayIn,
  adminGroupsNeedOidcLogin,
  adminListenerIsSeparate,
  mcpAccessIdentityNeedsOidcLogin,
  serverAllowListsNeedOidcLogin,
  severalWorkersNeedSharedStore,
  stdioServersNeedOneWorker,
];

/** Runs every rule over the loaded values. */
export function crossFieldProblems(input: RuleInput): RuleProblem[] {
  return CROSS_FIELD_RULES.flatMap((rule) => rule(input));
}
