import { X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { validateRedirectUri } from '../auth/facade/redirect-uris.js';
import { policyConfigProblems } from '../auth/policy/policy.js';
import { MAX_CA_FILE_BYTES, MAX_CONFIG_FILE_BYTES, readSmallTextFile } from './read-file.js';
import { flagFor, SETTINGS, type SettingEnv, type SettingSpec } from './settings.js';
import {
  type Config,
  ConfigError,
  type ConfigProblem,
  type PreRegisteredClientConfig,
  type ProviderName,
  type Source,
} from './types.js';

interface RawValue {
  value: string;
  source: Source;
}

export interface LoadInput {
  /** Flag values keyed by setting env name (already matched by the CLI parser). */
  flags?: Partial<Record<string, string>>;
  env?: NodeJS.ProcessEnv;
  /** Path of the YAML file (`--config`). */
  configFile?: string;
}

/** What a secret's value is replaced by wherever it would be shown. */
export const SECRET_MASK = '********';

/**
 * Paths the proxy answers itself (README, "What the proxy does with a request"); the MCP endpoint and
 * the metrics endpoint may not sit on or under them, or requests would never reach them.
 */
export const RESERVED_PATHS = [
  '/health',
  '/login',
  '/callback',
  '/logout',
  '/authorize',
  '/token',
  '/register',
  '/revoke',
  '/jwks.json',
  '/.well-known',
  '/admin',
] as const;

const SPECS = SETTINGS as readonly SettingSpec[];
const SECRET_KEYS = new Set(SPECS.filter((s) => s.secret).flatMap((s) => [s.env, s.yaml]));
const JSON_KEYS = new Set(SPECS.filter((s) => s.kind === 'json').map((s) => s.yaml));
const URL_PASSWORD_KEYS = new Set(SPECS.filter((s) => s.maskUrlPassword).flatMap((s) => [s.env, s.yaml]));
/** URL settings, which refuse credentials: a refused value's `user:password@` is still never shown. */
const URL_KEYS = new Set(SPECS.filter((s) => s.kind === 'url').flatMap((s) => [s.env, s.yaml]));
const YAML_KEYS = new Set(SPECS.map((s) => s.yaml));
/** `proxy`, `proxy.circuit_breaker`, ...: mapping keys that only group settings. */
const YAML_SECTIONS = new Set(
  SPECS.flatMap((s) => {
    const parts = s.yaml.split('.');
    return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('.'));
  }),
);

/**
 * Builds the effective configuration: CLI flags > environment > YAML file > defaults.
 * Every problem is collected before failing, so one run shows everything to fix.
 */
export function loadConfig(input: LoadInput = {}): Config {
  const problems: ConfigProblem[] = [];
  const fileValues = input.configFile
    ? readConfigFile(input.configFile, problems)
    : new Map<string, string>();
  // A file that cannot be read or parsed may hold the settings reported missing below
  // (OIDC_DISCOVERY_URL is required...): naming them would only hide the cause.
  const fileFailed = problems.length > 0;
  const env = input.env ?? process.env;
  const raw = new Map<SettingEnv, RawValue>();

  for (const spec of SPECS) {
    const picked = pickRaw(spec, input.flags ?? {}, env, fileValues, input.configFile);
    if (picked) raw.set(spec.env as SettingEnv, picked);
  }
  const values = new Map<SettingEnv, unknown>();
  for (const spec of SPECS) {
    const r = raw.get(spec.env as SettingEnv);
    if (!r) continue;
    const parsed = parseValue(spec, r.value);
    if ('error' in parsed)
      problems.push({ key: spec.env, value: r.value, source: r.source, message: parsed.error });
    else values.set(spec.env as SettingEnv, parsed.value);
  }
  const config = assemble(values, raw, problems);
  const reported = fileFailed ? problems.filter((p) => p.source !== 'unset') : problems;
  if (reported.length > 0) throw new ConfigError(reported.map(maskSecret));
  SETTING_VALUES.set(config, comparableValues(values, config));
  return config;
}

/** Every set setting's effective value, comparable as text: what a reload compares. */
export type SettingValues = ReadonlyMap<SettingEnv, string>;

const SETTING_VALUES = new WeakMap<Config, SettingValues>();

function comparableValues(values: Map<SettingEnv, unknown>, config: Config): SettingValues {
  // URLs serialise as their href; lists and structures as JSON.
  const out = new Map([...values].map(([key, value]) => [key, JSON.stringify(value)] as const));
  // A CA file replaced at the same path is a change too (a rotated certificate).
  if (values.has('PROXY_CA_FILE'))
    out.set('PROXY_CA_FILE', JSON.stringify([values.get('PROXY_CA_FILE'), config.target.ca]));
  if (values.has('REDIS_CA_FILE'))
    out.set('REDIS_CA_FILE', JSON.stringify([values.get('REDIS_CA_FILE'), config.session.redisCa]));
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

/** A secret's value never reaches an error message, a log line or the terminal. */
function maskSecret(problem: ConfigProblem): ConfigProblem {
  if (SECRET_KEYS.has(problem.key) && problem.value) return { ...problem, value: SECRET_MASK };
  if (URL_PASSWORD_KEYS.has(problem.key)) return { ...problem, value: maskUrlPassword(problem.value) };
  if (URL_KEYS.has(problem.key)) return { ...problem, value: maskUrlCredentials(problem.value) };
  return problem;
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
        out.set(key, typeof v === 'string' ? v : JSON.stringify(v));
      } else if (YAML_KEYS.has(key)) {
        if (isMapping || (Array.isArray(v) && v.some((e) => typeof e !== 'string'))) {
          problems.push({
            key,
            value: '',
            source,
            message: 'must be a single value (or a list of values), not a nested mapping',
          });
        } else if (Array.isArray(v)) out.set(key, v.map((e) => String(e).trim()).join(','));
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
  const byEnv = SPECS.find((s) => s.env === upper || s.aliases?.includes(upper));
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

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length] as number;
}

function pickRaw(
  spec: SettingSpec,
  flags: Partial<Record<string, string>>,
  env: NodeJS.ProcessEnv,
  file: Map<string, string>,
  filePath: string | undefined,
): RawValue | undefined {
  const flag = flags[spec.env];
  if (flag !== undefined) return { value: flag, source: 'flag' };
  for (const name of [spec.env, ...(spec.aliases ?? [])]) {
    const v = env[name];
    if (v !== undefined && v !== '') return { value: v, source: name === spec.env ? 'env' : `env ${name}` };
  }
  const v = file.get(spec.yaml);
  if (v !== undefined) return { value: v, source: `file ${filePath}` };
  if (spec.default !== undefined) return { value: spec.default, source: 'default' };
  return undefined;
}

type Parsed = { value: unknown } | { error: string };

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 };

function parseValue(spec: SettingSpec, value: string): Parsed {
  const v = value.trim();
  switch (spec.kind) {
    case 'string':
    case 'path':
      // A newline in a header value (CSP) or a pasted secret is an accident that would only show
      // later, as a failed request; say so now.
      if (hasControlChar(v))
        return { error: 'contains a control character (newline, tab, ...); set it again without one' };
      return { value: v };
    case 'int':
    case 'number':
    case 'seconds': {
      const wantInt = spec.kind === 'int';
      const what = wantInt ? 'an integer' : spec.kind === 'seconds' ? 'a number of seconds' : 'a number';
      const range = `must be ${what} from ${spec.min} to ${spec.max}`;
      let n = Number.NaN;
      // Seconds also take a Go-style unit suffix (500ms, 25s, 5m, 1h), as the seed's users write them.
      const unit = spec.kind === 'seconds' ? /^(.*?)(ms|s|m|h)$/.exec(v) : null;
      if (unit && DECIMAL.test(unit[1] as string))
        n = Number(unit[1]) * (UNIT_SECONDS[unit[2] as string] as number);
      else if (DECIMAL.test(v)) n = Number(v);
      if (!Number.isFinite(n) || (wantInt && !Number.isInteger(n)))
        return { error: `${range}${spec.kind === 'seconds' ? ' (e.g. 30, 1.5 or 500ms)' : ''}` };
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max))
        return { error: range };
      return { value: n };
    }
    case 'bool': {
      const s = v.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(s)) return { value: true };
      if (['false', '0', 'no', 'off'].includes(s)) return { value: false };
      return { error: 'must be true or false' };
    }
    case 'json':
      try {
        return { value: JSON.parse(v) };
      } catch {
        return { error: 'must be JSON (in a YAML file: a list of mappings)' };
      }
    case 'list':
      return {
        value: v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      };
    case 'enum': {
      const s = v.toLowerCase();
      if (spec.values?.includes(s)) return { value: s };
      return { error: `must be one of: ${spec.values?.join(', ')}` };
    }
    case 'url': {
      const protocols = (spec.protocols ?? ['https:']).map((p) => p.replace(':', '')).join(' or ');
      const example = spec.example ? `, e.g. ${spec.example}` : '';
      let url: URL;
      try {
        url = new URL(v);
      } catch {
        return { error: `must be an absolute ${protocols} URL${example}` };
      }
      if (spec.protocols && !spec.protocols.includes(url.protocol))
        return { error: `must be an absolute ${protocols} URL${example}` };
      if (url.username || url.password)
        return { error: 'must not contain credentials (user:password@); remove them' };
      if (url.hash) return { error: 'must not contain a #fragment; remove it' };
      return { value: url };
    }
  }
}

function hasControlChar(v: string): boolean {
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

function get<T>(values: Map<SettingEnv, unknown>, key: SettingEnv): T {
  return values.get(key) as T;
}

/** How to set a setting, for "is required" messages. */
function howToSet(key: SettingEnv): string {
  const spec = SPECS.find((s) => s.env === key) as SettingSpec;
  return `set the environment variable ${spec.env}, the YAML key ${spec.yaml} or the flag ${flagFor(spec)}`;
}

/** A DNS name; `_` is allowed because container service names use it. */
const HOST_NAME =
  /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

function assemble(
  values: Map<SettingEnv, unknown>,
  raw: Map<SettingEnv, RawValue>,
  problems: ConfigProblem[],
): Config {
  const problem = (key: SettingEnv, message: string): void => {
    const r = raw.get(key);
    problems.push({ key, value: r?.value ?? '', source: r?.source ?? 'default', message });
  };
  const port = get<number>(values, 'SERVER_PORT') ?? 8080;

  let publicUrl = get<URL | undefined>(values, 'PUBLIC_URL') ?? new URL(`http://localhost:${port}`);
  if (publicUrl.search || (publicUrl.pathname !== '/' && publicUrl.pathname !== '')) {
    problem(
      'PUBLIC_URL',
      `must be an origin only (scheme://host[:port]) without a path or query: it is the OAuth issuer; use ${publicUrl.origin} (MCP_PATH sets the MCP endpoint's path)`,
    );
  }
  publicUrl = new URL(publicUrl.origin);

  const allowedOrigins: string[] = [];
  for (const o of get<string[]>(values, 'ALLOWED_ORIGINS') ?? []) {
    let origin: string | undefined;
    try {
      const u = new URL(o);
      const pathOk = u.pathname === '/' || u.pathname === '';
      if (['http:', 'https:'].includes(u.protocol) && pathOk && !u.search && !u.hash && !u.username)
        origin = u.origin;
    } catch {}
    if (origin) {
      if (!allowedOrigins.includes(origin)) allowedOrigins.push(origin);
    } else {
      problem(
        'ALLOWED_ORIGINS',
        `"${o}" is not an origin; write each entry as scheme://host[:port], e.g. https://app.example.com`,
      );
    }
  }

  const trustedProxies = get<string[]>(values, 'TRUSTED_PROXIES') ?? [];
  for (const entry of trustedProxies) {
    if (!isAddressOrCidr(entry))
      problem(
        'TRUSTED_PROXIES',
        `"${entry}" is not an IP address or CIDR; write entries such as 127.0.0.1, ::1, 10.0.0.0/8 or fd00::/8`,
      );
  }

  let target = get<URL | undefined>(values, 'PROXY_TARGET_URL');
  if (!target) {
    const host = get<string>(values, 'PROXY_TARGET_HOST') ?? 'localhost';
    const targetPort = get<number>(values, 'PROXY_TARGET_PORT') ?? 3000;
    const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
    let hostPart = 'localhost';
    if (host.includes('://')) {
      problem(
        'PROXY_TARGET_HOST',
        'is a URL, not a host name; give only the host (e.g. localhost) or set PROXY_TARGET_URL to the full URL',
      );
    } else if (isIP(bare) === 6) hostPart = `[${bare}]`;
    else if (isIP(bare) === 4 || HOST_NAME.test(bare)) hostPart = bare;
    else {
      problem(
        'PROXY_TARGET_HOST',
        'is not a host name or IP address; give e.g. localhost, mcp.internal or 10.0.0.5 (the port goes in PROXY_TARGET_PORT)',
      );
    }
    target = new URL(`http://${hostPart}:${targetPort}`);
  } else if (target.search) {
    problem('PROXY_TARGET_URL', 'must not contain a query string; remove the ?... part');
  }

  let ca: string | undefined;
  const caFile = get<string | undefined>(values, 'PROXY_CA_FILE');
  if (caFile) {
    try {
      ca = readSmallTextFile(caFile, MAX_CA_FILE_BYTES);
      const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(ca);
      if (!first) {
        problem(
          'PROXY_CA_FILE',
          'contains no PEM certificate (-----BEGIN CERTIFICATE-----); give a PEM file of CA certificates',
        );
      } else {
        try {
          new X509Certificate(first[0]);
        } catch {
          problem(
            'PROXY_CA_FILE',
            'holds a PEM block that is not a valid certificate; give a PEM file of CA certificates',
          );
        }
      }
    } catch (err) {
      problem(
        'PROXY_CA_FILE',
        `cannot be read (${(err as NodeJS.ErrnoException).code}); give the path of a readable PEM file`,
      );
    }
  }

  const mcpPath = get<string>(values, 'MCP_PATH');
  const metricsPath = get<string>(values, 'METRICS_PATH');
  const metricsEnabled = get<boolean>(values, 'METRICS_ENABLED');
  if (values.has('MCP_PATH')) {
    if (!isCleanPath(mcpPath) || (mcpPath.length > 1 && mcpPath.endsWith('/'))) {
      problem(
        'MCP_PATH',
        'must be a path such as /mcp: starting with /, no trailing /, no query, dot segments, spaces or %',
      );
    } else {
      const clash = reservedClash(mcpPath);
      if (clash)
        problem('MCP_PATH', `clashes with ${clash}, which the proxy answers itself; choose e.g. /mcp`);
      else if (metricsEnabled && values.has('METRICS_PATH') && overlaps(mcpPath, metricsPath))
        problem('MCP_PATH', `overlaps METRICS_PATH (${metricsPath}); give them different paths`);
    }
  }
  if (values.has('METRICS_PATH')) {
    if (!isCleanPath(metricsPath) || metricsPath === '/') {
      problem('METRICS_PATH', 'must be a path starting with / such as /metrics: no query, dot segments or %');
    } else {
      const clash = reservedClash(metricsPath);
      if (clash)
        problem(
          'METRICS_PATH',
          `clashes with ${clash}, which the proxy answers itself; choose e.g. /metrics`,
        );
    }
  }

  const authMode = get<'oidc' | 'bypass'>(values, 'AUTH_MODE');
  const provider = get<ProviderName>(values, 'OIDC_PROVIDER') ?? 'generic';
  if (authMode === 'oidc') {
    // GitHub has no discovery document: its endpoints come from GITHUB_URL.
    const required =
      provider === 'github'
        ? (['OIDC_CLIENT_ID'] as const)
        : (['OIDC_DISCOVERY_URL', 'OIDC_CLIENT_ID'] as const);
    for (const key of required) {
      if (!raw.has(key))
        problems.push({
          key,
          value: '',
          source: 'unset',
          message: `is required when AUTH_MODE=oidc; ${howToSet(key)} (or use AUTH_MODE=bypass for local development without login)`,
        });
    }
  }

  const sessionSecret = get<string | undefined>(values, 'SESSION_SECRET') || undefined;
  if (sessionSecret !== undefined && sessionSecret.length < 32) {
    problem('SESSION_SECRET', 'must be at least 32 characters; generate one with `openssl rand -base64 48`');
  }
  const sessionStore = get<'memory' | 'redis'>(values, 'SESSION_STORE');
  const redisUrl = get<string>(values, 'REDIS_URL');
  if (!/^(rediss?|redis\+sentinel|redis\+cluster):\/\/[^/\s]/.test(redisUrl ?? '')) {
    problem(
      'REDIS_URL',
      'must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL, e.g. redis://localhost:6379',
    );
  }
  let redisCa: string | undefined;
  const redisCaFile = get<string | undefined>(values, 'REDIS_CA_FILE');
  if (redisCaFile) {
    try {
      redisCa = readSmallTextFile(redisCaFile, MAX_CA_FILE_BYTES);
    } catch (err) {
      problem(
        'REDIS_CA_FILE',
        `cannot be read (${(err as NodeJS.ErrnoException).code}); give a readable PEM file`,
      );
    }
  }
  const cookieSecure = get<boolean>(values, 'SESSION_COOKIE_SECURE');
  if (
    cookieSecure &&
    publicUrl.protocol !== 'https:' &&
    !['localhost', '127.0.0.1', '[::1]'].includes(publicUrl.hostname)
  ) {
    problem(
      'SESSION_COOKIE_SECURE',
      'is true but PUBLIC_URL is not https: browsers would drop the cookie; set PUBLIC_URL to the https URL',
    );
  }
  for (const key of ['IDENTITY_HEADER_USER', 'IDENTITY_HEADER_EMAIL', 'IDENTITY_HEADER_GROUPS'] as const) {
    const name = get<string>(values, key);
    if (name !== undefined && !/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name)) {
      problem(key, 'must be an HTTP header name such as X-Forwarded-User');
    }
  }
  const scopes = (get<string[]>(values, 'OIDC_SCOPES') ?? []).flatMap((s) => s.split(/\s+/)).filter(Boolean);
  if (authMode === 'oidc' && provider !== 'github' && !scopes.includes('openid')) {
    problem('OIDC_SCOPES', 'must include openid for an OpenID Connect provider, e.g. "openid email profile"');
  }
  const graphUrl = get<URL | undefined>(values, 'MICROSOFT_GRAPH_URL');
  if (graphUrl?.protocol === 'http:' && !['localhost', '127.0.0.1', '[::1]'].includes(graphUrl.hostname)) {
    problem(
      'MICROSOFT_GRAPH_URL',
      "must be https: it is sent the users' access tokens (plain http only on loopback, for a local test server)",
    );
  }

  const policy = {
    emails: get<string[]>(values, 'ALLOWED_EMAILS') ?? [],
    domains: get<string[]>(values, 'ALLOWED_DOMAINS') ?? [],
    groups: get<string[]>(values, 'ALLOWED_GROUPS') ?? [],
  };
  for (const line of policyConfigProblems(policy)) {
    const colon = line.indexOf(': ');
    problem(line.slice(0, colon) as SettingEnv, line.slice(colon + 2));
  }

  const mcpClients = preRegisteredClients(get<unknown>(values, 'MCP_CLIENTS'), (message) =>
    problems.push({
      key: 'MCP_CLIENTS',
      value: '',
      source: raw.get('MCP_CLIENTS')?.source ?? 'default',
      message,
    }),
  );

  const adminEnabled = get<boolean>(values, 'ADMIN_ENABLED');
  const adminToken = get<string | undefined>(values, 'ADMIN_TOKEN') || undefined;
  const adminGroups = get<string[]>(values, 'ADMIN_GROUPS') ?? [];
  if (adminToken !== undefined && adminToken.length < 32) {
    problem('ADMIN_TOKEN', 'must be at least 32 characters; generate one with `openssl rand -base64 48`');
  }
  if (adminEnabled && adminToken === undefined && adminGroups.length === 0) {
    problem(
      'ADMIN_ENABLED',
      'is true but neither ADMIN_TOKEN nor ADMIN_GROUPS is set: nobody could use the admin API; set ADMIN_TOKEN (openssl rand -base64 48) or ADMIN_GROUPS',
    );
  }
  if (adminEnabled && adminToken === undefined && authMode === 'bypass') {
    problem(
      'ADMIN_GROUPS',
      'needs AUTH_MODE=oidc (with AUTH_MODE=bypass nobody logs in); set ADMIN_TOKEN instead',
    );
  }

  const ms = (key: SettingEnv): number => Math.round((get<number>(values, key) ?? 0) * 1000);
  return {
    server: {
      host: get<string>(values, 'SERVER_HOST'),
      port,
      publicUrl,
      allowedOrigins,
      trustedProxies,
      shutdownTimeoutMs: ms('SHUTDOWN_TIMEOUT'),
    },
    target: {
      url: target,
      ca,
      connectTimeoutMs: ms('PROXY_CONNECT_TIMEOUT'),
      headersTimeoutMs: ms('PROXY_HEADERS_TIMEOUT'),
      idleTimeoutMs: ms('PROXY_IDLE_TIMEOUT'),
      retries: get<number>(values, 'PROXY_RETRIES'),
      breakerThreshold: get<number>(values, 'CIRCUIT_BREAKER_THRESHOLD'),
      breakerResetMs: ms('CIRCUIT_BREAKER_RESET_TIMEOUT'),
      sseKeepaliveMs: ms('SSE_KEEPALIVE_INTERVAL'),
    },
    mcpPath,
    security: {
      headersOnProxied: get<boolean>(values, 'SECURITY_HEADERS_ON_PROXIED'),
      contentSecurityPolicy: get<string>(values, 'CONTENT_SECURITY_POLICY'),
    },
    auth: {
      mode: authMode,
      oidc: {
        provider,
        discoveryUrl: get<URL | undefined>(values, 'OIDC_DISCOVERY_URL'),
        clientId: get<string | undefined>(values, 'OIDC_CLIENT_ID'),
        clientSecret: get<string | undefined>(values, 'OIDC_CLIENT_SECRET'),
        redirectUrl: get<URL | undefined>(values, 'OIDC_REDIRECT_URL') ?? new URL('/callback', publicUrl),
        scopes,
        audience: get<string | undefined>(values, 'OIDC_AUDIENCE') || undefined,
        groupsClaims: get<string[]>(values, 'OIDC_GROUPS_CLAIM') ?? [],
        githubUrl: get<URL>(values, 'GITHUB_URL'),
        githubApiUrl: get<URL>(values, 'GITHUB_API_URL'),
        microsoftGraphUrl: get<URL>(values, 'MICROSOFT_GRAPH_URL'),
      },
      policy,
      identityHeaders: {
        user: get<string>(values, 'IDENTITY_HEADER_USER'),
        email: get<string>(values, 'IDENTITY_HEADER_EMAIL'),
        groups: get<string>(values, 'IDENTITY_HEADER_GROUPS'),
        forwardAccessToken: get<boolean>(values, 'FORWARD_ACCESS_TOKEN'),
        forwardIdToken: get<boolean>(values, 'FORWARD_ID_TOKEN'),
      },
      authRateLimitPerMinute: get<number>(values, 'AUTH_RATE_LIMIT_PER_MINUTE'),
      rateLimitPerMinute: get<number>(values, 'RATE_LIMIT_PER_MINUTE'),
      mcpClients: { dynamicRegistration: get<boolean>(values, 'MCP_DCR_ENABLED'), preRegistered: mcpClients },
    },
    session: {
      store: sessionStore,
      cookieSecure,
      secret: sessionSecret,
      idleTimeoutMs: ms('SESSION_IDLE_TIMEOUT'),
      maxAgeMs: ms('SESSION_MAX_AGE'),
      redisUrl,
      redisCa,
    },
    metrics: { enabled: metricsEnabled, path: metricsPath },
    log: { level: get<Config['log']['level']>(values, 'LOG_LEVEL') },
    tracing: {
      enabled: get<boolean>(values, 'TRACING_ENABLED'),
      endpoint: get<URL | undefined>(values, 'TRACING_ENDPOINT'),
      sampleRate: get<number>(values, 'TRACING_SAMPLE_RATE'),
    },
    admin: { enabled: adminEnabled, token: adminToken, groups: adminGroups },
    watchConfig: get<boolean>(values, 'CONFIG_WATCH'),
    sources: Object.fromEntries([...raw].map(([k, r]) => [k, r.source])),
  };
}

/** MCP_CLIENTS, checked entry by entry (the secrets never appear in a message). */
function preRegisteredClients(
  value: unknown,
  problem: (message: string) => void,
): PreRegisteredClientConfig[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problem('must be a list of clients: [{"client_id": ..., "redirect_uris": [...]}]');
    return [];
  }
  const clients: PreRegisteredClientConfig[] = [];
  value.forEach((entry: unknown, i) => {
    const checked = checkPreRegisteredClient(entry, `entry ${i + 1}`);
    if (typeof checked === 'string') problem(checked);
    else clients.push(checked);
  });
  return clients;
}

/** One MCP_CLIENTS entry, or the problem with it (never quoting its secret). */
function checkPreRegisteredClient(entry: unknown, where: string): PreRegisteredClientConfig | string {
  const e = entry as Record<string, unknown> | null;
  if (typeof e !== 'object' || e === null)
    return `${where} must be a mapping with client_id and redirect_uris`;
  const { client_id: id, client_secret: secret, redirect_uris: uris, name } = e;
  if (typeof id !== 'string' || !/^[\x21-\x7e]{1,200}$/.test(id))
    return `${where}: client_id must be a non-empty string`;
  if (secret !== undefined && (typeof secret !== 'string' || secret.length < 16)) {
    return `${where} (${id}): client_secret must be a string of at least 16 characters, or left out for a public client`;
  }
  if (!Array.isArray(uris) || uris.length === 0 || uris.some((u) => typeof u !== 'string')) {
    return `${where} (${id}): redirect_uris must be a non-empty list of URLs`;
  }
  if (name !== undefined && typeof name !== 'string') return `${where} (${id}): name must be a string`;
  for (const uri of uris as string[]) {
    const verdict = validateRedirectUri(uri);
    if (!verdict.ok) return `${where} (${id}): redirect URI ${uri} ${verdict.reason}`;
  }
  return {
    clientId: id,
    clientSecret: secret as string | undefined,
    redirectUris: uris as string[],
    name: name as string | undefined,
  };
}

/** `redis://user:pass@host` -> `redis://user:********@host`. */
export function maskUrlPassword(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:@/]*:)[^@/]*@/i, `$1${SECRET_MASK}@`);
}

/**
 * `scheme://user:password@host` -> `scheme://********@host`: the whole userinfo, since a token
 * is often given as the user name alone (`https://TOKEN@host`). Up to the last `@` before the
 * path, as URL parsers read it.
 */
export function maskUrlCredentials(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/?#]*@/i, `$1${SECRET_MASK}@`);
}

function isCleanPath(p: string | undefined): p is string {
  return (
    typeof p === 'string' &&
    p.startsWith('/') &&
    !/[?#%\\\s]/.test(p) &&
    !p.includes('//') &&
    !p.split('/').some((s) => s === '.' || s === '..')
  );
}

/** `a` equals `b` or one is under the other (`/mcp` and `/mcp/x`). */
function overlaps(a: string, b: string): boolean {
  // The MCP route is `path === MCP_PATH || path under MCP_PATH/`; `/` only ever matches itself.
  const under = (x: string, y: string): boolean => x === y || (y !== '/' && x.startsWith(`${y}/`));
  return under(a, b) || under(b, a);
}

function reservedClash(path: string): string | undefined {
  return RESERVED_PATHS.find((r) => overlaps(path, r));
}

function isAddressOrCidr(entry: string): boolean {
  const [addr, bits, ...rest] = entry.split('/');
  if (rest.length > 0 || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  const n = Number(bits);
  return /^\d+$/.test(bits) && n >= 0 && n <= (family === 4 ? 32 : 128);
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
  const fileValues = input.configFile ? readConfigFile(input.configFile, []) : new Map<string, string>();
  const env = input.env ?? process.env;
  const picked = new Map(
    SPECS.map((spec) => [spec.env, pickRaw(spec, input.flags ?? {}, env, fileValues, input.configFile)]),
  );
  const targetUrlSet = picked.get('PROXY_TARGET_URL') !== undefined;
  return SPECS.map((spec) => {
    const r = picked.get(spec.env);
    if (r === undefined) {
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
    const value =
      spec.secret && r.value
        ? SECRET_MASK
        : spec.maskUrlPassword
          ? maskUrlPassword(r.value)
          : spec.kind === 'url'
            ? maskUrlCredentials(r.value)
            : r.value;
    const ignored =
      targetUrlSet && (spec.env === 'PROXY_TARGET_HOST' || spec.env === 'PROXY_TARGET_PORT')
        ? ', ignored: PROXY_TARGET_URL is set'
        : '';
    return { key: spec.env, value, source: `${r.source}${ignored}` };
  });
}

export { flagFor };
