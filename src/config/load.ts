import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { flagFor, SETTINGS, type SettingEnv, type SettingSpec } from './settings.js';
import { type Config, ConfigError, type ConfigProblem, type Source } from './types.js';

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

/**
 * Builds the effective configuration: CLI flags > environment > YAML file > defaults.
 * Every problem is collected before failing, so one run shows everything to fix.
 */
export function loadConfig(input: LoadInput = {}): Config {
  const problems: ConfigProblem[] = [];
  const fileValues = input.configFile
    ? readConfigFile(input.configFile, problems)
    : new Map<string, unknown>();
  const env = input.env ?? process.env;
  const raw = new Map<SettingEnv, RawValue>();

  for (const spec of SETTINGS as readonly SettingSpec[]) {
    const picked = pickRaw(spec, input.flags ?? {}, env, fileValues, input.configFile);
    if (picked) raw.set(spec.env as SettingEnv, picked);
  }
  const values = new Map<SettingEnv, unknown>();
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    const r = raw.get(spec.env as SettingEnv);
    if (!r) continue;
    const parsed = parseValue(spec, r.value);
    if ('error' in parsed)
      problems.push({ key: spec.env, value: r.value, source: r.source, message: parsed.error });
    else values.set(spec.env as SettingEnv, parsed.value);
  }
  const config = assemble(values, raw, problems);
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function readConfigFile(path: string, problems: ConfigProblem[]): Map<string, unknown> {
  const out = new Map<string, unknown>();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    problems.push({
      key: '--config',
      value: path,
      source: 'flag',
      message: `cannot read the file (${(err as NodeJS.ErrnoException).code ?? 'error'}); check the path`,
    });
    return out;
  }
  let doc: unknown;
  try {
    doc = parseYaml(text) ?? {};
  } catch (err) {
    problems.push({
      key: '--config',
      value: path,
      source: 'flag',
      message: `is not valid YAML: ${(err as Error).message.split('\n')[0]}`,
    });
    return out;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    problems.push({
      key: '--config',
      value: path,
      source: 'flag',
      message: 'must be a YAML mapping of keys',
    });
    return out;
  }
  const known = new Set((SETTINGS as readonly SettingSpec[]).map((s) => s.yaml));
  const walk = (node: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(node)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (known.has(key)) out.set(key, v);
      else if (typeof v === 'object' && v !== null && !Array.isArray(v))
        walk(v as Record<string, unknown>, key);
      else
        problems.push({
          key,
          value: String(v),
          source: `file ${path}`,
          message: 'is not a known key; see configs/config.example.yaml for every key',
        });
    }
  };
  walk(doc as Record<string, unknown>, '');
  return out;
}

function pickRaw(
  spec: SettingSpec,
  flags: Partial<Record<string, string>>,
  env: NodeJS.ProcessEnv,
  file: Map<string, unknown>,
  filePath: string | undefined,
): RawValue | undefined {
  const flag = flags[spec.env];
  if (flag !== undefined) return { value: flag, source: 'flag' };
  for (const name of [spec.env, ...(spec.aliases ?? [])]) {
    const v = env[name];
    if (v !== undefined && v !== '') return { value: v, source: name === spec.env ? 'env' : `env ${name}` };
  }
  if (file.has(spec.yaml)) {
    const v = file.get(spec.yaml);
    const value = Array.isArray(v) ? v.map(String).join(',') : v === null ? '' : String(v);
    return { value, source: `file ${filePath}` };
  }
  if (spec.default !== undefined) return { value: spec.default, source: 'default' };
  return undefined;
}

type Parsed = { value: unknown } | { error: string };

function parseValue(spec: SettingSpec, value: string): Parsed {
  const v = value.trim();
  switch (spec.kind) {
    case 'string':
    case 'path':
      return { value: v };
    case 'int':
    case 'number':
    case 'seconds': {
      const n = Number(v);
      const wantInt = spec.kind === 'int';
      const what = wantInt ? 'an integer' : spec.kind === 'seconds' ? 'a number of seconds' : 'a number';
      const range = `${what} from ${spec.min} to ${spec.max}`;
      if (v === '' || !Number.isFinite(n) || (wantInt && !Number.isInteger(n)))
        return { error: `must be ${range}` };
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max))
        return { error: `must be ${range}` };
      return { value: n };
    }
    case 'bool': {
      const s = v.toLowerCase();
      if (['true', '1', 'yes', 'on'].includes(s)) return { value: true };
      if (['false', '0', 'no', 'off'].includes(s)) return { value: false };
      return { error: 'must be true or false' };
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
      let url: URL;
      try {
        url = new URL(v);
      } catch {
        return { error: `must be an absolute URL such as ${spec.protocols?.[0] ?? 'https:'}//host:port` };
      }
      if (spec.protocols && !spec.protocols.includes(url.protocol))
        return { error: `must use ${spec.protocols.map((p) => p.replace(':', '')).join(' or ')}` };
      if (url.username || url.password) return { error: 'must not contain credentials' };
      if (url.hash) return { error: 'must not contain a #fragment' };
      return { value: url };
    }
  }
}

function get<T>(values: Map<SettingEnv, unknown>, key: SettingEnv): T {
  return values.get(key) as T;
}

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
      'must be an origin only (scheme://host[:port]) without a path or query; it is the issuer',
    );
  }
  publicUrl = new URL(publicUrl.origin);

  const allowedOrigins: string[] = [];
  for (const o of get<string[]>(values, 'ALLOWED_ORIGINS') ?? []) {
    try {
      const u = new URL(o);
      if (u.origin === 'null' || (u.pathname !== '/' && u.pathname !== '') || u.search) throw new Error();
      allowedOrigins.push(u.origin);
    } catch {
      problem('ALLOWED_ORIGINS', `"${o}" is not an origin; write entries as scheme://host[:port]`);
    }
  }

  const trustedProxies = get<string[]>(values, 'TRUSTED_PROXIES') ?? [];
  for (const entry of trustedProxies) {
    if (!isAddressOrCidr(entry))
      problem('TRUSTED_PROXIES', `"${entry}" is not an IP address or CIDR such as 127.0.0.1 or 10.0.0.0/8`);
  }

  let target = get<URL | undefined>(values, 'PROXY_TARGET_URL');
  if (!target) {
    const host = get<string>(values, 'PROXY_TARGET_HOST') ?? 'localhost';
    const targetPort = get<number>(values, 'PROXY_TARGET_PORT') ?? 3000;
    try {
      target = new URL(
        `http://${host.includes(':') && !host.startsWith('[') ? `[${host}]` : host}:${targetPort}`,
      );
    } catch {
      problem('PROXY_TARGET_HOST', 'is not a valid host name or address');
      target = new URL('http://localhost:3000');
    }
  } else if (target.search) {
    problem('PROXY_TARGET_URL', 'must not contain a query string');
  }

  let ca: string | undefined;
  const caFile = get<string | undefined>(values, 'PROXY_CA_FILE');
  if (caFile) {
    try {
      ca = readFileSync(caFile, 'utf8');
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) {
        problem('PROXY_CA_FILE', 'does not contain a PEM certificate (-----BEGIN CERTIFICATE-----)');
      }
    } catch (err) {
      problem(
        'PROXY_CA_FILE',
        `cannot be read (${(err as NodeJS.ErrnoException).code}); give a readable PEM file`,
      );
    }
  }

  const mcpPath = get<string>(values, 'MCP_PATH');
  if (!isCleanPath(mcpPath) || (mcpPath.length > 1 && mcpPath.endsWith('/'))) {
    problem(
      'MCP_PATH',
      'must be a path such as /mcp: starting with /, no trailing /, no query, dot segments or %',
    );
  }
  const metricsPath = get<string>(values, 'METRICS_PATH');
  if (!isCleanPath(metricsPath)) problem('METRICS_PATH', 'must be a path starting with / such as /metrics');

  const authMode = get<'oidc' | 'bypass'>(values, 'AUTH_MODE');
  if (authMode === 'oidc') {
    for (const key of ['OIDC_DISCOVERY_URL', 'OIDC_CLIENT_ID'] as const) {
      if (!raw.has(key))
        problems.push({
          key,
          value: '',
          source: 'default',
          message: `is required when AUTH_MODE=oidc; set it (or AUTH_MODE=bypass for local development without login)`,
        });
    }
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
        discoveryUrl: get<URL | undefined>(values, 'OIDC_DISCOVERY_URL'),
        clientId: get<string | undefined>(values, 'OIDC_CLIENT_ID'),
        clientSecret: get<string | undefined>(values, 'OIDC_CLIENT_SECRET'),
      },
    },
    metrics: { enabled: get<boolean>(values, 'METRICS_ENABLED'), path: metricsPath },
    log: { level: get<Config['log']['level']>(values, 'LOG_LEVEL') },
    sources: Object.fromEntries([...raw].map(([k, r]) => [k, r.source])),
  };
}

function isCleanPath(p: string | undefined): boolean {
  return (
    typeof p === 'string' &&
    p.startsWith('/') &&
    !/[?#%\\\s]/.test(p) &&
    !p.includes('//') &&
    !p.split('/').some((s) => s === '.' || s === '..')
  );
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

/** Every setting's current value as text, secrets masked: what `check-config` prints. */
export function describeConfig(input: LoadInput): Array<{ key: string; value: string; source: Source }> {
  const fileValues = input.configFile ? readConfigFile(input.configFile, []) : new Map<string, unknown>();
  const env = input.env ?? process.env;
  return (SETTINGS as readonly SettingSpec[]).map((spec) => {
    const r = pickRaw(spec, input.flags ?? {}, env, fileValues, input.configFile);
    const value = r === undefined ? '' : spec.secret && r.value ? '********' : r.value;
    return { key: spec.env, value, source: r?.source ?? 'unset' };
  });
}

export { flagFor };
