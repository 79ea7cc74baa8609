import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadConfig, settingValues } from '../../src/config/load.js';
import {
  ConfigReloader,
  compareSettings,
  describeChanges,
  RELOADABLE_SETTINGS,
  type ReloadTrigger,
  takeReloadable,
  valuesAfterReload,
} from '../../src/config/reload.js';
import { SETTINGS, type SettingEnv } from '../../src/config/settings.js';
import type { Config } from '../../src/config/types.js';
import { captureLogs } from '../helpers/log-capture.js';
import { waitFor } from '../helpers/servers.js';
import { makeTestPki, type TestPki } from '../helpers/tls.js';

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-reload-'));
let pki: TestPki | undefined;
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  pki?.cleanup();
});

const BASE = { AUTH_MODE: 'bypass', SERVER_HOST: '127.0.0.1', SERVER_PORT: '8080' };

/** A valid value for every setting that differs from its value in BASE (or its default). */
function alternatives(): Record<SettingEnv, string> {
  pki ??= makeTestPki();
  const redisCa = join(dir, 'redis-ca.pem');
  writeFileSync(redisCa, pki.ca);
  return {
    SERVER_HOST: '127.0.0.2',
    SERVER_PORT: '9090',
    PUBLIC_URL: 'https://mcp.example.com',
    ALLOWED_ORIGINS: 'https://app.example.com',
    TRUSTED_PROXIES: '10.0.0.0/8',
    SHUTDOWN_TIMEOUT: '3',
    SERVER_WORKERS: '2',
    PROXY_TARGET_HOST: 'backend.internal',
    PROXY_TARGET_PORT: '4000',
    PROXY_TARGET_URL: 'https://backend.example.com/api',
    PROXY_CA_FILE: pki.caFile,
    MCP_PATH: '/api/mcp',
    MCP_MAX_BODY_BYTES: '1048576',
    PROXY_CONNECT_TIMEOUT: '2',
    PROXY_HEADERS_TIMEOUT: '60',
    PROXY_IDLE_TIMEOUT: '60',
    PROXY_RETRIES: '0',
    CIRCUIT_BREAKER_THRESHOLD: '9',
    CIRCUIT_BREAKER_RESET_TIMEOUT: '7',
    SSE_KEEPALIVE_INTERVAL: '5',
    SECURITY_HEADERS_ON_PROXIED: 'false',
    CONTENT_SECURITY_POLICY: "default-src 'none'",
    AUTH_MODE: 'oidc',
    OIDC_DISCOVERY_URL: 'https://idp.example.com/.well-known/openid-configuration',
    OIDC_CLIENT_ID: 'proxy',
    OIDC_CLIENT_SECRET: 'a-client-secret',
    OIDC_REDIRECT_URL: 'https://mcp.example.com/oauth/callback',
    OIDC_SCOPES: 'openid email',
    OIDC_PROVIDER: 'keycloak',
    OIDC_AUDIENCE: 'https://api.example.com',
    OIDC_GROUPS_CLAIM: 'roles',
    GITHUB_URL: 'https://github.example.com',
    GITHUB_API_URL: 'https://github.example.com/api/v3',
    MICROSOFT_GRAPH_URL: 'https://graph.microsoft.us',
    ALLOWED_EMAILS: 'alice@example.com',
    ALLOWED_DOMAINS: 'example.org',
    ALLOWED_GROUPS: 'mcp-users',
    IDENTITY_HEADER_USER: 'X-User',
    IDENTITY_HEADER_EMAIL: 'X-Email',
    IDENTITY_HEADER_GROUPS: 'X-Groups',
    FORWARD_ACCESS_TOKEN: 'true',
    FORWARD_ID_TOKEN: 'true',
    MCP_DCR_ENABLED: 'false',
    MCP_CLIENTS: '[{"client_id": "claude", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"]}]',
    REFRESH_REUSE_GRACE: '5',
    MCP_ACCESS: '{"default": "deny", "rules": [{"tools": ["search"], "allow": {}}]}',
    AUTH_RATE_LIMIT_PER_MINUTE: '7',
    RATE_LIMIT_PER_MINUTE: '100',
    SESSION_STORE: 'redis',
    SESSION_COOKIE_SECURE: 'true',
    SESSION_SECRET: 'a-session-secret-of-at-least-32-characters',
    SESSION_IDLE_TIMEOUT: '120',
    SESSION_MAX_AGE: '7200',
    REDIS_URL: 'redis://redis.internal:6379',
    REDIS_KEY_PREFIX: 'team-b:',
    SIGNING_KEY_ROTATION_DAYS: '7',
    REDIS_CA_FILE: redisCa,
    METRICS_ENABLED: 'false',
    METRICS_PATH: '/prometheus',
    LOG_LEVEL: 'warn',
    TRACING_ENABLED: 'true',
    TRACING_ENDPOINT: 'http://collector:4318',
    TRACING_SAMPLE_RATE: '0.5',
    ADMIN_ENABLED: 'true',
    ADMIN_TOKEN: 'an-admin-token-of-at-least-32-characters',
    ADMIN_GROUPS: 'mcp-admins',
    ADMIN_LISTEN: '127.0.0.1:9191',
    ADMIN_PUBLIC_URL: 'https://mcp.example.com:9443',
    CONFIG_WATCH: 'true',
    PROXY_TARGET_COMMAND: 'npx -y @modelcontextprotocol/server-memory',
    STDIO_ISOLATION: 'user',
    STDIO_ENV: 'GITHUB_TOKEN',
    STDIO_MAX_PROCESSES: '5',
    STDIO_IDLE_TIMEOUT: '60',
    SERVERS: JSON.stringify([
      {
        name: 'files',
        path: '/files/mcp',
        command: ['npx', '-y', '@modelcontextprotocol/server-filesystem'],
      },
      { name: 'search', path: '/search/mcp', url: 'http://127.0.0.1:3001/mcp' },
    ]),
  };
}

let files = 0;

/** Loads `values` as a proxy started with them would: `servers` (YAML only) from a file, the rest from the environment. */
function load(values: Record<string, string>): Config {
  const { SERVERS: servers, ...env } = values;
  if (servers === undefined) return loadConfig({ env });
  const configFile = join(dir, `servers-${++files}.yaml`);
  writeFileSync(configFile, `servers: ${JSON.stringify(servers)}\n`);
  return loadConfig({ env, configFile });
}

/** The config without its sources, as comparable JSON. */
function shape(config: Config): unknown {
  return JSON.parse(JSON.stringify({ ...config, sources: undefined }));
}

function pick(keys: Iterable<SettingEnv>): Record<string, string> {
  const all = alternatives();
  return Object.fromEntries([...keys].map((k) => [k, all[k]]));
}

const ALL = SETTINGS.map((s) => s.env);
const RESTART_ONLY = ALL.filter((k) => !RELOADABLE_SETTINGS.has(k));
/**
 * The reloadable settings in groups that can be set together: each way of naming the target
 * (URL, command, servers:) excludes the others.
 */
const URL_TARGET: SettingEnv[] = ['PROXY_TARGET_URL', 'PROXY_TARGET_HOST', 'PROXY_TARGET_PORT'];
const ALONE_WITH_SERVERS: SettingEnv[] = [...URL_TARGET, 'PROXY_TARGET_COMMAND', 'MCP_ACCESS'];
const RELOADABLE_GROUPS: Record<string, SettingEnv[]> = {
  'a target URL': ALL.filter(
    (k) => RELOADABLE_SETTINGS.has(k) && k !== 'PROXY_TARGET_COMMAND' && k !== 'SERVERS',
  ),
  'a target command': ALL.filter(
    (k) => RELOADABLE_SETTINGS.has(k) && !URL_TARGET.includes(k) && k !== 'SERVERS',
  ),
  'servers:': ALL.filter((k) => RELOADABLE_SETTINGS.has(k) && !ALONE_WITH_SERVERS.includes(k)),
};

describe('which settings reload', () => {
  it('has an alternative value for every setting (a new setting must decide whether it reloads)', () => {
    expect(Object.keys(alternatives()).sort()).toEqual([...ALL].sort());
  });

  it('reloads the allow-lists, log level, rate limits, target and header settings', () => {
    for (const key of [
      'ALLOWED_EMAILS',
      'ALLOWED_DOMAINS',
      'ALLOWED_GROUPS',
      'MCP_ACCESS',
      'MCP_MAX_BODY_BYTES',
      'LOG_LEVEL',
      'AUTH_RATE_LIMIT_PER_MINUTE',
      'RATE_LIMIT_PER_MINUTE',
      'PROXY_TARGET_URL',
      'PROXY_TARGET_HOST',
      'PROXY_TARGET_PORT',
      'IDENTITY_HEADER_USER',
      'FORWARD_ACCESS_TOKEN',
      'CONTENT_SECURITY_POLICY',
      'ALLOWED_ORIGINS',
      'TRUSTED_PROXIES',
      'SERVERS',
      'PROXY_TARGET_COMMAND',
      'STDIO_ISOLATION',
      'STDIO_MAX_PROCESSES',
      'STDIO_IDLE_TIMEOUT',
    ] as const)
      expect(RELOADABLE_SETTINGS.has(key), key).toBe(true);
    for (const key of [
      'SERVER_PORT',
      'SERVER_HOST',
      'SERVER_WORKERS',
      'PUBLIC_URL',
      'MCP_PATH',
      'AUTH_MODE',
      'OIDC_CLIENT_ID',
      'SESSION_STORE',
      'SESSION_SECRET',
      'REDIS_URL',
      'REDIS_KEY_PREFIX',
      'SIGNING_KEY_ROTATION_DAYS',
      'ADMIN_TOKEN',
      'ADMIN_LISTEN',
      'ADMIN_PUBLIC_URL',
      'TRACING_ENABLED',
      'STDIO_ENV',
    ] as const)
      expect(RELOADABLE_SETTINGS.has(key), key).toBe(false);
  });

  it('groups every reloadable setting with the ones it can be set with', () => {
    expect(new Set(Object.values(RELOADABLE_GROUPS).flat())).toEqual(RELOADABLE_SETTINGS);
  });

  for (const [target, group] of Object.entries(RELOADABLE_GROUPS)) {
    it(`takes over every reloadable setting, and only those: with ${target}`, () => {
      const running = load(BASE);
      const next = load({ ...BASE, ...pick(group) });
      const changes = compareSettings(settingValues(running), settingValues(next));
      expect(changes).toEqual({ applied: group, needsRestart: [] });
      expect(shape(running)).not.toEqual(shape(next));
      takeReloadable(running, next);
      expect(shape(running)).toEqual(shape(next));
      expect(running.sources[group[0] as SettingEnv]).toBe('env');
    });
  }

  it('takes over servers: and back, keeping the one server at the running MCP_PATH', () => {
    const running = load({ ...BASE, MCP_PATH: '/api/mcp' });
    let values = settingValues(running);
    const reload = (next: Config) => {
      const changes = compareSettings(values, settingValues(next));
      takeReloadable(running, next);
      values = valuesAfterReload(values, settingValues(next), changes.applied);
      return changes;
    };

    expect(reload(load({ ...BASE, ...pick(['SERVERS']) }))).toEqual({
      applied: ['SERVERS'],
      needsRestart: ['MCP_PATH'],
    });
    expect(running.singleTarget).toBe(false);
    expect(running.servers.map((s) => [s.name, s.path])).toEqual([
      ['files', '/files/mcp'],
      ['search', '/search/mcp'],
    ]);

    const changes = reload(load({ ...BASE, ...pick(['PROXY_TARGET_COMMAND']) }));
    expect(changes).toEqual({ applied: ['PROXY_TARGET_COMMAND', 'SERVERS'], needsRestart: ['MCP_PATH'] });
    expect(describeChanges(changes)).toBe(
      'configuration reloaded: applied PROXY_TARGET_COMMAND, servers; changed but needs a restart: MCP_PATH',
    );
    expect(running.singleTarget).toBe(true);
    expect(running.servers).toEqual([
      {
        name: 'default',
        path: '/api/mcp',
        target: {
          kind: 'command',
          command: ['npx', '-y', '@modelcontextprotocol/server-memory'],
          isolation: 'session',
        },
        policy: { emails: [], domains: [], groups: [] },
        access: undefined,
      },
    ]);
  });

  it("keeps the one server's rules the same object as config.mcp.access after a reload", () => {
    const running = load(BASE);
    takeReloadable(running, load({ ...BASE, ...pick(['MCP_ACCESS']) }));
    expect(running.mcp.access).toBeDefined();
    expect(running.servers[0]?.access).toBe(running.mcp.access);
  });

  it('keeps every restart-only setting at its running value, and names it', () => {
    const running = load(BASE);
    const before = shape(running);
    const next = load({ ...BASE, ...pick(RESTART_ONLY) });
    const changes = compareSettings(settingValues(running), settingValues(next));
    expect(changes).toEqual({ applied: [], needsRestart: RESTART_ONLY });
    takeReloadable(running, next);
    expect(shape(running)).toEqual(before);
  });

  it('sees a CA file replaced at the same path', () => {
    pki ??= makeTestPki();
    const path = join(dir, 'rotating-ca.pem');
    writeFileSync(path, pki.ca);
    const running = loadConfig({ env: { ...BASE, PROXY_CA_FILE: path } });
    writeFileSync(path, `${pki.ca}\n${pki.cert}`);
    const next = loadConfig({ env: { ...BASE, PROXY_CA_FILE: path } });
    expect(compareSettings(settingValues(running), settingValues(next)).applied).toEqual(['PROXY_CA_FILE']);
  });

  it('keeps reporting a restart-only change until the restart', () => {
    const running = settingValues(loadConfig({ env: BASE }));
    const next = settingValues(loadConfig({ env: { ...BASE, SERVER_PORT: '9091', LOG_LEVEL: 'warn' } }));
    const changes = compareSettings(running, next);
    expect(changes).toEqual({ applied: ['LOG_LEVEL'], needsRestart: ['SERVER_PORT'] });
    const after = valuesAfterReload(running, next, changes.applied);
    expect(compareSettings(after, next)).toEqual({ applied: [], needsRestart: ['SERVER_PORT'] });
  });

  it('describes a reload by setting names only', () => {
    expect(describeChanges({ applied: [], needsRestart: [] })).toBe(
      'configuration reloaded: nothing changed',
    );
    expect(describeChanges({ applied: ['ALLOWED_EMAILS', 'LOG_LEVEL'], needsRestart: ['SERVER_PORT'] })).toBe(
      'configuration reloaded: applied ALLOWED_EMAILS, LOG_LEVEL; changed but needs a restart: SERVER_PORT',
    );
  });
});

describe('ConfigReloader', () => {
  const reloaders: ConfigReloader[] = [];
  afterEach(() => {
    for (const r of reloaders.splice(0)) r.close();
  });

  function start(configFile: string | undefined, env: Record<string, string> = BASE) {
    const log = captureLogs();
    const applied: Array<{ next: Config; trigger: ReloadTrigger }> = [];
    let rejected = 0;
    const reloader = new ConfigReloader({
      input: { env, configFile },
      logger: log.logger,
      apply: (next, trigger) => applied.push({ next, trigger }),
      onRejected: () => {
        rejected++;
      },
      debounceMs: 20,
    });
    reloaders.push(reloader);
    return {
      reloader,
      get lines() {
        return log.lines();
      },
      applied,
      rejected: () => rejected,
    };
  }

  it('without --config there is nothing to reload, and it says so', () => {
    const r = start(undefined);
    r.reloader.reload('SIGHUP');
    expect(r.applied).toEqual([]);
    expect(r.lines.at(-1)?.msg).toBe(
      'nothing to reload: no --config file was given (environment and flags are read only at start)',
    );
  });

  it('refuses an invalid file with every problem in one line, secrets masked, and applies nothing', () => {
    const file = join(dir, 'invalid.yaml');
    writeFileSync(
      file,
      'server:\n  port: abc\nproxy:\n  target_url: not a url\noidc:\n  client_secret: "s3cret\\tvalue"\n',
    );
    const r = start(file, { AUTH_MODE: 'bypass' });
    r.reloader.reload('SIGHUP');
    expect(r.applied).toEqual([]);
    expect(r.rejected()).toBe(1);
    const line = r.lines.at(-1) as { level: string; msg: string; problems: string[] };
    expect(line.level).toBe('error');
    expect(line.msg).toMatch(/^configuration reload refused, keeping the current configuration: /);
    expect(line.msg).toContain(`SERVER_PORT="abc" (from file ${file}): must be an integer from 0 to 65535`);
    expect(line.msg).toContain('PROXY_TARGET_URL="not a url"');
    expect(line.msg).toContain('OIDC_CLIENT_SECRET="********"');
    expect(line.problems).toHaveLength(3);
    expect(JSON.stringify(r.lines)).not.toContain('s3cret');
  });

  it('reads the file again, keeping the environment it started with', () => {
    const file = join(dir, 'env-wins.yaml');
    writeFileSync(file, 'log:\n  level: error\npolicy:\n  allowed_emails: [bob@example.com]\n');
    const r = start(file, { ...BASE, LOG_LEVEL: 'debug' });
    r.reloader.reload('SIGHUP');
    expect(r.applied).toHaveLength(1);
    const { next } = r.applied[0] as { next: Config };
    expect(next.log.level).toBe('debug');
    expect(next.auth.policy.emails).toEqual(['bob@example.com']);
  });

  it('takes over new MCP access rules, and refuses invalid ones naming every problem, keeping the old', () => {
    const file = join(dir, 'mcp-access.yaml');
    const rules = (group: string): string =>
      `mcp_access:\n  default: deny\n  rules:\n    - tools: ["admin_*"]\n      allow: { groups: [${group}] }\n`;
    const env = {
      AUTH_MODE: 'oidc',
      OIDC_DISCOVERY_URL: 'https://idp.example.com/',
      OIDC_CLIENT_ID: 'proxy',
    };
    writeFileSync(file, rules('admins'));
    const live = loadConfig({ env, configFile: file });
    const r = start(file, env);
    const ops = { groups: ['ops'] };
    const mayReset = (): boolean | undefined => live.mcp.access?.decide('tool', 'admin_reset', ops).allowed;
    expect(mayReset()).toBe(false);

    writeFileSync(file, rules('ops'));
    r.reloader.reload('SIGHUP');
    const accepted = r.applied.at(-1)?.next as Config;
    expect(compareSettings(settingValues(live), settingValues(accepted)).applied).toEqual(['MCP_ACCESS']);
    takeReloadable(live, accepted);
    expect(mayReset()).toBe(true);

    writeFileSync(
      file,
      `${rules('ops')}    - tools: []\n    - prompts: ["*"]\n      allow: { groups: [ops] }\n      scope: mcp\n`,
    );
    r.reloader.reload('SIGHUP');
    expect(r.applied).toHaveLength(1);
    expect(r.rejected()).toBe(1);
    const line = r.lines.at(-1) as { level: string; msg: string; problems: string[] };
    expect(line.level).toBe('error');
    expect(line.problems).toEqual([
      `MCP_ACCESS (from file ${file}): mcp_access.rules[1].tools is an empty list, which reads as nobody or as anything; give at least one name pattern, or remove the key`,
      `MCP_ACCESS (from file ${file}): mcp_access.rules[2].scope is mcp, the base scope every token has: it would require nothing; name a step-up scope such as mcp:admin, or remove scope`,
    ]);
    // The running rules are the last accepted ones.
    expect(mayReset()).toBe(true);
    expect(live.mcp.access?.decide('prompt', 'summary', ops)).toEqual({
      allowed: false,
      reason: 'denied',
      rule: 'default',
    });
  });

  it('with CONFIG_WATCH reloads on a change, also when an editor replaces the file', async () => {
    const sub = mkdtempSync(join(dir, 'watched-'));
    const file = join(sub, 'config.yaml');
    // The file keeps CONFIG_WATCH on: a reload takes it over like any reloadable setting.
    const text = (email: string): string => `config:\n  watch: true\npolicy:\n  allowed_emails: [${email}]\n`;
    writeFileSync(file, text('a@example.com'));
    const r = start(file);
    r.reloader.watch(true);
    expect(r.lines.at(-1)?.msg).toBe('watching the configuration file for changes (CONFIG_WATCH)');

    writeFileSync(file, text('b@example.com'));
    await waitFor(() => r.applied.length === 1, 5000, 'a reload after an in-place write');
    expect(r.applied[0]?.trigger).toBe('file change');
    expect(r.applied[0]?.next.auth.policy.emails).toEqual(['b@example.com']);

    // Rename-on-save: the new text arrives as a new file under the same name.
    const temp = join(sub, '.config.yaml.swp');
    writeFileSync(temp, text('c@example.com'));
    renameSync(temp, file);
    await waitFor(() => r.applied.length === 2, 5000, 'a reload after a rename-on-save');
    expect(r.applied[1]?.next.auth.policy.emails).toEqual(['c@example.com']);

    // And once more, in place: the watch on the file itself followed the replacement.
    writeFileSync(file, text('d@example.com'));
    await waitFor(() => r.applied.length === 3, 5000, 'a reload after the replaced file changed');
    expect(r.applied[2]?.next.auth.policy.emails).toEqual(['d@example.com']);

    // The same text again is no reload, and neither is another file in the directory.
    const unchanged = (): number =>
      r.lines.filter((l) => l.msg === 'configuration file unchanged: not reloaded').length;
    writeFileSync(file, text('d@example.com'));
    await waitFor(() => unchanged() === 1, 5000, 'the unchanged file to be seen');
    writeFileSync(join(sub, 'unrelated.txt'), 'x');
    writeFileSync(file, text('d@example.com'));
    await waitFor(() => unchanged() === 2, 5000, 'the unchanged file to be seen again');
    expect(r.applied).toHaveLength(3);

    // An invalid edit is refused.
    writeFileSync(file, `${text('e@example.com')}proxy:\n  target_url: not a url\n`);
    await waitFor(() => r.rejected() === 1, 5000, 'the refusal of an invalid edit');
    expect(r.applied).toHaveLength(3);
  });
});
