/**
 * Where setting values come from: CLI flags > environment > YAML file (`--config`) > defaults.
 * Every value is text here, as in the environment; parse.ts gives it its type.
 */
import { createRequire } from 'node:module';
import { quoteCommand } from '../stdio/command.js';
import { editDistance } from './edit-distance.js';
import { MAX_CONFIG_FILE_BYTES, readSmallTextFile } from './read-file.js';
import type { SettingSpec } from './setting-spec.js';
import { SETTING_SPECS, SETTINGS, type SettingEnv } from './settings.js';
import type { ConfigProblem, Source } from './types.js';

export interface LoadInput {
  /** Flag values keyed by setting env name (already matched by the CLI parser). */
  flags?: Partial<Record<string, string>>;
  env?: NodeJS.ProcessEnv;
  /** Path of the YAML file (`--config`). */
  configFile?: string;
}

/** A setting's text and where it came from. */
export interface RawValue {
  value: string;
  source: Source;
}

const JSON_KEYS = new Set(SETTING_SPECS.filter((s) => s.kind === 'json').map((s) => s.yaml));
/** Command settings: a YAML list of words becomes one command line that splits back into them. */
const COMMAND_KEYS = new Set(SETTING_SPECS.filter((s) => s.kind === 'command').map((s) => s.yaml));
const YAML_KEYS = new Set(SETTING_SPECS.map((s) => s.yaml));
/** `proxy`, `proxy.circuit_breaker`, ...: mapping keys that only group settings. */
const YAML_SECTIONS = new Set(
  SETTING_SPECS.flatMap((s) => {
    const parts = s.yaml.split('.');
    return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('.'));
  }),
);

/**
 * Each given setting's text, by name, in table order; a problem with the --config file (or one
 * of its keys) is added to `problems`.
 */
export function readRawValues(input: LoadInput, problems: ConfigProblem[]): Map<SettingEnv, RawValue> {
  const file = input.configFile ? readConfigFile(input.configFile, problems) : new Map<string, string>();
  const env = input.env ?? process.env;
  const raw = new Map<SettingEnv, RawValue>();
  for (const spec of SETTINGS) {
    const picked = pickRaw(spec, input.flags ?? {}, env, file, input.configFile);
    if (picked) raw.set(spec.env, picked);
  }
  return raw;
}

/** The YAML parser, loaded only when a config file is given: a few MB less for everyone else. */
function parseYaml(text: string, options: { schema: 'failsafe' }): unknown {
  const yaml = createRequire(import.meta.url)('yaml') as typeof import('yaml');
  return yaml.parse(text, options);
}

/** YAML scalars that mean "not set here" (the key falls through to the default). */
function isUnsetScalar(v: string): boolean {
  return v === '' || v === '~' || v.toLowerCase() === 'null';
}

/** What an unknown key must look like to be named in its problem (setting names are far shorter). */
const SETTING_NAME_LIKE = /^[A-Za-z][A-Za-z0-9_-]{0,39}$/;

/** Reads the YAML file into `dotted.key -> text`; every scalar stays text, as in the environment. */
function readConfigFile(path: string, problems: ConfigProblem[]): Map<string, string> {
  const out = new Map<string, string>();
  const fileProblem = (message: string): void => {
    problems.push({ key: '--config', value: path, source: 'flag', message });
  };
  let text: string;
  try {
    text = readSmallTextFile(path, MAX_CONFIG_FILE_BYTES);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    fileProblem(
      code === 'ENOENT'
        ? 'file not found; check the path (configs/config.example.yaml is a starting point)'
        : code === 'ENOTREG' || code === 'EISDIR'
          ? 'is not a regular file (a FIFO, device or directory); give the path of the YAML file'
          : code === 'EFBIG'
            ? `is larger than ${MAX_CONFIG_FILE_BYTES / 1024 / 1024} MiB, far more than any configuration; give the path of the YAML file`
            : `cannot read the file (${code}); check the path and its permissions`,
    );
    return out;
  }
  let doc: unknown;
  try {
    // The failsafe schema keeps every scalar as the text written (no 0123 -> 123, no 1e3 -> 1000,
    // no secret turned into a number), so a file value is validated exactly like an env value.
    doc = parseYaml(text, { schema: 'failsafe' }) ?? {};
  } catch (err) {
    // The first line names the line and column; later lines quote the file (maybe a secret).
    fileProblem(`is not valid YAML: ${(err as Error).message.split('\n')[0]}; fix the syntax there`);
    return out;
  }
  if (typeof doc === 'string' && isUnsetScalar(doc.trim())) return out;
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    fileProblem('must be a YAML mapping of keys such as "server:" / "  port: 8080"');
    return out;
  }
  const source = `file ${path}`;
  const walk = (node: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(node)) {
      const key = prefix ? `${prefix}.${k}` : k;
      const isMapping = typeof v === 'object' && v !== null && !Array.isArray(v);
      if (JSON_KEYS.has(key)) {
        // Structured settings keep their YAML structure; they are checked like the env's JSON.
        if (typeof v !== 'string') out.set(key, JSON.stringify(v));
        else if (!isUnsetScalar(v.trim())) out.set(key, v);
      } else if (YAML_KEYS.has(key)) {
        if (isMapping || (Array.isArray(v) && v.some((e) => typeof e !== 'string'))) {
          problems.push({
            key,
            value: '',
            source,
            message: 'must be a single value (or a list of values), not a nested mapping',
          });
        } else if (Array.isArray(v) && COMMAND_KEYS.has(key)) out.set(key, quoteCommand(v));
        else if (Array.isArray(v)) out.set(key, v.map((e) => String(e).trim()).join(','));
        else if (!isUnsetScalar(String(v).trim())) out.set(key, String(v));
      } else if (YAML_SECTIONS.has(key)) {
        if (isMapping) walk(v as Record<string, unknown>, key);
        // `oidc:` with every key under it commented out is an empty section, not a mistake.
        else if (!(typeof v === 'string' && isUnsetScalar(v.trim()))) {
          const children = [...YAML_KEYS]
            .filter((y) => y.startsWith(`${key}.`))
            .map((y) => y.slice(key.length + 1));
          problems.push({
            key,
            value: '',
            source,
            message: `is a section, not a value; put its keys under it (${children.join(', ')})`,
          });
        }
      } else if (!SETTING_NAME_LIKE.test(k)) {
        // Nor is a key that is no name at all: a file that is not a configuration (a path
        // swapped for /etc/shadow parses as keys like `root:<password hash>:...`) is not quoted.
        problems.push({
          key: prefix ? `${prefix}.<key>` : '<key>',
          value: '',
          source,
          message:
            'is not a known key, and not shown: it does not look like a setting name (configs/config.example.yaml lists every key)',
        });
      } else {
        // The value is not echoed: a misspelt key may well hold a secret.
        const guess = suggestYamlKey(key);
        problems.push({
          key,
          value: '',
          source,
          message: `is not a known key${guess ? `; did you mean ${guess}?` : ''} (configs/config.example.yaml lists every key)`,
        });
      }
    }
  };
  walk(doc as Record<string, unknown>, '');
  return out;
}

/** The known YAML key a misspelt or env-style key most likely meant. */
function suggestYamlKey(key: string): string | undefined {
  const upper = key.toUpperCase();
  const byEnv = SETTING_SPECS.find((s) => s.env === upper || s.aliases?.includes(upper));
  if (byEnv) return byEnv.yaml;
  const normal = key.toLowerCase().replaceAll('-', '_');
  if (YAML_KEYS.has(normal)) return normal;
  let best: { key: string; distance: number } | undefined;
  for (const known of YAML_KEYS) {
    const distance = editDistance(normal, known);
    if (distance <= 3 && (!best || distance < best.distance)) best = { key: known, distance };
  }
  if (best) return best.key;
  const leaf = normal.split('.').at(-1);
  const byLeaf = [...YAML_KEYS].filter((y) => y.split('.').at(-1) === leaf);
  return byLeaf.length === 1 ? byLeaf[0] : undefined;
}

/** A setting's text from the highest layer that has it; an empty environment variable is unset. */
function pickRaw(
  spec: SettingSpec,
  flags: Partial<Record<string, string>>,
  env: NodeJS.ProcessEnv,
  file: Map<string, string>,
  filePath: string | undefined,
): RawValue | undefined {
  const flag = spec.yamlOnly ? undefined : flags[spec.env];
  if (flag !== undefined) return { value: flag, source: 'flag' };
  for (const name of spec.yamlOnly ? [] : [spec.env, ...(spec.aliases ?? [])]) {
    const v = env[name];
    if (v !== undefined && v !== '') return { value: v, source: name === spec.env ? 'env' : `env ${name}` };
  }
  const v = file.get(spec.yaml);
  if (v !== undefined) return { value: v, source: `file ${filePath}` };
  if (spec.default !== undefined) return { value: spec.default, source: 'default' };
  return undefined;
}
