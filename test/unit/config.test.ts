import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { helpText, parseArgs, UsageError } from '../../src/cli/args.js';
import { describeConfig, type LoadInput, loadConfig } from '../../src/config/load.js';
import { SETTINGS, type SettingSpec, settingName } from '../../src/config/settings.js';
import { ConfigError, type ConfigProblem } from '../../src/config/types.js';

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let fileCount = 0;
function tempFile(text: string, ext = 'yaml'): string {
  const path = join(dir, `file-${++fileCount}.${ext}`);
  writeFileSync(path, text);
  return path;
}

/** Bypass mode so tests of other settings need no OIDC values. */
const BYPASS = { AUTH_MODE: 'bypass' };

function failure(input: LoadInput): ConfigError {
  try {
    loadConfig(input);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected loadConfig to throw a ConfigError');
}

function problems(input: LoadInput): ConfigProblem[] {
  return failure(input).problems;
}

describe('precedence: flags > env > YAML file > defaults', () => {
  it('uses the defaults when nothing is set, and says so in sources', () => {
    const c = loadConfig({ env: BYPASS });
    expect(c.server.host).toBe('0.0.0.0');
    expect(c.server.port).toBe(8080);
    expect(c.server.publicUrl.href).toBe('http://localhost:8080/');
    expect(c.target.url.href).toBe('http://localhost:3000/');
    expect(c.mcpPath).toBe('/mcp');
    expect(c.target.sseKeepaliveMs).toBe(25_000);
    expect(c.target.connectTimeoutMs).toBe(5_000);
    expect(c.metrics).toEqual({ enabled: true, path: '/metrics' });
    expect(c.log.level).toBe('info');
    expect(c.sources.SERVER_PORT).toBe('default');
    expect(c.sources.AUTH_MODE).toBe('env');
    // No default and not set: absent from sources.
    expect(c.sources.PUBLIC_URL).toBeUndefined();
    expect(c.sources.OIDC_CLIENT_ID).toBeUndefined();
  });

  it('takes each setting from the highest layer that has it', () => {
    const file = tempFile(
      [
        'server:',
        '  port: 9001',
        '  host: 127.0.0.2',
        'proxy:',
        '  mcp_path: /from-file',
        'log:',
        '  level: error',
      ].join('\n'),
    );
    const c = loadConfig({
      configFile: file,
      env: { ...BYPASS, SERVER_PORT: '9002', LOG_LEVEL: 'warn' },
      flags: { LOG_LEVEL: 'debug' },
    });
    expect(c.log.level).toBe('debug');
    expect(c.server.port).toBe(9002);
    expect(c.server.host).toBe('127.0.0.2');
    expect(c.mcpPath).toBe('/from-file');
    expect(c.metrics.path).toBe('/metrics');
    expect(c.sources).toMatchObject({
      LOG_LEVEL: 'flag',
      SERVER_PORT: 'env',
      SERVER_HOST: `file ${file}`,
      MCP_PATH: `file ${file}`,
      METRICS_PATH: 'default',
    });
  });

  it('lets a flag win over env and file for the same setting', () => {
    const file = tempFile('server:\n  port: 9001\n');
    const c = loadConfig({
      configFile: file,
      env: { ...BYPASS, SERVER_PORT: '9002' },
      flags: { SERVER_PORT: '9003' },
    });
    expect(c.server.port).toBe(9003);
    expect(c.sources.SERVER_PORT).toBe('flag');
  });

  it('treats an empty environment variable as unset', () => {
    const file = tempFile('server:\n  port: 9001\n');
    const c = loadConfig({ configFile: file, env: { ...BYPASS, SERVER_PORT: '' } });
    expect(c.server.port).toBe(9001);
  });

  it('treats an empty YAML value or an empty section as unset', () => {
    const file = tempFile(
      [
        'server:',
        '  port:',
        '  host: ~',
        'oidc:',
        '  # client_id: commented out',
        'metrics:',
        '  path: null',
      ].join('\n'),
    );
    const c = loadConfig({ configFile: file, env: BYPASS });
    expect(c.server.port).toBe(8080);
    expect(c.server.host).toBe('0.0.0.0');
    expect(c.metrics.path).toBe('/metrics');
    expect(c.sources.SERVER_PORT).toBe('default');
  });

  it('keeps YAML scalars as the text written (no number or boolean coercion)', () => {
    const file = tempFile(
      ['oidc:', '  client_id: 0012345', '  client_secret: 1e3', 'metrics:', '  enabled: no'].join('\n'),
    );
    const c = loadConfig({ configFile: file, env: BYPASS });
    expect(c.auth.oidc.clientId).toBe('0012345');
    expect(c.auth.oidc.clientSecret).toBe('1e3');
    expect(c.metrics.enabled).toBe(false);
  });

  it('reads lists from YAML lists and from comma strings', () => {
    const asList = tempFile('server:\n  allowed_origins: [https://a.example.com, "https://b.example.com"]\n');
    const asString = tempFile('server:\n  allowed_origins: https://a.example.com, https://b.example.com\n');
    const want = ['https://a.example.com', 'https://b.example.com'];
    expect(loadConfig({ configFile: asList, env: BYPASS }).server.allowedOrigins).toEqual(want);
    expect(loadConfig({ configFile: asString, env: BYPASS }).server.allowedOrigins).toEqual(want);
  });

  it('reads seconds as numbers or with a ms/s/m/h unit', () => {
    const c = loadConfig({
      env: {
        ...BYPASS,
        SSE_KEEPALIVE_INTERVAL: '1.5',
        PROXY_CONNECT_TIMEOUT: '500ms',
        PROXY_IDLE_TIMEOUT: '2m',
        SHUTDOWN_TIMEOUT: '0',
      },
    });
    expect(c.target.sseKeepaliveMs).toBe(1500);
    expect(c.target.connectTimeoutMs).toBe(500);
    expect(c.target.idleTimeoutMs).toBe(120_000);
    expect(c.server.shutdownTimeoutMs).toBe(0);
  });
});

describe('proxy target', () => {
  it('accepts the MCP_TARGET_HOST / MCP_TARGET_PORT aliases', () => {
    const c = loadConfig({ env: { ...BYPASS, MCP_TARGET_HOST: 'mcp.internal', MCP_TARGET_PORT: '4000' } });
    expect(c.target.url.href).toBe('http://mcp.internal:4000/');
    expect(c.sources.PROXY_TARGET_HOST).toBe('env MCP_TARGET_HOST');
    expect(c.sources.PROXY_TARGET_PORT).toBe('env MCP_TARGET_PORT');
  });

  it('prefers PROXY_TARGET_* over the aliases', () => {
    const c = loadConfig({
      env: {
        ...BYPASS,
        MCP_TARGET_HOST: 'alias.internal',
        MCP_TARGET_PORT: '4000',
        PROXY_TARGET_HOST: 'primary.internal',
        PROXY_TARGET_PORT: '5000',
      },
    });
    expect(c.target.url.href).toBe('http://primary.internal:5000/');
    expect(c.sources.PROXY_TARGET_HOST).toBe('env');
  });

  it('lets PROXY_TARGET_URL override host/port and keeps its path prefix', () => {
    const c = loadConfig({
      env: {
        ...BYPASS,
        PROXY_TARGET_HOST: 'ignored.internal',
        PROXY_TARGET_PORT: '5000',
        PROXY_TARGET_URL: 'https://backend.example.com:8443/api/v1',
      },
    });
    expect(c.target.url.origin).toBe('https://backend.example.com:8443');
    expect(c.target.url.pathname).toBe('/api/v1');
  });

  it('brackets an IPv6 target host', () => {
    const c = loadConfig({ env: { ...BYPASS, PROXY_TARGET_HOST: '::1', PROXY_TARGET_PORT: '3001' } });
    expect(c.target.url.href).toBe('http://[::1]:3001/');
  });

  it('rejects a URL or junk given as the target host, a query in the URL, and other schemes', () => {
    const found = problems({
      env: { ...BYPASS, PROXY_TARGET_HOST: 'http://localhost', PROXY_TARGET_URL: '' },
    });
    expect(found).toHaveLength(1);
    expect(found[0]?.key).toBe('PROXY_TARGET_HOST');
    expect(found[0]?.message).toMatch(/PROXY_TARGET_URL/);

    expect(problems({ env: { ...BYPASS, PROXY_TARGET_HOST: 'bad host!' } })[0]?.message).toMatch(
      /host name or IP address; give e\.g\. localhost/,
    );
    expect(problems({ env: { ...BYPASS, PROXY_TARGET_URL: 'http://b:1/x?y=1' } })[0]?.message).toMatch(
      /query string/,
    );
    expect(problems({ env: { ...BYPASS, PROXY_TARGET_URL: 'ftp://b:1' } })[0]?.message).toMatch(
      /absolute http or https URL, e\.g\. http:\/\/localhost:3000\/api/,
    );
  });
});

describe('validation: every problem at once, each naming key, value and fix', () => {
  it('reports four bad values as four lines', () => {
    const err = failure({
      env: {
        ...BYPASS,
        SERVER_PORT: 'abc',
        LOG_LEVEL: 'loud',
        METRICS_ENABLED: 'maybe',
        PROXY_RETRIES: '99',
      },
    });
    const lines = err.message.split('\n').filter((l) => l.startsWith('  - '));
    expect(lines).toHaveLength(4);
    expect(err.message).toMatch(/^invalid configuration \(4 problems\):/);
    expect(lines).toEqual([
      '  - SERVER_PORT="abc" (from env): must be an integer from 0 to 65535',
      '  - PROXY_RETRIES="99" (from env): must be an integer from 0 to 10',
      '  - METRICS_ENABLED="maybe" (from env): must be true or false',
      '  - LOG_LEVEL="loud" (from env): must be one of: debug, info, warn, error',
    ]);
  });

  it('rejects non-decimal and out-of-range numbers', () => {
    for (const bad of ['0x10', '80.5', '70000', '-1', '1e3', ' ']) {
      const found = problems({ env: BYPASS, flags: { SERVER_PORT: bad } });
      expect(
        found.map((p) => p.key),
        bad,
      ).toEqual(['SERVER_PORT']);
      expect(found[0]?.source).toBe('flag');
    }
    const seconds = problems({ env: { ...BYPASS, SSE_KEEPALIVE_INTERVAL: '5 minutes' } });
    expect(seconds[0]?.message).toBe('must be a number of seconds from 0 to 3600 (e.g. 30, 1.5 or 500ms)');
    expect(problems({ env: { ...BYPASS, PROXY_CONNECT_TIMEOUT: '0' } })[0]?.key).toBe(
      'PROXY_CONNECT_TIMEOUT',
    );
  });

  it('collects problems from the file, the environment and flags together', () => {
    const file = tempFile('server:\n  port: 99999\nproxy:\n  mcp_path: nope\n');
    const found = problems({
      configFile: file,
      env: { ...BYPASS, LOG_LEVEL: 'x' },
      flags: { AUTH_MODE: 'none' },
    });
    expect(found.map((p) => [p.key, p.source])).toEqual([
      ['SERVER_PORT', `file ${file}`],
      ['AUTH_MODE', 'flag'],
      ['LOG_LEVEL', 'env'],
      ['MCP_PATH', `file ${file}`],
    ]);
  });

  it('reports an unknown YAML key with a suggestion and without echoing its value', () => {
    const file = tempFile('server:\n  prot: 8080\noidc:\n  client_secrett: hunter2-secret\nSERVER_HOST: x\n');
    const err = failure({ configFile: file, env: BYPASS });
    expect(err.problems.map((p) => p.key)).toEqual(['server.prot', 'oidc.client_secrett', 'SERVER_HOST']);
    expect(err.problems[0]?.message).toMatch(/is not a known key; did you mean server\.port\?/);
    expect(err.problems[1]?.message).toMatch(/did you mean oidc\.client_secret\?/);
    expect(err.problems[2]?.message).toMatch(/did you mean server\.host\?/);
    expect(err.problems[0]?.source).toBe(`file ${file}`);
    expect(err.message).not.toContain('hunter2-secret');
  });

  it('reports a section given a value and a key given a mapping', () => {
    const file = tempFile('server: 8080\nlog:\n  level:\n    nested: debug\n');
    const found = problems({ configFile: file, env: BYPASS });
    expect(found.map((p) => p.key)).toEqual(['server', 'log.level']);
    expect(found[0]?.message).toMatch(/is a section, not a value; put its keys under it \(host, port,/);
    expect(found[1]?.message).toMatch(/not a nested mapping/);
  });

  it('reports invalid YAML with the file path and the line', () => {
    const file = tempFile('server:\n  port: [8080\nlog: {\n');
    const err = failure({ configFile: file, env: BYPASS });
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]?.key).toBe('--config');
    expect(err.problems[0]?.value).toBe(file);
    expect(err.problems[0]?.message).toMatch(/is not valid YAML: .*line \d+/);
    expect(err.message).toContain(file);
  });

  it('reports a YAML file that is not a mapping', () => {
    const file = tempFile('- a\n- b\n');
    expect(problems({ configFile: file, env: BYPASS })[0]?.message).toMatch(/must be a YAML mapping/);
  });

  it('reports a missing config file with its path and still checks everything else', () => {
    const path = join(dir, 'does-not-exist.yaml');
    const err = failure({ configFile: path, env: { ...BYPASS, SERVER_PORT: 'x' } });
    expect(err.problems.map((p) => p.key)).toEqual(['--config', 'SERVER_PORT']);
    expect(err.problems[0]?.value).toBe(path);
    expect(err.problems[0]?.message).toMatch(/file not found; check the path/);
  });

  it('names only the file when it is not valid YAML, not the settings it would have set', () => {
    const path = join(dir, 'broken.yaml');
    writeFileSync(path, 'auth:\n  mode: bypass\nauth:\n  mode: oidc\n');
    const err = failure({ configFile: path, env: {} });
    expect(err.problems.map((p) => p.key)).toEqual(['--config']);
    expect(err.problems[0]?.message).toMatch(/is not valid YAML: Map keys must be unique/);
  });

  it('requires OIDC_DISCOVERY_URL and OIDC_CLIENT_ID for AUTH_MODE=oidc, reporting both with the ways to set them', () => {
    const err = failure({ env: {} });
    expect(err.problems.map((p) => p.key)).toEqual(['OIDC_DISCOVERY_URL', 'OIDC_CLIENT_ID']);
    expect(err.message).toContain(
      '  - OIDC_DISCOVERY_URL: is required when AUTH_MODE=oidc; set the environment variable OIDC_DISCOVERY_URL, the YAML key oidc.discovery_url or the flag --oidc-discovery-url (or use AUTH_MODE=bypass',
    );
    expect(err.message).toContain('the YAML key oidc.client_id or the flag --oidc-client-id');
  });

  it('accepts AUTH_MODE=oidc with its settings and rejects a non-http discovery URL', () => {
    const ok = loadConfig({
      env: {
        OIDC_DISCOVERY_URL: 'https://idp.example.com/.well-known/openid-configuration',
        OIDC_CLIENT_ID: 'proxy',
      },
    });
    expect(ok.auth.mode).toBe('oidc');
    expect(ok.auth.oidc.discoveryUrl?.host).toBe('idp.example.com');
    const found = problems({ env: { OIDC_DISCOVERY_URL: 'idp.example.com', OIDC_CLIENT_ID: 'proxy' } });
    expect(found.map((p) => p.key)).toEqual(['OIDC_DISCOVERY_URL']);
    expect(found[0]?.message).toMatch(/must be an absolute http or https URL, e\.g\. https:\/\//);
  });

  it('rejects control characters in text settings', () => {
    const found = problems({ env: { ...BYPASS, CONTENT_SECURITY_POLICY: "default-src 'self'\nx" } });
    expect(found.map((p) => p.key)).toEqual(['CONTENT_SECURITY_POLICY']);
    expect(found[0]?.message).toMatch(/control character/);
  });
});

describe('PUBLIC_URL, ALLOWED_ORIGINS, TRUSTED_PROXIES', () => {
  it('rejects a PUBLIC_URL with a path or query and suggests the origin', () => {
    const found = problems({ env: { ...BYPASS, PUBLIC_URL: 'https://mcp.example.com/mcp' } });
    expect(found.map((p) => p.key)).toEqual(['PUBLIC_URL']);
    expect(found[0]?.message).toMatch(/must be an origin only.*use https:\/\/mcp\.example\.com \(MCP_PATH/);
    expect(problems({ env: { ...BYPASS, PUBLIC_URL: 'https://mcp.example.com?x=1' } })[0]?.key).toBe(
      'PUBLIC_URL',
    );
    expect(problems({ env: { ...BYPASS, PUBLIC_URL: 'mcp.example.com' } })[0]?.key).toBe('PUBLIC_URL');
    expect(
      problems({ env: { ...BYPASS, PUBLIC_URL: 'https://user:pw@mcp.example.com' } })[0]?.message,
    ).toMatch(/credentials/);
  });

  it('normalises PUBLIC_URL to its origin and derives it from SERVER_PORT when unset', () => {
    expect(
      loadConfig({ env: { ...BYPASS, PUBLIC_URL: 'HTTPS://MCP.Example.com:443/' } }).server.publicUrl.href,
    ).toBe('https://mcp.example.com/');
    expect(loadConfig({ env: { ...BYPASS, SERVER_PORT: '9000' } }).server.publicUrl.href).toBe(
      'http://localhost:9000/',
    );
  });

  it('normalises ALLOWED_ORIGINS entries and drops duplicates', () => {
    const c = loadConfig({
      env: {
        ...BYPASS,
        ALLOWED_ORIGINS: ' https://A.example.com/ ,http://localhost:6274,, https://a.example.com:443',
      },
    });
    expect(c.server.allowedOrigins).toEqual(['https://a.example.com', 'http://localhost:6274']);
  });

  it('rejects each ALLOWED_ORIGINS entry that is not an origin', () => {
    const found = problems({
      env: {
        ...BYPASS,
        ALLOWED_ORIGINS: 'https://ok.example.com,https://x.example.com/path,*,null,ftp://x.example.com',
      },
    });
    expect(found.map((p) => p.message)).toEqual([
      '"https://x.example.com/path" is not an origin; write each entry as scheme://host[:port], e.g. https://app.example.com',
      '"*" is not an origin; write each entry as scheme://host[:port], e.g. https://app.example.com',
      '"null" is not an origin; write each entry as scheme://host[:port], e.g. https://app.example.com',
      '"ftp://x.example.com" is not an origin; write each entry as scheme://host[:port], e.g. https://app.example.com',
    ]);
  });

  it('accepts IPv4/IPv6 addresses and CIDRs in TRUSTED_PROXIES', () => {
    const list = [
      '127.0.0.1',
      '10.0.0.0/8',
      '::1',
      'fd00::/8',
      '2001:db8::/32',
      '0.0.0.0/0',
      '::ffff:10.0.0.1',
    ];
    const c = loadConfig({ env: { ...BYPASS, TRUSTED_PROXIES: list.join(', ') } });
    expect(c.server.trustedProxies).toEqual(list);
  });

  it('rejects each junk TRUSTED_PROXIES entry', () => {
    const junk = ['localhost', '10.0.0.0/33', '::1/129', '1.2.3', '10.0.0.0/8/1', '10.0.0.0/x', '10.0.0.0/'];
    const found = problems({ env: { ...BYPASS, TRUSTED_PROXIES: ['127.0.0.1', ...junk].join(',') } });
    expect(found.map((p) => p.key)).toEqual(junk.map(() => 'TRUSTED_PROXIES'));
    expect(found[0]?.message).toBe(
      '"localhost" is not an IP address or CIDR; write entries such as 127.0.0.1, ::1, 10.0.0.0/8 or fd00::/8',
    );
  });
});

describe('MCP_PATH and METRICS_PATH', () => {
  it('accepts clean paths', () => {
    expect(loadConfig({ env: { ...BYPASS, MCP_PATH: '/mcp/v1' } }).mcpPath).toBe('/mcp/v1');
    expect(loadConfig({ env: { ...BYPASS, MCP_PATH: '/' } }).mcpPath).toBe('/');
  });

  it('rejects malformed paths', () => {
    for (const bad of [
      'mcp',
      '/mcp/',
      '/mcp?x=1',
      '/a/../b',
      '/a/./b',
      '/a%2fb',
      '/a b',
      '//mcp',
      '/mcp#x',
    ]) {
      const found = problems({ env: { ...BYPASS, MCP_PATH: bad } });
      expect(
        found.map((p) => p.key),
        bad,
      ).toEqual(['MCP_PATH']);
      expect(found[0]?.message).toMatch(/must be a path such as \/mcp/);
    }
  });

  it('rejects paths the proxy answers itself', () => {
    for (const [bad, clash] of [
      ['/health', '/health'],
      ['/.well-known/mcp', '/.well-known'],
      ['/token', '/token'],
      ['/admin/mcp', '/admin'],
    ] as const) {
      expect(problems({ env: { ...BYPASS, MCP_PATH: bad } })[0]?.message).toBe(
        `clashes with ${clash}, which the proxy answers itself; choose e.g. /mcp`,
      );
    }
    expect(problems({ env: { ...BYPASS, METRICS_PATH: '/health' } })[0]?.key).toBe('METRICS_PATH');
    expect(problems({ env: { ...BYPASS, METRICS_PATH: '/' } })[0]?.key).toBe('METRICS_PATH');
  });

  it('rejects an MCP_PATH overlapping METRICS_PATH only while metrics are served', () => {
    const found = problems({ env: { ...BYPASS, MCP_PATH: '/mcp', METRICS_PATH: '/mcp/metrics' } });
    expect(found.map((p) => p.message)).toEqual([
      'overlaps METRICS_PATH (/mcp/metrics); give them different paths',
    ]);
    expect(
      loadConfig({ env: { ...BYPASS, MCP_PATH: '/mcp', METRICS_PATH: '/mcp', METRICS_ENABLED: 'false' } })
        .mcpPath,
    ).toBe('/mcp');
  });
});

describe('PROXY_CA_FILE', () => {
  it('loads a PEM file', () => {
    const pem = rootCertificates[0] as string;
    const c = loadConfig({ env: { ...BYPASS, PROXY_CA_FILE: tempFile(pem, 'pem') } });
    expect(c.target.ca).toBe(pem);
  });

  it('reports an unreadable file, a file without PEM, and a PEM block that is not a certificate', () => {
    const missing = join(dir, 'missing.pem');
    expect(problems({ env: { ...BYPASS, PROXY_CA_FILE: missing } })[0]).toMatchObject({
      key: 'PROXY_CA_FILE',
      value: missing,
      message: 'cannot be read (ENOENT); give the path of a readable PEM file',
    });
    expect(problems({ env: { ...BYPASS, PROXY_CA_FILE: dir } })[0]?.message).toMatch(
      /cannot be read \(EISDIR\)/,
    );
    expect(
      problems({ env: { ...BYPASS, PROXY_CA_FILE: tempFile('not a certificate', 'pem') } })[0]?.message,
    ).toMatch(/contains no PEM certificate/);
    const garbage = tempFile('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'pem');
    expect(problems({ env: { ...BYPASS, PROXY_CA_FILE: garbage } })[0]?.message).toMatch(
      /not a valid certificate/,
    );
  });
});

describe('secrets', () => {
  const SECRET = 'sup3r-s3cret-value';

  it('are masked by describeConfig from every source', () => {
    const file = tempFile(`oidc:\n  client_secret: ${SECRET}\n`);
    for (const input of [
      { env: { OIDC_CLIENT_SECRET: SECRET } },
      { configFile: file, env: {} },
      { env: {}, flags: { OIDC_CLIENT_SECRET: SECRET } },
    ]) {
      const rows = describeConfig(input);
      expect(rows.find((r) => r.key === 'OIDC_CLIENT_SECRET')?.value).toBe('********');
      expect(JSON.stringify(rows)).not.toContain(SECRET);
    }
  });

  it('are never echoed in a ConfigError', () => {
    const bad = `${SECRET}\u0007`;
    const err = failure({ env: { ...BYPASS, OIDC_CLIENT_SECRET: bad } });
    expect(err.problems).toEqual([
      expect.objectContaining({ key: 'OIDC_CLIENT_SECRET', value: '********', source: 'env' }),
    ]);
    expect(err.message).not.toContain(SECRET);
    expect(err.message).toContain('OIDC_CLIENT_SECRET="********" (from env): contains a control character');

    const file = tempFile(`oidc:\n  client_secret:\n    value: ${SECRET}\n`);
    expect(failure({ configFile: file, env: BYPASS }).message).not.toContain(SECRET);
  });

  it('are not masked in the loaded config (the proxy needs them)', () => {
    expect(loadConfig({ env: { ...BYPASS, OIDC_CLIENT_SECRET: SECRET } }).auth.oidc.clientSecret).toBe(
      SECRET,
    );
  });
});

describe('MCP_ACCESS and MCP_MAX_BODY_BYTES', () => {
  const yamlRules = [
    'mcp_access:',
    '  default: deny',
    '  rules:',
    '    - tools: ["delete_*", drop_table]',
    '      allow: { groups: [admins] }',
    '      scope: mcp:admin',
    '    - prompts: ["*"]',
    '      allow: { domains: [example.com] }',
    '    - resources: ["file:///srv/public/*"]',
    '      allow: {}',
    '',
  ].join('\n');
  const OIDC = {
    OIDC_DISCOVERY_URL: 'https://idp.example.com/.well-known/openid-configuration',
    OIDC_CLIENT_ID: 'proxy',
  };
  const admin = { email: 'root@example.org', groups: ['admins'] };
  const member = { email: 'ann@example.com', groups: [] };

  it('has no rules and a 4 MiB body limit by default', () => {
    expect(loadConfig({ env: BYPASS }).mcp).toEqual({ access: undefined, maxBodyBytes: 4194304 });
  });

  it('loads the rules from the YAML file, as YAML', () => {
    const file = tempFile(yamlRules);
    const config = loadConfig({ configFile: file, env: { AUTH_MODE: 'oidc', ...OIDC } });
    const access = config.mcp.access;
    expect(config.sources.MCP_ACCESS).toBe(`file ${file}`);
    expect(access?.decide('tool', 'delete_file', admin)).toEqual({ allowed: true });
    expect(access?.decide('tool', 'drop_table', member)).toEqual({
      allowed: false,
      reason: 'denied',
      rule: 0,
    });
    expect(access?.decide('prompt', 'summary', member)).toEqual({ allowed: true });
    expect(access?.decide('resource', 'file:///srv/public/a/b', undefined)).toEqual({ allowed: true });
    expect(access?.decide('tool', 'search', admin)).toEqual({
      allowed: false,
      reason: 'denied',
      rule: 'default',
    });
    expect(access?.scopes).toEqual(['mcp:admin']);
  });

  it('loads the same rules from the environment, as JSON', () => {
    const json = JSON.stringify({
      default: 'deny',
      rules: [
        { tools: ['delete_*', 'drop_table'], allow: { groups: ['admins'] }, scope: 'mcp:admin' },
        { prompts: ['*'], allow: { domains: ['example.com'] } },
        { resources: ['file:///srv/public/*'], allow: {} },
      ],
    });
    const fromEnv = loadConfig({ env: { AUTH_MODE: 'oidc', ...OIDC, MCP_ACCESS: json } });
    const fromFile = loadConfig({ configFile: tempFile(yamlRules), env: { AUTH_MODE: 'oidc', ...OIDC } });
    expect(fromEnv.sources.MCP_ACCESS).toBe('env');
    expect(fromEnv.mcp.access).toEqual(fromFile.mcp.access);
  });

  it('refuses bad rules with one problem per fault, each naming its path, the value not repeated', () => {
    const file = tempFile(
      [
        'mcp_access:',
        '  default: block',
        '  rules:',
        '    - tool: [x]',
        '    - tools: []',
        '      scope: a b',
        '    - prompts: [p]',
        '      allow: { group: [admins] }',
        '',
      ].join('\n'),
    );
    const found = problems({ configFile: file, env: BYPASS });
    expect(found.every((p) => p.key === 'MCP_ACCESS' && p.value === '' && p.source === `file ${file}`)).toBe(
      true,
    );
    expect(found.map((p) => p.message.split(' ')[0])).toEqual([
      'mcp_access.default',
      'mcp_access.rules[0].tool',
      'mcp_access.rules[0]',
      'mcp_access.rules[1].tools',
      'mcp_access.rules[1].scope',
      'mcp_access.rules[2].allow.group',
    ]);
    expect(failure({ configFile: file, env: BYPASS }).message).toContain(
      `MCP_ACCESS (from file ${file}): mcp_access.rules[0].tool is not a known key; did you mean tools?`,
    );
  });

  it('refuses JSON that does not parse', () => {
    expect(problems({ env: { ...BYPASS, MCP_ACCESS: '{rules: [' } })).toEqual([
      {
        key: 'MCP_ACCESS',
        value: '{rules: [',
        source: 'env',
        message: 'must be JSON (in a YAML file: YAML lists and mappings)',
      },
    ]);
  });

  it('refuses rules that name people in bypass mode, saying how to fix it', () => {
    const found = problems({ configFile: tempFile(yamlRules), env: BYPASS });
    expect(found).toEqual([
      {
        key: 'MCP_ACCESS',
        value: '',
        source: expect.stringMatching(/^file /),
        message:
          'mcp_access.rules[0].allow, mcp_access.rules[1].allow name emails, domains or groups, but in bypass mode there is no user: use `allow: {}` or AUTH_MODE=oidc',
      },
    ]);
    const open = JSON.stringify({ rules: [{ tools: ['admin_*'], allow: {} }], default: 'deny' });
    expect(loadConfig({ env: { ...BYPASS, MCP_ACCESS: open } }).mcp.access?.usesIdentity).toBe(false);
  });

  it('takes MCP_MAX_BODY_BYTES from 1 KiB to 64 MiB', () => {
    expect(loadConfig({ env: { ...BYPASS, MCP_MAX_BODY_BYTES: '1024' } }).mcp.maxBodyBytes).toBe(1024);
    expect(
      loadConfig({ configFile: tempFile('proxy:\n  mcp_max_body_bytes: 67108864\n'), env: BYPASS }).mcp
        .maxBodyBytes,
    ).toBe(67108864);
    for (const bad of ['1023', '67108865', '4MB'])
      expect(problems({ env: { ...BYPASS, MCP_MAX_BODY_BYTES: bad } }).map((p) => p.key)).toEqual([
        'MCP_MAX_BODY_BYTES',
      ]);
  });
});

describe('describeConfig', () => {
  it('lists every setting once with its source, and the derived defaults', () => {
    const rows = describeConfig({ env: { SERVER_PORT: '9000', PROXY_TARGET_HOST: 'mcp.internal' } });
    expect(rows.map((r) => r.key)).toEqual((SETTINGS as readonly SettingSpec[]).map(settingName));
    const row = (key: string) => rows.find((r) => r.key === key);
    expect(row('SERVER_PORT')).toEqual({ key: 'SERVER_PORT', value: '9000', source: 'env' });
    expect(row('PUBLIC_URL')).toEqual({
      key: 'PUBLIC_URL',
      value: 'http://localhost:9000',
      source: 'derived from SERVER_PORT',
    });
    expect(row('PROXY_TARGET_URL')?.value).toBe('http://mcp.internal:3000');
    expect(row('OIDC_CLIENT_ID')).toEqual({ key: 'OIDC_CLIENT_ID', value: '', source: 'unset' });
  });

  it('marks the target host/port as ignored when PROXY_TARGET_URL is set', () => {
    const rows = describeConfig({ env: { PROXY_TARGET_URL: 'http://b:1' } });
    expect(rows.find((r) => r.key === 'PROXY_TARGET_HOST')?.source).toBe(
      'default, ignored: PROXY_TARGET_URL is set',
    );
  });
});

describe('parseArgs', () => {
  it('serves by default', () => {
    expect(parseArgs([])).toEqual({ command: 'serve', flags: {} });
  });

  it('reads --flag value and --flag=value, keyed by the setting', () => {
    expect(parseArgs(['--server-port', '9000']).flags).toEqual({ SERVER_PORT: '9000' });
    expect(parseArgs(['--server-port=9000']).flags).toEqual({ SERVER_PORT: '9000' });
    expect(parseArgs(['--content-security-policy=a=b; c']).flags).toEqual({
      CONTENT_SECURITY_POLICY: 'a=b; c',
    });
    // A value that looks like a negative number is still a value (validated later).
    expect(parseArgs(['--port', '-1']).flags).toEqual({ SERVER_PORT: '-1' });
  });

  it('maps the short flags', () => {
    const args = parseArgs([
      '--port',
      '1',
      '--host=127.0.0.1',
      '--target',
      'http://b:2',
      '--auth-mode',
      'bypass',
      '--log-level',
      'debug',
    ]);
    expect(args.flags).toEqual({
      SERVER_PORT: '1',
      SERVER_HOST: '127.0.0.1',
      PROXY_TARGET_URL: 'http://b:2',
      AUTH_MODE: 'bypass',
      LOG_LEVEL: 'debug',
    });
  });

  it('reads --config and the command in any order', () => {
    expect(parseArgs(['--config', 'a.yaml', 'check-config', '--port', '1'])).toEqual({
      command: 'check-config',
      configFile: 'a.yaml',
      flags: { SERVER_PORT: '1' },
    });
    expect(parseArgs(['serve', '--config=b.yaml']).configFile).toBe('b.yaml');
  });

  it('reads help and version', () => {
    for (const a of ['--help', '-h', 'help']) expect(parseArgs([a]).command).toBe('help');
    for (const a of ['--version', '-v', 'version']) expect(parseArgs([a]).command).toBe('version');
  });

  it('takes a bool flag without a value as true, and a following true/false as its value', () => {
    expect(parseArgs(['--metrics-enabled']).flags).toEqual({ METRICS_ENABLED: 'true' });
    expect(parseArgs(['--metrics-enabled', 'false']).flags).toEqual({ METRICS_ENABLED: 'false' });
    expect(parseArgs(['--metrics-enabled', '--port', '1']).flags).toEqual({
      METRICS_ENABLED: 'true',
      SERVER_PORT: '1',
    });
    expect(parseArgs(['--metrics-enabled', 'check-config'])).toEqual({
      command: 'check-config',
      flags: { METRICS_ENABLED: 'true' },
    });
  });

  const usage = (argv: string[]): string => {
    try {
      parseArgs(argv);
    } catch (err) {
      expect(err).toBeInstanceOf(UsageError);
      return (err as Error).message;
    }
    throw new Error(`expected a UsageError for ${argv.join(' ')}`);
  };

  it('rejects an unknown flag by name, with a suggestion', () => {
    expect(usage(['--prot', '1'])).toBe(
      'unknown flag "--prot"; did you mean --port? (see --help for the flags)',
    );
    expect(usage(['--SERVER_PORT=1'])).toMatch(/unknown flag "--SERVER_PORT"; did you mean --server-port\?/);
    expect(usage(['--frobnicate'])).toBe('unknown flag "--frobnicate" (see --help for the flags)');
    expect(usage(['-p', '1'])).toMatch(/unknown flag "-p"/);
  });

  it('rejects a flag without its value', () => {
    expect(usage(['--port'])).toBe('flag --port needs a value: --port VALUE or --port=VALUE');
    expect(usage(['--host', '--port', '1'])).toMatch(/flag --host needs a value/);
    expect(usage(['--config'])).toMatch(/flag --config needs a value/);
    expect(usage(['--config='])).toMatch(/flag --config needs a value/);
  });

  it('rejects an unknown command and a stray argument', () => {
    expect(usage(['start'])).toBe(
      'unknown command "start"; commands: serve, demo, check-config, version, help',
    );
    expect(usage(['check-config', 'extra'])).toMatch(
      /unexpected argument "extra" after the command "check-config"/,
    );
    expect(usage(['check-config', '--port', '1', '2'])).toMatch(/unexpected argument "2"/);
  });

  it('takes everything after the first -- as the command, quoted to split back into the same words', () => {
    expect(
      parseArgs(['--auth-mode', 'bypass', '--', 'npx', '-y', '@modelcontextprotocol/server-memory']),
    ).toEqual({
      command: 'serve',
      flags: { AUTH_MODE: 'bypass', PROXY_TARGET_COMMAND: 'npx -y @modelcontextprotocol/server-memory' },
    });
    // Flags and commands after -- belong to the command.
    expect(parseArgs(['check-config', '--', 'server', '--port', '1', 'a b', '--', 'help']).flags).toEqual({
      PROXY_TARGET_COMMAND: "server --port 1 'a b' -- help",
    });
    expect(parseArgs(['--target-command', 'npx server']).flags).toEqual({
      PROXY_TARGET_COMMAND: 'npx server',
    });
  });

  it('rejects -- with nothing after it, with --target-command too, or for a command without a target', () => {
    expect(usage(['--'])).toBe(
      'nothing follows --; give the MCP server to run after it, e.g. -- npx -y @modelcontextprotocol/server-memory',
    );
    expect(usage(['--target-command', 'a', '--', 'b'])).toBe(
      'the command is given twice, by --target-command and after --; give it once',
    );
    expect(usage(['demo', '--', 'server'])).toBe(
      '"demo" takes no command after --; only serve and check-config do (the demo takes one as --stdio "npx -y @modelcontextprotocol/server-memory")',
    );
    expect(parseArgs(['--help', '--', 'server']).command).toBe('help');
  });

  it('feeds loadConfig so that flags win', () => {
    const args = parseArgs(['--port', '7000', '--log-level=warn']);
    const c = loadConfig({ flags: args.flags, env: { ...BYPASS, SERVER_PORT: '6000', LOG_LEVEL: 'debug' } });
    expect(c.server.port).toBe(7000);
    expect(c.log.level).toBe('warn');
  });
});

describe('helpText', () => {
  it('names every setting: env variables with aliases, YAML keys and flags', () => {
    const text = helpText('1.2.3');
    expect(text).toContain('mcp-oidc-proxy 1.2.3');
    for (const spec of SETTINGS as readonly SettingSpec[]) {
      const names = spec.yamlOnly
        ? [spec.yaml]
        : [spec.env, ...(spec.aliases ?? []), spec.yaml, ...(spec.flags ?? [])];
      for (const name of names) expect(text, name).toContain(name);
    }
    // Each flag listed once per setting; none for a YAML-only one.
    expect(text).not.toMatch(/--public-url, --public-url/);
    expect(text).not.toContain('--servers');
    expect(text).toContain('-- PROGRAM [ARGS...]');
  });
});

describe('SERVER_WORKERS', () => {
  const REDIS = { AUTH_MODE: 'bypass', SESSION_STORE: 'redis' };

  it('is 1 by default, a number as given, and auto is one per CPU', () => {
    expect(loadConfig({ env: { AUTH_MODE: 'bypass' } }).server.workers).toBe(1);
    expect(loadConfig({ env: { ...REDIS, SERVER_WORKERS: '3' } }).server.workers).toBe(3);
    expect(loadConfig({ env: REDIS, flags: { SERVER_WORKERS: 'auto' } }).server.workers).toBe(
      availableParallelism(),
    );
    expect(parseArgs(['--workers', '4']).flags).toEqual({ SERVER_WORKERS: '4' });
  });

  it('is read from server.workers in the YAML file, a number or auto', () => {
    const file = tempFile('server:\n  workers: 2\nsession:\n  store: redis\n');
    expect(loadConfig({ env: { AUTH_MODE: 'bypass' }, configFile: file }).server.workers).toBe(2);
    const auto = tempFile('server:\n  workers: auto\nsession:\n  store: redis\n');
    expect(loadConfig({ env: { AUTH_MODE: 'bypass' }, configFile: auto }).server.workers).toBe(
      availableParallelism(),
    );
  });
});
