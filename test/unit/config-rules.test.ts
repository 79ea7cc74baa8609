import { describe, expect, it } from 'vitest';
import type { ParsedValues } from '../../src/config/parse.js';
import {
  adminApiHasAWayIn,
  adminGroupsNeedOidcLogin,
  adminListenerIsSeparate,
  CROSS_FIELD_RULES,
  mcpAccessIdentityNeedsOidcLogin,
  mcpPathClearOfMetricsPath,
  oidcModeHasProviderSettings,
  oidcScopesIncludeOpenid,
  type RuleInput,
  secureCookieNeedsHttpsPublicUrl,
  serverPathsClearOfMetricsPath,
  serversReplaceSingleTargetSettings,
  severalWorkersNeedSharedStore,
  stdioServersNeedOneWorker,
  targetCommandExcludesTargetUrl,
} from '../../src/config/rules.js';
import { SETTINGS, type SettingEnv } from '../../src/config/settings.js';
import { configProblems } from '../helpers/config-problems.js';

/** A rule's input: `values` as parsed, every one of them given (explicitly), and nothing refused. */
function input(values: ParsedValues, more: Partial<Omit<RuleInput, 'values'>> = {}): RuleInput {
  const given = new Set(SETTINGS.map((s) => s.env).filter((env) => values[env] !== undefined));
  return {
    values,
    given: more.given ?? given,
    explicit: more.explicit ?? more.given ?? given,
    refused: more.refused ?? new Set(),
  };
}

function keysOf(problems: Array<{ key: string }>): string[] {
  return problems.map((p) => p.key);
}

describe('cross-field rules', () => {
  it('runs every rule, each once', () => {
    expect(CROSS_FIELD_RULES.map((rule) => rule.name)).toEqual([
      'serversReplaceSingleTargetSettings',
      'targetCommandExcludesTargetUrl',
      'mcpPathClearOfMetricsPath',
      'serverPathsClearOfMetricsPath',
      'oidcModeHasProviderSettings',
      'secureCookieNeedsHttpsPublicUrl',
      'oidcScopesIncludeOpenid',
      'adminApiHasAWayIn',
      'adminGroupsNeedOidcLogin',
      'adminListenerIsSeparate',
      'mcpAccessIdentityNeedsOidcLogin',
      'serverAllowListsNeedOidcLogin',
      'severalWorkersNeedSharedStore',
      'stdioServersNeedOneWorker',
    ]);
  });

  describe('severalWorkersNeedSharedStore', () => {
    it('refuses more than one worker, or auto, with SESSION_STORE=memory, naming SESSION_STORE', () => {
      for (const workers of ['2', 'auto', 'AUTO']) {
        const found = severalWorkersNeedSharedStore(
          input({ SERVER_WORKERS: workers, SESSION_STORE: 'memory' }),
        );
        expect(keysOf(found), workers).toEqual(['SESSION_STORE']);
        expect(found[0]?.message).toContain(`SERVER_WORKERS=${workers}`);
        expect(found[0]?.message).toContain('set SESSION_STORE=redis');
      }
    });

    it('accepts one worker with memory, several with redis, and leaves a refused count to its own check', () => {
      for (const values of [
        { SERVER_WORKERS: '1', SESSION_STORE: 'memory' },
        { SERVER_WORKERS: '4', SESSION_STORE: 'redis' },
        { SERVER_WORKERS: 'auto', SESSION_STORE: 'redis' },
      ] as const)
        expect(severalWorkersNeedSharedStore(input(values)), JSON.stringify(values)).toEqual([]);
      const refused = new Set<SettingEnv>(['SERVER_WORKERS']);
      expect(
        severalWorkersNeedSharedStore(input({ SERVER_WORKERS: '0', SESSION_STORE: 'memory' }, { refused })),
      ).toEqual([]);
    });
  });

  describe('stdioServersNeedOneWorker', () => {
    const stdio = { name: 'files', path: '/files/mcp', command: ['npx', '-y', 'server-filesystem'] };
    const http = { name: 'search', path: '/search/mcp', url: 'http://127.0.0.1:3001/mcp' };

    it('refuses several workers with a stdio server, naming SERVER_WORKERS and the command', () => {
      const single = stdioServersNeedOneWorker(
        input({ SERVER_WORKERS: 'auto', PROXY_TARGET_COMMAND: ['npx', 'server'] }),
      );
      expect(keysOf(single)).toEqual(['SERVER_WORKERS']);
      expect(single[0]?.message).toContain('(PROXY_TARGET_COMMAND)');
      const listed = stdioServersNeedOneWorker(input({ SERVER_WORKERS: '2', SERVERS: [http, stdio] }));
      expect(listed[0]?.message).toContain('(servers[1].command)');
    });

    it('accepts one worker with a stdio server, and several with HTTP servers only', () => {
      expect(stdioServersNeedOneWorker(input({ SERVER_WORKERS: '1', PROXY_TARGET_COMMAND: ['x'] }))).toEqual(
        [],
      );
      expect(stdioServersNeedOneWorker(input({ SERVER_WORKERS: '2', SERVERS: [http] }))).toEqual([]);
    });
  });

  describe('serversReplaceSingleTargetSettings', () => {
    const servers = [{ name: 'a', path: '/a/mcp', url: 'http://127.0.0.1:3001/mcp' }];
    const replaced = [
      'PROXY_TARGET_URL',
      'PROXY_TARGET_HOST',
      'PROXY_TARGET_PORT',
      'PROXY_TARGET_COMMAND',
      'MCP_PATH',
      'MCP_ACCESS',
    ] as const;

    it('refuses each single-target setting set beside servers:, naming the entry key to use instead', () => {
      const explicit = new Set<SettingEnv>(['SERVERS', ...replaced]);
      const found = serversReplaceSingleTargetSettings(input({ SERVERS: servers }, { explicit }));
      expect(keysOf(found)).toEqual([...replaced]);
      const message = (key: string) => found.find((p) => p.key === key)?.message;
      expect(message('PROXY_TARGET_URL')).toBe(
        "cannot be used with servers: (the list names each server's target, path and rules); use a servers: entry's url instead, and remove PROXY_TARGET_URL",
      );
      expect(message('PROXY_TARGET_COMMAND')).toContain("use a servers: entry's command instead");
      expect(message('MCP_PATH')).toContain("use each servers: entry's path instead");
      expect(message('MCP_ACCESS')).toContain("use a servers: entry's mcp_access instead");
    });

    it('accepts the single-target settings at their defaults, and anything without servers:', () => {
      const given = new Set<SettingEnv>(['SERVERS', 'PROXY_TARGET_HOST', 'PROXY_TARGET_PORT', 'MCP_PATH']);
      const explicit = new Set<SettingEnv>(['SERVERS']);
      expect(serversReplaceSingleTargetSettings(input({ SERVERS: servers }, { given, explicit }))).toEqual(
        [],
      );
      const noServers = new Set<SettingEnv>(replaced);
      expect(serversReplaceSingleTargetSettings(input({}, { given: noServers }))).toEqual([]);
    });
  });

  describe('targetCommandExcludesTargetUrl', () => {
    it('refuses a target URL, host or port set beside PROXY_TARGET_COMMAND', () => {
      const explicit = new Set<SettingEnv>(['PROXY_TARGET_COMMAND', 'PROXY_TARGET_URL', 'PROXY_TARGET_PORT']);
      expect(targetCommandExcludesTargetUrl(input({}, { explicit }))).toEqual([
        {
          key: 'PROXY_TARGET_URL',
          message:
            'cannot be used with PROXY_TARGET_COMMAND: the proxy runs that command as the MCP server; remove PROXY_TARGET_URL, or PROXY_TARGET_COMMAND to forward to a URL',
        },
        expect.objectContaining({ key: 'PROXY_TARGET_PORT' }),
      ]);
    });

    it('accepts host and port at their defaults, and leaves servers: to its own rule', () => {
      const given = new Set<SettingEnv>(['PROXY_TARGET_COMMAND', 'PROXY_TARGET_HOST', 'PROXY_TARGET_PORT']);
      const explicit = new Set<SettingEnv>(['PROXY_TARGET_COMMAND']);
      expect(targetCommandExcludesTargetUrl(input({}, { given, explicit }))).toEqual([]);
      const withServers = new Set<SettingEnv>(['SERVERS', 'PROXY_TARGET_COMMAND', 'PROXY_TARGET_URL']);
      expect(
        targetCommandExcludesTargetUrl(input({}, { explicit: withServers, given: withServers })),
      ).toEqual([]);
    });
  });

  describe('serverPathsClearOfMetricsPath', () => {
    const servers = [
      { name: 'a', path: '/a/mcp', url: 'http://127.0.0.1:3001/mcp' },
      { name: 'b', path: '/metrics/mcp', command: ['server'] },
    ];

    it('refuses a servers: path on or under a served METRICS_PATH, by its entry', () => {
      const values = { SERVERS: servers, METRICS_ENABLED: true, METRICS_PATH: '/metrics' } as const;
      expect(serverPathsClearOfMetricsPath(input(values))).toEqual([
        {
          key: 'SERVERS',
          path: 'servers[1].path',
          message: '/metrics/mcp overlaps METRICS_PATH (/metrics); give them different paths',
        },
      ]);
    });

    it('accepts them while metrics are off, and leaves a refused list to its check', () => {
      const off = { SERVERS: servers, METRICS_ENABLED: false, METRICS_PATH: '/metrics' } as const;
      expect(serverPathsClearOfMetricsPath(input(off))).toEqual([]);
      const on = { ...off, METRICS_ENABLED: true };
      expect(serverPathsClearOfMetricsPath(input(on, { refused: new Set(['SERVERS']) }))).toEqual([]);
    });

    it('leaves MCP_PATH out of it with servers: (MCP_PATH is not used then)', () => {
      const values = {
        SERVERS: servers,
        MCP_PATH: '/mcp',
        METRICS_ENABLED: true,
        METRICS_PATH: '/mcp',
      } as const;
      expect(mcpPathClearOfMetricsPath(input(values))).toEqual([]);
    });
  });

  describe('mcpPathClearOfMetricsPath', () => {
    const served = { METRICS_ENABLED: true } as const;

    it('refuses an MCP_PATH on or under a served METRICS_PATH, and the reverse', () => {
      for (const [mcp, metrics] of [
        ['/mcp', '/mcp'],
        ['/mcp', '/mcp/metrics'],
        ['/x/mcp', '/x'],
      ]) {
        expect(mcpPathClearOfMetricsPath(input({ ...served, MCP_PATH: mcp, METRICS_PATH: metrics }))).toEqual(
          [{ key: 'MCP_PATH', message: `overlaps METRICS_PATH (${metrics}); give them different paths` }],
        );
      }
    });

    it('accepts apart paths, a root MCP_PATH, and any paths while metrics are off', () => {
      for (const values of [
        { ...served, MCP_PATH: '/mcp', METRICS_PATH: '/metrics' },
        { ...served, MCP_PATH: '/mcp', METRICS_PATH: '/mcpx' },
        { ...served, MCP_PATH: '/', METRICS_PATH: '/metrics' },
        { METRICS_ENABLED: false, MCP_PATH: '/mcp', METRICS_PATH: '/mcp' },
      ])
        expect(mcpPathClearOfMetricsPath(input(values))).toEqual([]);
    });

    it('does not compare an MCP_PATH already reported wrong', () => {
      const values = { ...served, MCP_PATH: '/mcp', METRICS_PATH: '/mcp' };
      expect(mcpPathClearOfMetricsPath(input(values, { refused: new Set(['MCP_PATH']) }))).toEqual([]);
    });
  });

  describe('oidcModeHasProviderSettings', () => {
    it('asks for the discovery URL and client id in oidc mode, naming the ways to set them', () => {
      const found = oidcModeHasProviderSettings(input({ AUTH_MODE: 'oidc', OIDC_PROVIDER: 'generic' }));
      expect(keysOf(found)).toEqual(['OIDC_DISCOVERY_URL', 'OIDC_CLIENT_ID']);
      expect(found[1]?.message).toBe(
        'is required when AUTH_MODE=oidc; set the environment variable OIDC_CLIENT_ID, the YAML key oidc.client_id or the flag --oidc-client-id (or use AUTH_MODE=bypass for local development without login)',
      );
    });

    it('asks GitHub only for the client id (it has no discovery document)', () => {
      const found = oidcModeHasProviderSettings(input({ AUTH_MODE: 'oidc', OIDC_PROVIDER: 'github' }));
      expect(keysOf(found)).toEqual(['OIDC_CLIENT_ID']);
    });

    it('counts a setting given with a bad value as given (its own problem says what is wrong)', () => {
      const given = new Set<SettingEnv>(['OIDC_DISCOVERY_URL', 'OIDC_CLIENT_ID']);
      expect(oidcModeHasProviderSettings(input({ AUTH_MODE: 'oidc' }, { given }))).toEqual([]);
    });

    it('asks nothing in bypass mode, or when AUTH_MODE itself is wrong', () => {
      expect(oidcModeHasProviderSettings(input({ AUTH_MODE: 'bypass' }))).toEqual([]);
      expect(oidcModeHasProviderSettings(input({}))).toEqual([]);
    });
  });

  describe('secureCookieNeedsHttpsPublicUrl', () => {
    const secure = { SESSION_COOKIE_SECURE: true } as const;

    it('refuses Secure cookies on a plain http PUBLIC_URL', () => {
      expect(
        secureCookieNeedsHttpsPublicUrl(input({ ...secure, PUBLIC_URL: new URL('http://mcp.example.com') })),
      ).toEqual([
        {
          key: 'SESSION_COOKIE_SECURE',
          message:
            'is true but PUBLIC_URL is not https: browsers would drop the cookie; set PUBLIC_URL to the https URL',
        },
      ]);
    });

    it('accepts https, loopback (also the derived http://localhost), and non-Secure cookies', () => {
      for (const values of [
        { ...secure, PUBLIC_URL: new URL('https://mcp.example.com') },
        { ...secure, PUBLIC_URL: new URL('http://127.0.0.1:8080') },
        { ...secure, PUBLIC_URL: new URL('http://[::1]:8080') },
        { ...secure, SERVER_PORT: 9000 },
        { ...secure },
        { SESSION_COOKIE_SECURE: false, PUBLIC_URL: new URL('http://mcp.example.com') },
      ])
        expect(secureCookieNeedsHttpsPublicUrl(input(values))).toEqual([]);
    });
  });

  describe('oidcScopesIncludeOpenid', () => {
    it('refuses scopes without openid for an OpenID Connect provider', () => {
      expect(
        oidcScopesIncludeOpenid(
          input({ AUTH_MODE: 'oidc', OIDC_PROVIDER: 'google', OIDC_SCOPES: ['email'] }),
        ),
      ).toEqual([
        {
          key: 'OIDC_SCOPES',
          message: 'must include openid for an OpenID Connect provider, e.g. "openid email profile"',
        },
      ]);
    });

    it('finds openid in a space-separated entry, and asks nothing of GitHub or bypass mode', () => {
      expect(oidcScopesIncludeOpenid(input({ AUTH_MODE: 'oidc', OIDC_SCOPES: ['email openid'] }))).toEqual(
        [],
      );
      expect(
        oidcScopesIncludeOpenid(
          input({ AUTH_MODE: 'oidc', OIDC_PROVIDER: 'github', OIDC_SCOPES: ['read:user'] }),
        ),
      ).toEqual([]);
      expect(oidcScopesIncludeOpenid(input({ AUTH_MODE: 'bypass', OIDC_SCOPES: [] }))).toEqual([]);
    });
  });

  describe('adminApiHasAWayIn', () => {
    it('refuses an enabled admin API without a token or admin groups', () => {
      const found = adminApiHasAWayIn(input({ ADMIN_ENABLED: true, ADMIN_GROUPS: [] }));
      expect(keysOf(found)).toEqual(['ADMIN_ENABLED']);
      expect(found[0]?.message).toMatch(/^is true but neither ADMIN_TOKEN nor ADMIN_GROUPS is set/);
      // An empty token (`--admin-token=`) is no token.
      expect(keysOf(adminApiHasAWayIn(input({ ADMIN_ENABLED: true, ADMIN_TOKEN: '' })))).toEqual([
        'ADMIN_ENABLED',
      ]);
    });

    it('accepts a token, admin groups, or a disabled admin API', () => {
      expect(adminApiHasAWayIn(input({ ADMIN_ENABLED: true, ADMIN_TOKEN: 'x'.repeat(32) }))).toEqual([]);
      expect(adminApiHasAWayIn(input({ ADMIN_ENABLED: true, ADMIN_GROUPS: ['admins'] }))).toEqual([]);
      expect(adminApiHasAWayIn(input({ ADMIN_ENABLED: false }))).toEqual([]);
    });
  });

  describe('adminGroupsNeedOidcLogin', () => {
    it('refuses admin groups as the only way in under AUTH_MODE=bypass', () => {
      expect(
        adminGroupsNeedOidcLogin(
          input({ ADMIN_ENABLED: true, ADMIN_GROUPS: ['admins'], AUTH_MODE: 'bypass' }),
        ),
      ).toEqual([
        {
          key: 'ADMIN_GROUPS',
          message: 'needs AUTH_MODE=oidc (with AUTH_MODE=bypass nobody logs in); set ADMIN_TOKEN instead',
        },
      ]);
    });

    it('accepts a token in bypass mode, and groups in oidc mode', () => {
      expect(
        adminGroupsNeedOidcLogin(
          input({ ADMIN_ENABLED: true, ADMIN_TOKEN: 'x'.repeat(32), AUTH_MODE: 'bypass' }),
        ),
      ).toEqual([]);
      expect(
        adminGroupsNeedOidcLogin(input({ ADMIN_ENABLED: true, ADMIN_GROUPS: ['admins'], AUTH_MODE: 'oidc' })),
      ).toEqual([]);
    });
  });

  describe('adminListenerIsSeparate', () => {
    const enabled = { ADMIN_ENABLED: true, ADMIN_TOKEN: 'x'.repeat(32), SERVER_PORT: 8080 };
    const messages = (values: ParsedValues) =>
      adminListenerIsSeparate(input(values)).map((p) => `${p.key} ${p.message}`);

    it('refuses ADMIN_LISTEN without ADMIN_ENABLED, and ADMIN_PUBLIC_URL without ADMIN_LISTEN', () => {
      expect(messages({ ADMIN_LISTEN: '127.0.0.1:9090' })).toEqual([
        'ADMIN_LISTEN is set but ADMIN_ENABLED is not true: set ADMIN_ENABLED=true, or remove ADMIN_LISTEN',
      ]);
      expect(messages({ ...enabled, ADMIN_PUBLIC_URL: new URL('http://127.0.0.1:9090') })).toEqual([
        'ADMIN_PUBLIC_URL needs ADMIN_LISTEN (the admin listener it names); without it /admin is served at PUBLIC_URL',
      ]);
    });

    it("refuses PUBLIC_URL's origin as the admin origin, and SERVER_PORT as the admin port", () => {
      expect(
        messages({
          ...enabled,
          PUBLIC_URL: new URL('https://mcp.example.com'),
          ADMIN_LISTEN: '127.0.0.1:9090',
          ADMIN_PUBLIC_URL: new URL('https://mcp.example.com'),
        }),
      ).toEqual([
        "ADMIN_PUBLIC_URL is PUBLIC_URL's origin (https://mcp.example.com): give the admin listener another port or host name",
      ]);
      expect(messages({ ...enabled, ADMIN_LISTEN: '127.0.0.1:8080' })).toEqual([
        'ADMIN_LISTEN uses SERVER_PORT (8080): give the admin listener a port of its own',
      ]);
    });

    it('accepts a listener of its own, with or without ADMIN_PUBLIC_URL, and nothing set', () => {
      expect(messages({ ...enabled, ADMIN_LISTEN: '127.0.0.1:9090' })).toEqual([]);
      expect(messages({ ...enabled, ADMIN_LISTEN: '127.0.0.1:0' })).toEqual([]);
      expect(
        messages({
          ...enabled,
          PUBLIC_URL: new URL('https://mcp.example.com'),
          ADMIN_LISTEN: '0.0.0.0:9443',
          ADMIN_PUBLIC_URL: new URL('https://mcp.example.com:9443'),
        }),
      ).toEqual([]);
      expect(messages(enabled)).toEqual([]);
    });
  });

  describe('mcpAccessIdentityNeedsOidcLogin', () => {
    const rules = {
      rules: [
        { tools: ['search'], allow: {} },
        { tools: ['delete_*'], allow: { groups: ['admins'] } },
        { prompts: ['*'], allow: { domains: ['example.com'] } },
      ],
    };

    it('refuses rules naming people under AUTH_MODE=bypass, naming each and the fix', () => {
      expect(mcpAccessIdentityNeedsOidcLogin(input({ AUTH_MODE: 'bypass', MCP_ACCESS: rules }))).toEqual([
        {
          key: 'MCP_ACCESS',
          message:
            'mcp_access.rules[1].allow, mcp_access.rules[2].allow name emails, domains or groups, but in bypass mode there is no user: use `allow: {}` or AUTH_MODE=oidc',
        },
      ]);
    });

    it('accepts them in oidc mode, open rules in bypass mode, and leaves refused rules to their check', () => {
      expect(mcpAccessIdentityNeedsOidcLogin(input({ AUTH_MODE: 'oidc', MCP_ACCESS: rules }))).toEqual([]);
      const open = {
        default: 'deny',
        rules: [{ tools: ['*'], allow: {}, scope: 'mcp:x' }, { prompts: ['*'] }],
      };
      expect(mcpAccessIdentityNeedsOidcLogin(input({ AUTH_MODE: 'bypass', MCP_ACCESS: open }))).toEqual([]);
      expect(mcpAccessIdentityNeedsOidcLogin(input({ AUTH_MODE: 'bypass' }))).toEqual([]);
      const broken = { rules: [{ tool: ['x'], allow: { groups: ['admins'] } }] };
      expect(mcpAccessIdentityNeedsOidcLogin(input({ AUTH_MODE: 'bypass', MCP_ACCESS: broken }))).toEqual([]);
    });

    it('refuses them in a servers: entry too, by its path', () => {
      const servers = [
        { name: 'a', path: '/a/mcp', url: 'http://127.0.0.1:3001/mcp' },
        { name: 'b', path: '/b/mcp', url: 'http://127.0.0.1:3002/mcp', mcp_access: rules },
      ];
      expect(mcpAccessIdentityNeedsOidcLogin(input({ AUTH_MODE: 'bypass', SERVERS: servers }))).toEqual([
        {
          key: 'SERVERS',
          path: 'servers[1].mcp_access',
          message:
            'rules[1].allow, rules[2].allow name emails, domains or groups, but in bypass mode there is no user: use `allow: {}` or AUTH_MODE=oidc',
        },
      ]);
      expect(mcpAccessIdentityNeedsOidcLogin(input({ AUTH_MODE: 'oidc', SERVERS: servers }))).toEqual([]);
    });
  });
});

describe('cross-field rules in loadConfig', () => {
  const BYPASS = { AUTH_MODE: 'bypass' };

  it('report with the value and source of the setting to change', () => {
    expect(
      configProblems({
        env: { ...BYPASS, SESSION_COOKIE_SECURE: 'yes', PUBLIC_URL: 'http://mcp.example.com' },
      }),
    ).toEqual([expect.objectContaining({ key: 'SESSION_COOKIE_SECURE', value: 'yes', source: 'env' })]);
    expect(configProblems({ env: BYPASS, flags: { ADMIN_ENABLED: 'true' } })).toEqual([
      expect.objectContaining({ key: 'ADMIN_ENABLED', value: 'true', source: 'flag' }),
      expect.objectContaining({ key: 'ADMIN_GROUPS', value: '', source: 'default' }),
    ]);
  });

  it('come after the problems of single settings, all in one report', () => {
    const found = configProblems({
      env: { SERVER_PORT: 'abc', MCP_PATH: '/health', OIDC_SCOPES: 'email', ADMIN_ENABLED: 'true' },
    });
    expect(keysOf(found)).toEqual([
      'SERVER_PORT',
      'MCP_PATH',
      'OIDC_DISCOVERY_URL',
      'OIDC_CLIENT_ID',
      'OIDC_SCOPES',
      'ADMIN_ENABLED',
    ]);
  });

  it('refuse several workers on the default memory store, with its source', () => {
    expect(configProblems({ env: { ...BYPASS, SERVER_WORKERS: '2' } })).toEqual([
      expect.objectContaining({ key: 'SESSION_STORE', value: 'memory', source: 'default' }),
    ]);
  });

  it('stay quiet about a setting whose own value is wrong', () => {
    // AUTH_MODE does not parse: whether OIDC settings are required is unknown, so not asked.
    expect(keysOf(configProblems({ env: { AUTH_MODE: 'none' } }))).toEqual(['AUTH_MODE']);
    // METRICS_ENABLED does not parse: the paths are not compared.
    expect(
      keysOf(configProblems({ env: { ...BYPASS, METRICS_ENABLED: 'maybe', METRICS_PATH: '/mcp' } })),
    ).toEqual(['METRICS_ENABLED']);
  });
});
