import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import { type LoadInput, loadConfig } from '../../src/config/load.js';
import type { ParsedValues, SettingValue } from '../../src/config/parse.js';
import type { LoadedFile, SettingSpec } from '../../src/config/setting-spec.js';
import { SETTINGS } from '../../src/config/settings.js';
import { configProblems } from '../helpers/config-problems.js';

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-checks-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const pemFile = join(dir, 'ca.pem');
writeFileSync(pemFile, rootCertificates[0] as string);
const notPemFile = join(dir, 'not.pem');
writeFileSync(notPemFile, 'not a certificate');

const BYPASS = { AUTH_MODE: 'bypass' };

/** The settings whose table entry declares a check of its own. */
type CheckedSetting = Extract<(typeof SETTINGS)[number], { check: unknown }>['env'];

interface CheckCases {
  /** Values the check accepts. */
  good: string[];
  /**
   * Values it refuses, each with (the start of) its message, and the key reported when it is a
   * part of the setting (`servers[0].url`) rather than the setting itself.
   */
  bad: Array<[value: string, message: string, part?: string]>;
  /** Settings given alongside, which the cross-field rules require of this one. */
  with?: Record<string, string>;
}

let files = 0;

/** A setting given `value`: in the environment, or for a YAML-only one in a file. */
function givenAs(spec: SettingSpec, value: string, alongside: Record<string, string> = {}): LoadInput {
  if (!spec.yamlOnly) return { env: { ...BYPASS, ...alongside, [spec.env]: value } };
  const file = join(dir, `${spec.yaml}-${++files}.yaml`);
  writeFileSync(file, `${spec.yaml}: ${JSON.stringify(value)}\n`);
  return { env: BYPASS, configFile: file };
}

/** One row per setting with a check: a check added to the table without cases here fails to compile. */
const CASES: Record<CheckedSetting, CheckCases> = {
  PUBLIC_URL: {
    good: ['https://mcp.example.com', 'https://mcp.example.com/'],
    bad: [['https://mcp.example.com/mcp', 'must be an origin only (scheme://host[:port])']],
  },
  SERVER_WORKERS: {
    // More than one needs SESSION_STORE=redis: test/unit/config-workers.test.ts.
    good: ['1'],
    bad: [
      ['0', 'must be auto (one worker per CPU) or a whole number from 1 to 256'],
      ['two', 'must be auto (one worker per CPU) or a whole number from 1 to 256'],
      ['1.5', 'must be auto'],
      ['257', 'must be auto'],
    ],
  },
  ALLOWED_ORIGINS: {
    good: ['https://a.example.com, http://localhost:6274'],
    bad: [['https://a.example.com/x', '"https://a.example.com/x" is not an origin']],
  },
  TRUSTED_PROXIES: {
    good: ['127.0.0.1, ::1, 10.0.0.0/8'],
    bad: [['10.0.0.0/33', '"10.0.0.0/33" is not an IP address or CIDR']],
  },
  PROXY_TARGET_HOST: {
    good: ['mcp.internal', '10.0.0.5', '::1', '[::1]', 'mcp_server'],
    bad: [
      ['http://mcp.internal', 'is a URL, not a host name'],
      ['mcp internal', 'is not a host name or IP address'],
    ],
  },
  PROXY_TARGET_URL: {
    good: ['https://backend.example.com/api'],
    bad: [['https://backend.example.com/api?x=1', 'must not contain a query string']],
  },
  PROXY_CA_FILE: {
    good: [pemFile],
    bad: [[notPemFile, 'contains no PEM certificate']],
  },
  MCP_PATH: {
    good: ['/mcp', '/', '/api/mcp'],
    bad: [
      ['/mcp/', 'must be a path such as /mcp'],
      ['/token', 'clashes with /token, which the proxy answers itself; choose e.g. /mcp'],
    ],
  },
  MICROSOFT_GRAPH_URL: {
    good: ['https://graph.microsoft.us', 'http://localhost:9000'],
    bad: [['http://graph.internal', "must be https: it is sent the users' access tokens"]],
  },
  ALLOWED_EMAILS: {
    good: ['alice@example.com, *@example.org'],
    bad: [['alice', '"alice" is not an email address (name@domain) or *@domain.']],
  },
  ALLOWED_DOMAINS: {
    good: ['example.com, *.example.org'],
    bad: [['@example.com', '"@example.com" is not a domain']],
  },
  IDENTITY_HEADER_USER: { good: ['X-User'], bad: [['X User', 'must be an HTTP header name']] },
  IDENTITY_HEADER_EMAIL: { good: ['X-Email'], bad: [['X:Email', 'must be an HTTP header name']] },
  IDENTITY_HEADER_GROUPS: { good: ['X-Groups'], bad: [['X/Groups', 'must be an HTTP header name']] },
  MCP_CLIENTS: {
    good: ['[{"client_id": "claude", "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"]}]', '[]'],
    bad: [
      ['{"client_id": "claude"}', 'must be a list of clients'],
      ['[{"client_id": "claude"}]', 'entry 1 (claude): redirect_uris must be a non-empty list of URLs'],
    ],
  },
  MCP_ACCESS: {
    good: ['{"rules": [{"tools": ["delete_*"], "allow": {}, "scope": "mcp:admin"}]}'],
    bad: [
      ['[{"tools": ["*"]}]', 'mcp_access must be a mapping with rules'],
      [
        '{"rules": [{"tools": ["*"], "alow": {}}]}',
        'mcp_access.rules[0].alow is not a known key; did you mean allow?',
      ],
    ],
  },
  SESSION_SECRET: {
    good: ['x'.repeat(32)],
    bad: [['x'.repeat(31), 'must be at least 32 characters']],
  },
  REDIS_URL: {
    good: ['redis://localhost:6379', 'rediss://:pw@redis.example.com:6380/0', 'redis+sentinel://a:1,b:2/m'],
    bad: [
      ['http://localhost:6379', 'must be a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL'],
    ],
  },
  REDIS_KEY_PREFIX: {
    good: ['mcp-oidc-proxy:', 'team-a:mcp:', 'x'],
    bad: [
      ['caf\u00e9:', 'must be 1 to 64 printable characters without spaces'],
      ['two words:', 'must be 1 to 64 printable characters without spaces'],
      ['p'.repeat(65), 'must be 1 to 64 printable characters without spaces'],
    ],
  },
  METRICS_PATH: {
    good: ['/metrics', '/internal/metrics'],
    bad: [
      ['/', 'must be a path starting with / such as /metrics'],
      ['/admin/metrics', 'clashes with /admin, which the proxy answers itself; choose e.g. /metrics'],
    ],
  },
  ADMIN_LISTEN: {
    good: ['127.0.0.1:9090', '[::1]:0', 'admin.internal:9090'],
    bad: [
      ['9090', 'must be host:port, e.g. 127.0.0.1:9090'],
      ['127.0.0.1:70000', 'must be host:port'],
      ['http://127.0.0.1:9090', 'must be host:port'],
    ],
    with: { ADMIN_ENABLED: 'true', ADMIN_TOKEN: 'x'.repeat(32) },
  },
  ADMIN_PUBLIC_URL: {
    good: ['https://mcp.example.com:9443'],
    bad: [['https://mcp.example.com:9443/admin', 'must be an origin only (scheme://host[:port])']],
    with: { ADMIN_ENABLED: 'true', ADMIN_TOKEN: 'x'.repeat(32), ADMIN_LISTEN: '127.0.0.1:9090' },
  },
  ADMIN_TOKEN: {
    good: ['x'.repeat(32)],
    bad: [['short', 'must be at least 32 characters']],
  },
  STDIO_ENV: {
    good: ['GITHUB_TOKEN, NODE_OPTIONS, _X1'],
    bad: [
      ['GITHUB-TOKEN', '"GITHUB-TOKEN" is not an environment variable name'],
      ['ADMIN_TOKEN', "names ADMIN_TOKEN, one of the proxy's secrets"],
    ],
  },
  SERVERS: {
    good: ['[{"name": "a", "path": "/a/mcp", "url": "http://127.0.0.1:3001/mcp"}]'],
    bad: [
      ['{"name": "a"}', 'must be a list of servers', 'servers'],
      [
        '[{"name": "a", "path": "/a/mcp", "url": "ftp://x/mcp"}]',
        'must be an absolute http or https URL',
        'servers[0].url',
      ],
    ],
  },
};

const specs: readonly SettingSpec[] = SETTINGS;

describe('per-setting checks declared in the settings table', () => {
  it('has cases for exactly the settings that declare a check', () => {
    expect(Object.keys(CASES).sort()).toEqual(
      specs
        .filter((s) => s.check)
        .map((s) => s.env)
        .sort(),
    );
  });

  for (const [env, { good, bad, with: alongside }] of Object.entries(CASES)) {
    const spec = specs.find((s) => s.env === env);

    it(`${env}: accepts ${good.length} and refuses ${bad.length} values`, () => {
      const setting = spec as SettingSpec;
      for (const value of good) expect(configProblems(givenAs(setting, value, alongside)), value).toEqual([]);
      for (const [value, message, part] of bad) {
        const found = configProblems(givenAs(setting, value, alongside));
        expect(found, value).toHaveLength(1);
        expect(found[0]?.key).toBe(part ?? env);
        expect(found[0]?.message.startsWith(message), found[0]?.message).toBe(true);
        // Secrets stay masked; a structured value is not repeated (each message names the entry).
        const shown = spec?.kind === 'json' ? '' : spec?.secret ? '********' : value;
        expect(found[0]?.value).toBe(shown);
      }
    });
  }

  it('reports one problem per bad entry of a list', () => {
    const found = configProblems({ env: { ...BYPASS, TRUSTED_PROXIES: 'localhost, 10.0.0.1, 1.2.3' } });
    expect(found.map((p) => [p.key, p.message.split(' ')[0]])).toEqual([
      ['TRUSTED_PROXIES', '"localhost"'],
      ['TRUSTED_PROXIES', '"1.2.3"'],
    ]);
  });

  it('runs a check only on a value that parsed', () => {
    const found = configProblems({ env: { ...BYPASS, MCP_PATH: '/token\u0007' } });
    expect(found.map((p) => p.message)).toEqual([
      'contains a control character (newline, tab, ...); set it again without one',
    ]);
  });

  it('skips the check of a setting another one replaces (ignoredWhenSet)', () => {
    const withUrl = { ...BYPASS, PROXY_TARGET_HOST: 'not a host', PROXY_TARGET_URL: 'http://backend:3000' };
    expect(loadConfig({ env: withUrl }).target.url.href).toBe('http://backend:3000/');
    // A PROXY_TARGET_URL that does not parse replaces nothing: the host is checked too.
    const found = configProblems({ env: { ...withUrl, PROXY_TARGET_URL: 'backend:3000' } });
    expect(found.map((p) => p.key)).toEqual(['PROXY_TARGET_URL', 'PROXY_TARGET_HOST']);
  });
});

describe('file settings', () => {
  it('hold the text of the file, read when the configuration loads', () => {
    const config = loadConfig({ env: { ...BYPASS, PROXY_CA_FILE: pemFile, REDIS_CA_FILE: pemFile } });
    expect(config.target.ca).toBe(rootCertificates[0]);
    expect(config.session.redisCa).toBe(rootCertificates[0]);
  });

  it('name the fix their table entry gives when the file cannot be read', () => {
    const missing = join(dir, 'missing.pem');
    expect(configProblems({ env: { ...BYPASS, PROXY_CA_FILE: missing, REDIS_CA_FILE: dir } })).toEqual([
      {
        key: 'PROXY_CA_FILE',
        value: missing,
        source: 'env',
        message: 'cannot be read (ENOENT); give the path of a readable PEM file',
      },
      {
        key: 'REDIS_CA_FILE',
        value: dir,
        source: 'env',
        message: 'cannot be read (EISDIR); give a readable PEM file',
      },
    ]);
  });

  it('treat an empty path (a bare --proxy-ca-file=) as no file', () => {
    const config = loadConfig({ env: BYPASS, flags: { PROXY_CA_FILE: '', REDIS_CA_FILE: '' } });
    expect(config.target.ca).toBeUndefined();
    expect(config.session.redisCa).toBeUndefined();
  });
});

describe('typed setting values', () => {
  it('follow the kind of each setting in the table', () => {
    expectTypeOf<SettingValue<'AUTH_MODE'>>().toEqualTypeOf<'oidc' | 'bypass'>();
    expectTypeOf<SettingValue<'LOG_LEVEL'>>().toEqualTypeOf<'debug' | 'info' | 'warn' | 'error'>();
    expectTypeOf<SettingValue<'SERVER_PORT'>>().toEqualTypeOf<number>();
    expectTypeOf<SettingValue<'PUBLIC_URL'>>().toEqualTypeOf<URL>();
    expectTypeOf<SettingValue<'ALLOWED_GROUPS'>>().toEqualTypeOf<string[]>();
    expectTypeOf<SettingValue<'METRICS_ENABLED'>>().toEqualTypeOf<boolean>();
    expectTypeOf<SettingValue<'PROXY_CA_FILE'>>().toEqualTypeOf<LoadedFile>();
    expectTypeOf<ParsedValues['MCP_CLIENTS']>().toEqualTypeOf<unknown>();
  });

  it('type a check by the kind of its setting', () => {
    const urlSetting: SettingSpec = {
      env: 'EXAMPLE_URL',
      yaml: 'example.url',
      kind: 'url',
      protocols: ['https:'],
      doc: 'An example.',
      check: (url) => (url.search ? 'no query' : undefined),
    };
    expect(urlSetting.check?.(new URL('https://x.example.com/?q'))).toBe('no query');
    // @ts-expect-error a URL setting's check is handed a URL, not its text
    const wrong: SettingSpec = {
      env: 'EXAMPLE_URL',
      yaml: 'example.url',
      kind: 'url',
      protocols: ['https:'],
      doc: 'An example.',
      check: (text: string) => (text.includes('?') ? 'no query' : undefined),
    };
    expect(wrong.kind).toBe('url');
  });
});
