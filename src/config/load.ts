/**
 * Loading the configuration: read every setting's text (sources.ts), parse it by kind
 * (parse.ts), run each setting's own check (its table entry), then the cross-field rules
 * (rules.ts), and build the Config (build.ts). Every problem is collected before failing, so
 * one run shows everything to fix.
 */
import { isIP } from 'node:net';
import { buildConfig } from './build.js';
import { maskProblem, shownValue } from './mask.js';
import { type ParsedValues, parseSettings } from './parse.js';
import { crossFieldProblems } from './rules.js';
import type { CheckProblems, SettingSpec } from './setting-spec.js';
import { SETTING_SPECS, SETTINGS, type SettingEnv } from './settings.js';
import { type LoadInput, type RawValue, readRawValues } from './sources.js';
import { type Config, ConfigError, type ConfigProblem, type Source } from './types.js';

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
  const report = (key: SettingEnv, message: string, value = raw.get(key)?.value ?? ''): void => {
    problems.push({ key, value, source: raw.get(key)?.source ?? 'unset', message });
  };

  const parsed = parseSettings(new Map([...raw].map(([key, r]) => [key, r.value])));
  const { values } = parsed;
  const refused = new Set<SettingEnv>();
  for (const [key, message] of parsed.errors) {
    report(key, message);
    refused.add(key);
  }
  for (const check of parsed.checks) {
    if (check.ignoredWhenSet !== undefined && values[check.ignoredWhenSet] !== undefined) continue;
    for (const message of asList(check.run())) {
      report(check.key, message, UNQUOTED_IN_CHECKS.has(check.key) ? '' : undefined);
      refused.add(check.key);
    }
  }
  for (const { key, message } of crossFieldProblems({ values, given: new Set(raw.keys()), refused }))
    report(key, message, UNQUOTED_IN_CHECKS.has(key) ? '' : undefined);

  const reported = fileFailed ? problems.filter((p) => p.source !== 'unset') : problems;
  if (reported.length > 0) throw new ConfigError(reported.map(maskProblem));
  const config = buildConfig(values, Object.fromEntries([...raw].map(([key, r]) => [key, r.source])));
  SETTING_VALUES.set(config, comparableValues(values));
  return config;
}

function asList(problems: CheckProblems): readonly string[] {
  if (problems === undefined) return [];
  return typeof problems === 'string' ? [problems] : problems;
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
  /** Environment name. */
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
    if (r === undefined) return describeUnset(spec, picked);
    const ignored =
      spec.ignoredWhenSet !== undefined && picked.has(spec.ignoredWhenSet)
        ? `, ignored: ${spec.ignoredWhenSet} is set`
        : '';
    return { key: spec.env, value: shownValue(spec, r.value), source: `${r.source}${ignored}` };
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
  return { key: spec.env, value: '', source: 'unset' };
}
