/**
 * What an entry of the settings table (settings.ts) may declare. The entry's `kind` decides the
 * type its text parses to, and with it the type its `check` receives: a check written for a
 * URL setting is handed a URL, never a string it would have to parse again.
 */

/** The value each kind of setting parses to. */
export interface KindValues {
  string: string;
  /** A small text file (a CA bundle): read when the configuration loads, size-capped. */
  file: LoadedFile;
  int: number;
  /** Given in seconds, optionally with a unit (500ms, 5m); kept as a number of seconds. */
  seconds: number;
  number: number;
  bool: boolean;
  /** Comma separated. */
  list: string[];
  /** One of the entry's `values`; parse.ts types it as exactly those. */
  enum: string;
  url: URL;
  json: unknown;
  /**
   * A command line, split into words like a shell would (src/stdio/command.ts) but never run by
   * one; in YAML also a list of words.
   */
  command: string[];
}

export type SettingKind = keyof KindValues;

/**
 * What a check found wrong with a value: nothing, one message, or one per entry at fault.
 * A message says what is wrong and how to fix it; the loader adds the key, value and source.
 * A structured value's problem may name the part at fault instead (a PartProblem).
 */
export type CheckProblems = string | readonly (string | PartProblem)[] | undefined;

/**
 * A problem with one part of a structured setting, reported under that part's YAML path
 * (`servers[1].url`) rather than the setting's name, with the setting's source.
 */
export interface PartProblem {
  path: string;
  /** The part's value as it may be shown (never a secret); omitted for a structure. */
  value?: string;
  message: string;
}

/** A `file` setting's value: the path given, and the text read from it when the config loaded. */
export interface LoadedFile {
  path: string;
  text: string;
}

interface CommonSpec {
  /** Primary environment variable name (the contract name). */
  env: string;
  /** Alias environment variables, accepted when the primary is unset. */
  aliases?: readonly string[];
  /** Dotted key in the YAML file. */
  yaml: string;
  /**
   * Set only in the YAML file (a structure too large for a variable): no environment variable
   * or flag reads it, and it is named by its YAML key wherever it is shown. `env` is then only
   * its name inside the program.
   */
  yamlOnly?: boolean;
  /** Extra short CLI flags besides the one derived from `env`. */
  flags?: readonly string[];
  default?: string;
  /** For a setting without a fixed default: what it is computed from, as shown in docs. */
  derivedDefault?: string;
  /** Never echoed: masked in `check-config` output and in error messages. */
  secret?: boolean;
  /**
   * Taken over by a running proxy when the --config file is reloaded (SIGHUP, CONFIG_WATCH);
   * any other setting keeps its value until a restart.
   */
  reloadable?: boolean;
  /** A sample value, shown commented out in `configs/config.example.yaml` and in error hints. */
  example?: string;
  /** A URL whose password part (only) is masked wherever the value is shown. */
  maskUrlPassword?: boolean;
  /**
   * Other settings that replace this one when one of them has a value (PROXY_TARGET_URL replaces
   * the target host and port): this one's check is skipped then, and `check-config` says it is
   * ignored.
   */
  ignoredWhenSet?: readonly string[];
  doc: string;
}

/** What only some kinds declare. */
interface KindExtras {
  string: object;
  file: {
    /** Larger files are refused: a setting names a small file, never a device or a log. */
    maxBytes: number;
    /** The fix named when the file cannot be read: `cannot be read (ENOENT); <fix>`. */
    unreadableFix: string;
  };
  int: NumberRange;
  seconds: NumberRange;
  number: NumberRange;
  bool: object;
  list: object;
  enum: {
    /** The accepted values (matched case-insensitively). */
    values: readonly string[];
  };
  url: {
    /** The accepted protocols, e.g. `['http:', 'https:']`. */
    protocols: readonly string[];
  };
  json: object;
  command: object;
}

interface NumberRange {
  /** Inclusive bounds. */
  min: number;
  max: number;
}

/** A table entry of kind `K`, with the fields that kind allows. */
export type SpecOfKind<K extends SettingKind> = CommonSpec &
  KindExtras[K] & {
    kind: K;
    /**
     * What is wrong with a value beyond its kind (a path rule, a URL scheme, a minimum
     * length...), if anything. Runs only on a value that parsed; a rule that needs another
     * setting's value is a cross-field rule (rules.ts) instead.
     */
    check?: (value: KindValues[K]) => CheckProblems;
  };

/** One entry of the settings table. */
export type SettingSpec = { [K in SettingKind]: SpecOfKind<K> }[SettingKind];

/** An entry's check, typed by the entry's kind (whether or not the entry declares one). */
export function checkOf<K extends SettingKind>(
  spec: SpecOfKind<K>,
): ((value: KindValues[K]) => CheckProblems) | undefined {
  return spec.check;
}
