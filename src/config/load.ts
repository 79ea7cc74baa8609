/**
 * Loading the configuration: read every setting's text (sources.ts), parse it by kind
 * (parse.ts), run each setting's own check (its table entry), then the cross-field rules
 * (rules.ts), and build the Config (build.ts). Every problem is collected before failing, so
 * one run shows everything to fix.
 */
import { isIP } from 'node:net';
import { quoteCommand } from '../stdio/command.js';
import { buildConfig } from './build.js';
import { AUTO_WORKERS } from './derived.js';
import { maskProblem, maskUrlCredentials, shownValue } from './mask.js';
import { type ParsedValues, parseSettings } from './parse.js';
import { crossFieldProblems } from './rules.js';
import type { CheckProblems, PartProblem, SettingSpec } from './setting-spec.js';
import { nameOf, SETTING_SPECS, SETTINGS, type SettingEnv, settingName } from './settings.js';
import { type LoadInput, type RawValue, readRawValues } from './sources.js';
import { type Config, ConfigError, type ConfigProblem, type ServerConfig, type Source } from './types.js';

export type { LoadInput } from './sources.js';

/**
 * A structured value is not repeated in its problems: it may be long, and each message names
 * the entry at fault.
 */
const UNQUOTED_IN_CHECKS = new Set(SETTING_SPECS.filter((s) => s.kind === 'json').map((s) => s.env));

/** Builds the effective configuration: CLI flags > environment > YAML file > defaults. */
export function loadConfig(input: LoadInput = {}): Config {
  const problems: ConfigProblem[] = [];
  const raw = readRawValues(input, problems);
  // A file that cannot be read or parsed may hold the settings reported missing below
  // (OIDC_DISCOVERY_URL is required...): naming them would only hide the cause.
  const fileFailed = problems.length > 0;
  const sourceOf = (key: SettingEnv): Source => raw.get(key)?.source ?? 'unset';
  const report = (key: SettingEnv, message: string, value = raw.get(key)?.value ?? ''): void => {
    problems.push({ key: nameOf(key), value, source: sourceOf(key), message });
  };
  /** A problem with one part of a structured setting, named by that part's path (`servers[1].url`). */
  const reportPart = (key: SettingEnv, part: PartProblem): void => {
    problems.push({ key: part.path, value: part.value ?? '', source: sourceOf(key), message: part.message });
  };

  const parsed = parseSettings(new Map([...raw].map(([key, r]) => [key, r.value])));
  const { values } = parsed;
  const refused = new Set<SettingEnv>();
  for (const [key, message] of parsed.errors) {
    report(key, message);
    refused.add(key);
  }
  for (const check of parsed.checks) {
    if (check.ignoredWhenSet.some((other) => values[other] !== undefined)) continue;
    for (const problem of asList(check.run())) {
      if (typeof problem === 'string')
        report(check.key, problem, UNQUOTED_IN_CHECKS.has(check.key) ? '' : undefined);
      else reportPart(check.key, problem);
      refused.add(check.key);
    }
  }
  const given = new Set(raw.keys());
  for (const problem of crossFieldProblems({ values, given, explicit: explicitlySet(raw), refused })) {
    const { key, message, path } = problem;
    if (path !== undefined) reportPart(key, { path, message });
    else report(key, message, UNQUOTED_IN_CHECKS.has(key) ? '' : undefined);
  }

  const reported = fileFailed ? problems.filter((p) => p.source !== 'unset') : problems;
  if (reported.length > 0) throw new ConfigError(reported.map(maskProblem));
  const config = buildConfig(values, Object.fromEntries([...raw].map(([key, r]) => [key, r.source])));
  SETTING_VALUES.set(config, comparableValues(values));
  return config;
}

function asList(problems: CheckProblems): ReadonlyArray<string | PartProblem> {
  if (problems === undefined) return [];
  return typeof problems === 'string' ? [problems] : problems;
}

/**
 * The settings a flag, the environment or the file gave a value other than the default: the
 * ones that conflict with another (`servers:` with PROXY_TARGET_URL). A default written out, as
 * configs/config.example.yaml does, is no conflict.
 */
function explicitlySet(raw: ReadonlyMap<SettingEnv, RawValue>): Set<SettingEnv> {
  const out = new Set<SettingEnv>();
  for (const spec of SETTINGS) {
    const r = raw.get(spec.env);
    if (r && r.source !== 'default' && r.value.trim() !== ('default' in spec ? spec.default : undefined))
      out.add(spec.env);
  }
  return out;
}

/** Every set setting's effective value, comparable as text: what a reload compares. */
export type SettingValues = ReadonlyMap<SettingEnv, string>;

const SETTING_VALUES = new WeakMap<Config, SettingValues>();

function comparableValues(values: ParsedValues): SettingValues {
  // URLs serialise as their href; lists and structures as JSON; a file setting as its path
  // and text, so a CA file replaced at the same path is a change too (a rotated certificate).
  const out = new Map<SettingEnv, string>();
  for (const { env } of SETTINGS) {
    const value = values[env];
    if (value !== undefined) out.set(env, JSON.stringify(value));
  }
  return out;
}

/**
 * The setting values `config` was built from (as `loadConfig` returned it, before any reload
 * changed it); secrets included, so never log them.
 */
export function settingValues(config: Config): SettingValues {
  const found = SETTING_VALUES.get(config);
  if (!found) throw new Error('the configuration was not built by loadConfig');
  return found;
}

export interface DescribedSetting {
  /** The setting's name: its environment name, or its YAML key for a YAML-only one (`servers`). */
  key: string;
  /** The value as given (secrets masked), or the derived value when unset. */
  value: string;
  /** `flag`, `env`, `env ALIAS`, `file PATH`, `default`, `derived ...`, `unset`, or `ignored ...`. */
  source: Source;
}

/** Every setting's current value as text, secrets masked: what `check-config` prints. */
export function describeConfig(input: LoadInput): DescribedSetting[] {
  // loadConfig reports the file's problems; here it is only read for its values.
  const picked: ReadonlyMap<string, RawValue> = readRawValues(input, []);
  return SETTING_SPECS.map((spec) => {
    const r = picked.get(spec.env);
    const described = r
      ? { key: settingName(spec), value: shownValue(spec, r.value), source: r.source }
      : describeUnset(spec, picked);
    const replacedBy = spec.ignoredWhenSet?.find((other) => picked.has(other));
    if (replacedBy === undefined || described.source === 'unset') return described;
    return {
      ...described,
      source: `${described.source}, ignored: ${nameOf(replacedBy as SettingEnv)} is set`,
    };
  });
}

/** An unset setting: the value derived for it, if any. */
function describeUnset(spec: SettingSpec, picked: ReadonlyMap<string, RawValue>): DescribedSetting {
  if (spec.env === 'PUBLIC_URL')
    return {
      key: spec.env,
      value: `http://localhost:${picked.get('SERVER_PORT')?.value.trim() ?? '8080'}`,
      source: 'derived from SERVER_PORT',
    };
  if (spec.env === 'PROXY_TARGET_URL') {
    const host = picked.get('PROXY_TARGET_HOST')?.value.trim() ?? 'localhost';
    const port = picked.get('PROXY_TARGET_PORT')?.value.trim() ?? '3000';
    return {
      key: spec.env,
      value: `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`,
      source: 'derived from PROXY_TARGET_HOST/PORT',
    };
  }
  return { key: settingName(spec), value: '', source: 'unset' };
}

/**
 * The servers the proxy serves, one line each (name, path, target, restrictions), under a
 * heading that says where they came from: what `check-config` prints after the settings.
 */
export function describeServers(config: Config): string[] {
  const heading = config.singleTarget
    ? `# server: one, from ${config.servers[0]?.target.kind === 'command' ? 'PROXY_TARGET_COMMAND' : 'PROXY_TARGET_URL (or host/port)'} and MCP_PATH; it also gets every path the proxy does not answer itself`
    : `# servers: ${config.servers.length}, from servers:; a path no server owns gets 404`;
  const rows = config.servers.map((server) => [server.name, server.path, describeServer(server)]);
  const width = (column: number): number => Math.max(...rows.map((row) => (row[column] as string).length));
  return [
    heading,
    ...rows.map(([name, path, rest]) => `${name?.padEnd(width(0))}  ${path?.padEnd(width(1))}  ${rest}`),
  ];
}

/** The worker processes that will serve (SERVER_WORKERS, `auto` resolved): what `check-config` prints. */
export function describeWorkers(config: Config): string {
  const n = config.server.workers;
  const auto = settingValues(config).get('SERVER_WORKERS')?.toLowerCase() === JSON.stringify(AUTO_WORKERS);
  const how = n === 1 ? 'this process serves' : 'a primary process runs them on the shared port';
  return `# workers: ${n}${auto ? ' (SERVER_WORKERS=auto: one per CPU)' : ''}; ${how}`;
}

function describeServer(server: ServerConfig): string {
  const { target, policy } = server;
  const parts =
    target.kind === 'url'
      ? [`url ${maskUrlCredentials(target.url.href)}`]
      : [`command ${quoteCommand(target.command)}`, `isolation ${target.isolation}`];
  for (const [key, list] of Object.entries(policy))
    if (list.length > 0) parts.push(`allowed_${key} ${list.join(',')}`);
  if (server.access) parts.push('mcp_access rules');
  return parts.join('; ');
}
