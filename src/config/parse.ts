/**
 * Turns each setting's text into the value its kind says (settings.ts), and types those values
 * from the table: `values.AUTH_MODE` is `'oidc' | 'bypass' | undefined`, `values.PUBLIC_URL` a URL.
 */
import { splitCommand } from '../stdio/command.js';
import { absoluteUrl } from './checks.js';
import { readSmallTextFile } from './read-file.js';
import {
  type CheckProblems,
  checkOf,
  type KindValues,
  type LoadedFile,
  type SettingKind,
  type SpecOfKind,
} from './setting-spec.js';
import { SETTINGS, type SettingEnv } from './settings.js';

type Setting = (typeof SETTINGS)[number];

type ValueOfSpec<S> = S extends { kind: 'enum'; values: readonly (infer V)[] }
  ? V
  : S extends { kind: infer K extends SettingKind }
    ? KindValues[K]
    : never;

type ValueMap = { [S in Setting as S['env']]: ValueOfSpec<S> };

/** A setting's value: what its kind parses to, or for an enum one of its values. */
export type SettingValue<E extends SettingEnv> = ValueMap[E];

/** Every setting's value; absent when the setting is unset or its text did not parse. */
export type ParsedValues = { -readonly [E in SettingEnv]?: SettingValue<E> };

/** The settings of one kind. */
export type EnvOfKind<K extends SettingKind> = Extract<Setting, { kind: K }>['env'];

/** The settings with a default, which have a value whenever the configuration loaded. */
export type DefaultedEnv = Extract<Setting, { default: string }>['env'];

/** A setting's own check, bound to its parsed value, to run once every setting has parsed. */
export interface PendingCheck {
  key: SettingEnv;
  /** The settings that replace this one when set: the check is skipped then. */
  ignoredWhenSet: readonly SettingEnv[];
  run(): CheckProblems;
}

export interface ParsedSettings {
  values: ParsedValues;
  /** Why a setting's text did not parse, in table order. */
  errors: Map<SettingEnv, string>;
  /** The checks of the settings that parsed, in table order. */
  checks: PendingCheck[];
}

type Parsed<T> = { value: T } | { error: string };

/** Parses every given setting (`texts`: its text by name, as flags, env, file or default gave it). */
export function parseSettings(texts: ReadonlyMap<SettingEnv, string>): ParsedSettings {
  const out: ParsedSettings = { values: {}, errors: new Map(), checks: [] };
  const settle = <E extends SettingEnv>(
    key: E,
    parsed: Parsed<SettingValue<E> | undefined>,
    check: ((value: SettingValue<E>) => CheckProblems) | undefined,
    ignoredWhenSet: readonly SettingEnv[] = [],
  ): void => {
    if ('error' in parsed) out.errors.set(key, parsed.error);
    else if (parsed.value !== undefined) {
      const value = parsed.value;
      out.values[key] = value;
      if (check) out.checks.push({ key, ignoredWhenSet, run: () => check(value) });
    }
  };
  // One case per kind: there `spec` is narrowed to the entries of that kind, so the parser's
  // result and the entry's check are both typed by the kind, and no value is ever cast.
  for (const spec of SETTINGS) {
    const text = texts.get(spec.env)?.trim();
    if (text === undefined) continue;
    const ignoredWhenSet = 'ignoredWhenSet' in spec ? spec.ignoredWhenSet : undefined;
    switch (spec.kind) {
      case 'string':
        settle(spec.env, parseText(text), checkOf(spec), ignoredWhenSet);
        break;
      case 'file':
        settle(spec.env, parseFile(spec, text), checkOf(spec), ignoredWhenSet);
        break;
      case 'int':
      case 'seconds':
      case 'number':
        settle(spec.env, parseNumber(spec, text), checkOf(spec), ignoredWhenSet);
        break;
      case 'bool':
        settle(spec.env, parseBool(text), checkOf(spec), ignoredWhenSet);
        break;
      case 'list':
        settle(spec.env, parseList(text), checkOf(spec), ignoredWhenSet);
        break;
      case 'enum':
        settle(spec.env, parseChoice(spec.values, text), checkOf(spec), ignoredWhenSet);
        break;
      case 'url':
        settle(spec.env, parseUrl(spec, text), checkOf(spec), ignoredWhenSet);
        break;
      case 'json':
        settle(spec.env, parseJson(text), checkOf(spec), ignoredWhenSet);
        break;
      case 'command':
        settle(spec.env, parseCommand(text), checkOf(spec), ignoredWhenSet);
        break;
    }
  }
  return out;
}

/**
 * The value of a setting that has a default. Only for a configuration that loaded without
 * problems: then every such setting parsed.
 */
export function defaultedValue<E extends DefaultedEnv>(values: ParsedValues, key: E): SettingValue<E> {
  const value = values[key];
  if (value === undefined) throw new Error(`${key} has a default, yet no value: it did not parse`);
  return value;
}

function parseText(v: string): Parsed<string> {
  // A newline in a header value (CSP) or a pasted secret is an accident that would only show
  // later, as a failed request; say so now.
  if (hasControlChar(v))
    return { error: 'contains a control character (newline, tab, ...); set it again without one' };
  return { value: v };
}

function hasControlChar(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** A file setting's value is the text of the file; an empty path (`--proxy-ca-file=`) names none. */
function parseFile(spec: SpecOfKind<'file'>, v: string): Parsed<LoadedFile | undefined> {
  const path = parseText(v);
  if ('error' in path) return path;
  if (path.value === '') return { value: undefined };
  try {
    return { value: { path: path.value, text: readSmallTextFile(path.value, spec.maxBytes) } };
  } catch (err) {
    return { error: `cannot be read (${(err as NodeJS.ErrnoException).code}); ${spec.unreadableFix}` };
  }
}

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };

function parseNumber(spec: SpecOfKind<'int' | 'seconds' | 'number'>, v: string): Parsed<number> {
  const wantInt = spec.kind === 'int';
  const what = wantInt ? 'an integer' : spec.kind === 'seconds' ? 'a number of seconds' : 'a number';
  const range = `must be ${what} from ${spec.min} to ${spec.max}`;
  let n = Number.NaN;
  // Seconds also take a Go-style unit suffix (500ms, 25s, 5m, 1h), as the seed's users write them.
  const withUnit = spec.kind === 'seconds' ? /^(.*?)(ms|s|m|h)$/.exec(v) : null;
  const [, amount, unit] = withUnit ?? [];
  const perUnit = unit === undefined ? undefined : UNIT_SECONDS[unit];
  if (amount !== undefined && perUnit !== undefined && DECIMAL.test(amount)) n = Number(amount) * perUnit;
  else if (DECIMAL.test(v)) n = Number(v);
  if (!Number.isFinite(n) || (wantInt && !Number.isInteger(n)))
    return { error: `${range}${spec.kind === 'seconds' ? ' (e.g. 30, 1.5 or 500ms)' : ''}` };
  if (n < spec.min || n > spec.max) return { error: range };
  return { value: n };
}

function parseBool(v: string): Parsed<boolean> {
  const s = v.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(s)) return { value: true };
  if (['false', '0', 'no', 'off'].includes(s)) return { value: false };
  return { error: 'must be true or false' };
}

function parseList(v: string): Parsed<string[]> {
  return {
    value: v
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  };
}

function parseChoice<V extends string>(values: readonly V[], v: string): Parsed<V> {
  const s = v.toLowerCase();
  const found = values.find((choice) => choice === s);
  if (found !== undefined) return { value: found };
  return { error: `must be one of: ${values.join(', ')}` };
}

function parseUrl(spec: SpecOfKind<'url'>, v: string): Parsed<URL> {
  const url = absoluteUrl(v, spec.protocols, spec.example);
  return typeof url === 'string' ? { error: url } : { value: url };
}

function parseJson(v: string): Parsed<unknown> {
  try {
    return { value: JSON.parse(v) };
  } catch {
    return { error: 'must be JSON (in a YAML file: YAML lists and mappings)' };
  }
}

/** A command line as its words (a YAML list arrives quoted, see sources.ts). */
function parseCommand(v: string): Parsed<string[]> {
  try {
    return { value: splitCommand(v) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}
