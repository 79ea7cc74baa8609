import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseArgs } from '../../src/cli/args.js';
import { describeConfig, describeServers, type LoadInput, loadConfig } from '../../src/config/load.js';
import type { ConfigProblem } from '../../src/config/types.js';
import { configProblems } from '../helpers/config-problems.js';

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-servers-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BYPASS = { AUTH_MODE: 'bypass' };
/** Allow-lists need a login. */
const OIDC = {
  AUTH_MODE: 'oidc',
  OIDC_DISCOVERY_URL: 'https://idp.example.com/.well-known/openid-configuration',
  OIDC_CLIENT_ID: 'proxy',
  OIDC_CLIENT_SECRET: 'proxy-secret',
};

let fileCount = 0;
function yamlFile(lines: string[]): string {
  const path = join(dir, `config-${++fileCount}.yaml`);
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

/** A config file with `servers:` as written (YAML lines under the key). */
function serversFile(...entries: string[]): string {
  return yamlFile(['servers:', ...entries]);
}

/** The problems of a file of `servers:` entries, as [key, value, message]. */
function serverProblems(...entries: string[]): Array<[string, string, string]> {
  const configFile = serversFile(...entries);
  return configProblems({ env: BYPASS, configFile }).map((p) => {
    expect(p.source).toBe(`file ${configFile}`);
    return [p.key, p.value, p.message];
  });
}

const FILES =
  '  - { name: files, path: /files/mcp, command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv] }';
const SEARCH = '  - { name: search, path: /search/mcp, url: "http://127.0.0.1:3001/mcp" }';

describe('the servers without servers: (the single-target case)', () => {
  it('is one server named default at MCP_PATH forwarding to the target URL, and the stdio defaults', () => {
    const config = loadConfig({ env: BYPASS });
    expect(config.singleTarget).toBe(true);
    expect(config.servers).toEqual([
      {
        name: 'default',
        path: '/mcp',
        target: { kind: 'url', url: new URL('http://localhost:3000/') },
        policy: { emails: [], domains: [], groups: [] },
        access: undefined,
      },
    ]);
    expect(config.servers[0]?.target).toEqual({ kind: 'url', url: config.target.url });
    expect(config.stdio).toEqual({
      isolation: 'session',
      env: [],
      maxProcesses: 100,
      idleTimeoutMs: 900_000,
    });
  });

  it('carries MCP_PATH and the MCP_ACCESS rules, the same policy object as config.mcp.access', () => {
    const config = loadConfig({
      env: { ...BYPASS, MCP_PATH: '/api/mcp', MCP_ACCESS: '{"rules": [{"tools": ["x"], "allow": {}}]}' },
    });
    expect(config.servers[0]?.path).toBe('/api/mcp');
    expect(config.mcp.access).toBeDefined();
    expect(config.servers[0]?.access).toBe(config.mcp.access);
  });

  it('runs PROXY_TARGET_COMMAND, split like a shell would, with STDIO_ISOLATION', () => {
    const config = loadConfig({
      env: {
        ...BYPASS,
        PROXY_TARGET_COMMAND: `node -e 'console.log("$HOME")' "a b" c\\ d *`,
        STDIO_ISOLATION: 'user',
      },
    });
    expect(config.singleTarget).toBe(true);
    expect(config.servers[0]?.target).toEqual({
      kind: 'command',
      command: ['node', '-e', 'console.log("$HOME")', 'a b', 'c d', '*'],
      isolation: 'user',
    });
    expect(config.sources.PROXY_TARGET_COMMAND).toBe('env');
  });

  it('takes the command from the file as a string or as a list of words taken as they are', () => {
    const asText = yamlFile(['proxy:', '  target_command: npx -y "@modelcontextprotocol/server-memory"']);
    expect(loadConfig({ env: BYPASS, configFile: asText }).servers[0]?.target).toMatchObject({
      command: ['npx', '-y', '@modelcontextprotocol/server-memory'],
    });
    const asList = yamlFile(['proxy:', `  target_command: [server, "a b", "it's", "$X", "*", "x|y"]`]);
    expect(loadConfig({ env: BYPASS, configFile: asList }).servers[0]?.target).toMatchObject({
      command: ['server', 'a b', "it's", '$X', '*', 'x|y'],
    });
  });

  it('takes the words after -- as they are, and --target-command as text', () => {
    const argv = ['node', 'server.js', 'a b', "it's", '', '$HOME', '&&'];
    const args = parseArgs(['--auth-mode', 'bypass', '--', ...argv]);
    expect(args.command).toBe('serve');
    expect(loadConfig({ flags: args.flags, env: {} }).servers[0]?.target).toEqual({
      kind: 'command',
      command: argv,
      isolation: 'session',
    });
    const flag = parseArgs(['--target-command', 'npx -y server']);
    expect(loadConfig({ flags: flag.flags, env: BYPASS }).servers[0]?.target).toMatchObject({
      command: ['npx', '-y', 'server'],
    });
  });

  it('refuses a command that does not split, naming the problem', () => {
    expect(configProblems({ env: { ...BYPASS, PROXY_TARGET_COMMAND: `npx 'server` } })).toEqual([
      {
        key: 'PROXY_TARGET_COMMAND',
        value: `npx 'server`,
        source: 'env',
        message: "has an unclosed single quote (') at character 5; close it, or write a literal ' as \\'",
      },
    ]);
    // An empty value in the file or the environment is unset; an empty flag is a mistake.
    expect(
      configProblems({ env: BYPASS, flags: { PROXY_TARGET_COMMAND: ' ' } }).map((p) => p.message),
    ).toEqual([
      'is empty; give the program and its arguments, e.g. npx -y @modelcontextprotocol/server-memory',
    ]);
  });

  it('refuses PROXY_TARGET_COMMAND beside a target URL, host or port set to anything but its default', () => {
    const command = { ...BYPASS, PROXY_TARGET_COMMAND: 'server' };
    expect(
      configProblems({
        env: { ...command, PROXY_TARGET_URL: 'http://backend:3000', PROXY_TARGET_PORT: '4000' },
      }),
    ).toEqual([
      {
        key: 'PROXY_TARGET_URL',
        value: 'http://backend:3000',
        source: 'env',
        message:
          'cannot be used with PROXY_TARGET_COMMAND: the proxy runs that command as the MCP server; remove PROXY_TARGET_URL, or PROXY_TARGET_COMMAND to forward to a URL',
      },
      expect.objectContaining({ key: 'PROXY_TARGET_PORT', value: '4000' }),
    ]);
    // The aliases are the same settings.
    expect(configProblems({ env: { ...command, MCP_TARGET_HOST: 'backend' } }).map((p) => p.key)).toEqual([
      'PROXY_TARGET_HOST',
    ]);
    // A default written out, as configs/config.example.yaml does, is no conflict.
    const defaults = yamlFile(['proxy:', '  target_host: localhost', '  target_port: 3000']);
    expect(configProblems({ env: command, configFile: defaults })).toEqual([]);
  });

  it('says in describeConfig which settings the command replaces', () => {
    const rows = describeConfig({ env: { PROXY_TARGET_COMMAND: 'server' } });
    const source = (key: string) => rows.find((r) => r.key === key)?.source;
    expect(source('PROXY_TARGET_URL')).toBe(
      'derived from PROXY_TARGET_HOST/PORT, ignored: PROXY_TARGET_COMMAND is set',
    );
    expect(source('PROXY_TARGET_PORT')).toBe('default, ignored: PROXY_TARGET_COMMAND is set');
    expect(rows.find((r) => r.key === 'PROXY_TARGET_COMMAND')).toEqual({
      key: 'PROXY_TARGET_COMMAND',
      value: 'server',
      source: 'env',
    });
  });
});

describe('servers: (YAML only)', () => {
  it('builds each entry, a command server taking STDIO_ISOLATION unless it sets its own', () => {
    const configFile = serversFile(
      FILES,
      '  - name: notes',
      '    path: /notes/mcp',
      '    command: node notes.js --dir "/srv/my notes"',
      '    isolation: user',
      SEARCH.replace(' }', ', allowed_groups: [eng], allowed_emails: "a@example.com, b@example.com" }'),
    );
    const config = loadConfig({ env: OIDC, configFile });
    expect(config.singleTarget).toBe(false);
    expect(config.mcp.access).toBeUndefined();
    expect(config.servers).toEqual([
      {
        name: 'files',
        path: '/files/mcp',
        target: {
          kind: 'command',
          command: ['npx', '-y', '@modelcontextprotocol/server-filesystem', '/srv'],
          isolation: 'session',
        },
        policy: { emails: [], domains: [], groups: [] },
        access: undefined,
      },
      {
        name: 'notes',
        path: '/notes/mcp',
        target: {
          kind: 'command',
          command: ['node', 'notes.js', '--dir', '/srv/my notes'],
          isolation: 'user',
        },
        policy: { emails: [], domains: [], groups: [] },
        access: undefined,
      },
      {
        name: 'search',
        path: '/search/mcp',
        target: { kind: 'url', url: new URL('http://127.0.0.1:3001/mcp') },
        policy: { emails: ['a@example.com', 'b@example.com'], domains: [], groups: ['eng'] },
        access: undefined,
      },
    ]);
    const userDefault = loadConfig({ env: { ...OIDC, STDIO_ISOLATION: 'user' }, configFile });
    expect(userDefault.servers[0]?.target).toMatchObject({ isolation: 'user' });
    expect(config.sources.SERVERS).toBe(`file ${configFile}`);
  });

  it('compiles each entry’s mcp_access', () => {
    const configFile = serversFile(
      '  - name: search',
      '    path: /search/mcp',
      '    url: http://127.0.0.1:3001/mcp',
      '    mcp_access:',
      '      default: deny',
      '      rules:',
      '        - tools: ["search_*"]',
      '          allow: {}',
    );
    const access = loadConfig({ env: BYPASS, configFile }).servers[0]?.access;
    expect(access?.decide('tool', 'search_web', undefined).allowed).toBe(true);
    expect(access?.decide('tool', 'delete', undefined).allowed).toBe(false);
  });

  it('is unset when nothing is under the key, and never read from the environment or a flag', () => {
    expect(loadConfig({ env: BYPASS, configFile: yamlFile(['servers:']) }).singleTarget).toBe(true);
    const env = { ...BYPASS, SERVERS: '[{"name": "a", "path": "/a", "url": "http://x"}]' };
    expect(loadConfig({ env }).singleTarget).toBe(true);
    expect(() => parseArgs(['--servers', '[]'])).toThrow(/unknown flag "--servers"/);
  });

  it('accepts configs/config.example.yaml’s written-out defaults beside it', () => {
    const configFile = yamlFile([
      'proxy:',
      '  target_host: localhost',
      '  target_port: 3000',
      '  mcp_path: /mcp',
      'servers:',
      FILES,
    ]);
    expect(configProblems({ env: BYPASS, configFile })).toEqual([]);
    const rows = describeConfig({ env: {}, configFile });
    expect(rows.find((r) => r.key === 'MCP_PATH')?.source).toBe(
      `file ${configFile}, ignored: servers is set`,
    );
    expect(rows.find((r) => r.key === 'servers')?.source).toBe(`file ${configFile}`);
  });

  it('refuses each single-target setting beside it, naming the entry key to use instead', () => {
    const configFile = serversFile(FILES);
    const found = configProblems({
      configFile,
      env: {
        ...BYPASS,
        PROXY_TARGET_URL: 'http://backend:3000',
        PROXY_TARGET_COMMAND: 'server',
        MCP_PATH: '/x/mcp',
        MCP_ACCESS: '{"rules": [{"tools": ["*"], "allow": {}}]}',
      },
    });
    expect(found.map((p) => [p.key, p.source, p.message.split('; ')[1]])).toEqual([
      ['PROXY_TARGET_URL', 'env', "use a servers: entry's url instead, and remove PROXY_TARGET_URL"],
      [
        'PROXY_TARGET_COMMAND',
        'env',
        "use a servers: entry's command instead, and remove PROXY_TARGET_COMMAND",
      ],
      ['MCP_PATH', 'env', "use each servers: entry's path instead, and remove MCP_PATH"],
      ['MCP_ACCESS', 'env', "use a servers: entry's mcp_access instead, and remove MCP_ACCESS"],
    ]);
    expect(found[0]?.message).toMatch(/^cannot be used with servers: /);
    const port = configProblems({ configFile, env: { ...BYPASS, PROXY_TARGET_PORT: '4000' } });
    expect(port.map((p) => p.key)).toEqual(['PROXY_TARGET_PORT']);
  });

  describe('refuses every bad entry, naming its key and the fix', () => {
    const cases: Array<[what: string, entries: string[], problems: Array<[string, string, string]>]> = [
      [
        'a mapping instead of a list',
        ['  name: files'],
        [
          [
            'servers',
            '',
            'must be a list of servers, each a mapping such as {name: files, path: /files/mcp, command: [npx, -y, @modelcontextprotocol/server-filesystem, /srv]}',
          ],
        ],
      ],
      [
        'an empty list',
        ['  []'],
        [
          [
            'servers',
            '',
            'is an empty list: no server would be served; list at least one, or remove servers: and set PROXY_TARGET_URL or PROXY_TARGET_COMMAND',
          ],
        ],
      ],
      [
        'an entry that is no mapping',
        ['  - files'],
        [['servers[0]', '', 'must be a mapping with name, path, and url or command']],
      ],
      [
        'an unknown key',
        [`${SEARCH.slice(0, -2)}, allowed_group: [eng], color: red }`],
        [
          [
            'servers[0].allowed_group',
            '',
            'is not a key of a server; did you mean allowed_groups? (the keys are name, path, url, command, isolation, allowed_emails, allowed_domains, allowed_groups, mcp_access)',
          ],
          [
            'servers[0].color',
            '',
            'is not a key of a server (the keys are name, path, url, command, isolation, allowed_emails, allowed_domains, allowed_groups, mcp_access)',
          ],
        ],
      ],
      [
        'a missing name and path',
        ['  - { url: "http://127.0.0.1:3001/mcp" }'],
        [
          [
            'servers[0].name',
            '',
            'is missing; give the server a name such as files (it names it in metrics and /health)',
          ],
          [
            'servers[0].path',
            '',
            "is missing; give the public path of the server's MCP endpoint, e.g. /files/mcp",
          ],
        ],
      ],
      [
        'names that are no metrics label',
        [
          SEARCH.replace('name: search', 'name: Search'),
          SEARCH.replace('name: search', 'name: -x').replace('/search/', '/b/'),
          SEARCH.replace('name: search', `name: ${'x'.repeat(64)}`).replace('/search/', '/c/'),
          SEARCH.replace('name: search', 'name: "a b"').replace('/search/', '/d/'),
        ],
        ['Search', '-x', 'x'.repeat(64), 'a b'].map((name, i) => [
          `servers[${i}].name`,
          name,
          'must be 1 to 63 lowercase letters, digits, - or _, starting with a letter or digit, e.g. files: it becomes a metrics label and a /health key',
        ]),
      ],
      [
        'a name used twice',
        [SEARCH, SEARCH.replace('/search/', '/other/')],
        [['servers[1].name', 'search', 'is already the name of servers[0]; give every server its own name']],
      ],
      [
        'paths checked like MCP_PATH',
        [
          FILES.replace('/files/mcp', '/files/mcp/'),
          SEARCH.replace('/search/mcp', '/token'),
          '  - { name: c, path: [x], url: "http://127.0.0.1:3001/mcp" }',
        ],
        [
          [
            'servers[0].path',
            '/files/mcp/',
            'must be a path such as /mcp: starting with /, no trailing /, no query, dot segments, spaces or %',
          ],
          [
            'servers[1].path',
            '/token',
            'clashes with /token, which the proxy answers itself; choose e.g. /mcp',
          ],
          ['servers[2].path', '', "must be the public path of the server's MCP endpoint, e.g. /files/mcp"],
        ],
      ],
      [
        'a path equal to or below another’s',
        [
          FILES.replace('/files/mcp', '/a/mcp'),
          SEARCH.replace('/search/mcp', '/a/mcp/x'),
          SEARCH.replace('search', 'c').replace('/search/mcp', '/a/mcp'),
        ],
        [
          [
            'servers[1].path',
            '/a/mcp/x',
            'overlaps servers[0].path (/a/mcp): a server owns its path and every path below it; give each server a path of its own, e.g. /<name>/mcp',
          ],
          [
            'servers[2].path',
            '/a/mcp',
            'overlaps servers[0].path (/a/mcp): a server owns its path and every path below it; give each server a path of its own, e.g. /<name>/mcp',
          ],
        ],
      ],
      [
        'neither url nor command, and both',
        [
          '  - { name: a, path: /a/mcp }',
          '  - { name: b, path: /b/mcp, url: "http://x/mcp", command: [server] }',
        ],
        [
          [
            'servers[0].url',
            '',
            'is missing, and so is command: give url (an MCP server over HTTP) or command (a stdio MCP server the proxy runs)',
          ],
          [
            'servers[1].command',
            '',
            'cannot be given with url: a server is reached over HTTP or run as a command; keep one',
          ],
        ],
      ],
      [
        'urls checked like PROXY_TARGET_URL, never quoted',
        [
          SEARCH.replace('http://127.0.0.1:3001/mcp', 'ftp://127.0.0.1/mcp'),
          SEARCH.replace('search', 'b').replace('/search/', '/b/').replace('3001/mcp', '3001/mcp?x=1'),
          SEARCH.replace('search', 'c').replace('/search/', '/c/').replace('http://', 'http://user:s3cret@'),
          SEARCH.replace('search', 'd')
            .replace('/search/', '/d/')
            .replace('http://127.0.0.1:3001/mcp', '127.0.0.1:3001'),
          SEARCH.replace('search', 'e')
            .replace('/search/', '/e/')
            .replace('"http://127.0.0.1:3001/mcp"', '[x]'),
        ],
        [
          ['servers[0].url', '', 'must be an absolute http or https URL, e.g. http://127.0.0.1:3001/mcp'],
          ['servers[1].url', '', 'must not contain a query string; remove the ?... part'],
          ['servers[2].url', '', 'must not contain credentials (user:password@); remove them'],
          ['servers[3].url', '', 'must be an absolute http or https URL, e.g. http://127.0.0.1:3001/mcp'],
          ['servers[4].url', '', 'must be an absolute http or https URL, e.g. http://127.0.0.1:3001/mcp'],
        ],
      ],
      [
        'commands: an empty list, an empty word, a string that does not split',
        [
          '  - { name: a, path: /a/mcp, command: [] }',
          '  - { name: b, path: /b/mcp, command: [npx, ""] }',
          `  - { name: c, path: /c/mcp, command: "npx 'x" }`,
          '  - { name: d, path: /d/mcp, command: "server > log" }',
          '  - { name: e, path: /e/mcp, command: "" }',
        ],
        [
          [
            'servers[0].command',
            '',
            'must be the program and its arguments: a list such as [npx, -y, @modelcontextprotocol/server-memory], or one string',
          ],
          [
            'servers[1].command[1]',
            '',
            'must be a non-empty string (the program or one argument); give its text or remove it',
          ],
          [
            'servers[2].command',
            "npx 'x",
            "has an unclosed single quote (') at character 5; close it, or write a literal ' as \\'",
          ],
          [
            'servers[3].command',
            'server > log',
            "contains the shell operator > at character 8, but no shell runs the command; quote it ('>') if it is part of an argument, or run a shell yourself: sh -c '...'",
          ],
          [
            'servers[4].command',
            '',
            'is empty; give the program and its arguments, e.g. npx -y @modelcontextprotocol/server-memory',
          ],
        ],
      ],
      [
        'an unknown isolation, and an isolation for a url server',
        [`${FILES.slice(0, -2)}, isolation: process }`, `${SEARCH.slice(0, -2)}, isolation: user }`],
        [
          [
            'servers[0].isolation',
            'process',
            'must be session (a child per MCP session) or user (one per user); leave it out for STDIO_ISOLATION',
          ],
          [
            'servers[1].isolation',
            '',
            'applies only to a server run as a command, not to one at a url; remove it',
          ],
        ],
      ],
      [
        'allow-lists checked like ALLOWED_*',
        [
          `${SEARCH.slice(0, -2)}, allowed_emails: [bob], allowed_domains: "@example.com", allowed_groups: { eng: x } }`,
        ],
        [
          ['servers[0].allowed_emails', '', '"bob" is not an email address (name@domain) or *@domain.'],
          [
            'servers[0].allowed_domains',
            '',
            '"@example.com" is not a domain; use example.com, or *.example.com for its subdomains.',
          ],
          ['servers[0].allowed_groups', '', 'must be a list (or one comma-separated string), e.g. [eng]'],
        ],
      ],
      [
        'mcp_access checked like MCP_ACCESS',
        [`${SEARCH.slice(0, -2)}, mcp_access: { rules: [{ tools: ["*"], alow: {} }] } }`],
        [
          [
            'servers[0].mcp_access',
            '',
            'rules[0].alow is not a known key; did you mean allow? (the keys here are tools, prompts, resources, allow, scope)',
          ],
        ],
      ],
    ];
    for (const [what, entries, problems] of cases)
      it(what, () => {
        expect(serverProblems(...entries)).toEqual(problems);
      });

    it('accepts paths that only share a prefix, and / beside others', () => {
      const entries = [FILES.replace('/files/mcp', '/a/mcp'), SEARCH.replace('/search/mcp', '/a/mcpx')];
      expect(
        serverProblems(...entries, SEARCH.replace('search', 'root').replace('/search/mcp', '/')),
      ).toEqual([]);
    });

    it('a path on or under a served METRICS_PATH', () => {
      const configFile = serversFile(FILES.replace('/files/mcp', '/metrics/files'));
      expect(configProblems({ env: BYPASS, configFile })).toEqual([
        {
          key: 'servers[0].path',
          value: '',
          source: `file ${configFile}`,
          message: '/metrics/files overlaps METRICS_PATH (/metrics); give them different paths',
        },
      ]);
      expect(configProblems({ env: { ...BYPASS, METRICS_ENABLED: 'false' }, configFile })).toEqual([]);
    });

    it('rules naming people in bypass mode', () => {
      const entry = `${SEARCH.slice(0, -2)}, mcp_access: { rules: [{ tools: ["*"], allow: { groups: [eng] } }] } }`;
      expect(serverProblems(entry)).toEqual([
        [
          'servers[0].mcp_access',
          '',
          'rules[0].allow names emails, domains or groups, but in bypass mode there is no user: use `allow: {}` or AUTH_MODE=oidc',
        ],
      ]);
    });

    it('allow-lists in bypass mode, which would let everyone in', () => {
      const entry = `${SEARCH.slice(0, -2)}, allowed_groups: [eng], allowed_emails: [a@example.com] }`;
      const refusal =
        'cannot be applied in bypass mode, where nobody logs in: remove it or use AUTH_MODE=oidc';
      expect(serverProblems(entry)).toEqual([
        ['servers[0].allowed_emails', '', refusal],
        ['servers[0].allowed_groups', '', refusal],
      ]);
    });
  });
});

describe('STDIO_*', () => {
  it('reads the isolation, the environment names, the process limit and the idle timeout', () => {
    const config = loadConfig({
      env: {
        ...BYPASS,
        STDIO_ISOLATION: 'User',
        STDIO_ENV: 'GITHUB_TOKEN, NODE_OPTIONS',
        STDIO_MAX_PROCESSES: '8',
        STDIO_IDLE_TIMEOUT: '15m',
      },
    });
    expect(config.stdio).toEqual({
      isolation: 'user',
      env: ['GITHUB_TOKEN', 'NODE_OPTIONS'],
      maxProcesses: 8,
      idleTimeoutMs: 900_000,
    });
  });

  it('refuses bad values, naming the key', () => {
    const found = configProblems({
      env: { ...BYPASS, STDIO_ISOLATION: 'process', STDIO_MAX_PROCESSES: '0', STDIO_IDLE_TIMEOUT: '0' },
    });
    expect(found.map((p) => [p.key, p.message])).toEqual([
      ['STDIO_ISOLATION', 'must be one of: session, user'],
      ['STDIO_MAX_PROCESSES', 'must be an integer from 1 to 100000'],
      ['STDIO_IDLE_TIMEOUT', 'must be a number of seconds from 1 to 604800'],
    ]);
  });

  it("refuses in STDIO_ENV every one of the proxy's secrets, in any case, naming the fix", () => {
    const secrets = [
      'SESSION_SECRET',
      'OIDC_CLIENT_SECRET',
      'ADMIN_TOKEN',
      'REDIS_URL',
      'MCP_CLIENTS',
      'OTEL_EXPORTER_OTLP_HEADERS',
      'OTEL_EXPORTER_OTLP_TRACES_HEADERS',
      'session_secret',
    ];
    const found: ConfigProblem[] = configProblems({
      env: { ...BYPASS, STDIO_ENV: `PATH,${secrets.join(',')}` },
    });
    expect(found.map((p) => p.message)).toEqual(
      secrets.map(
        (name) =>
          `names ${name}, one of the proxy's secrets, which a stdio server must never get; remove it from STDIO_ENV (give the server a credential of its own, under another name)`,
      ),
    );
    expect(new Set(found.map((p) => p.key))).toEqual(new Set(['STDIO_ENV']));
  });

  it('refuses a name that is no environment variable name', () => {
    const input: LoadInput = { env: { ...BYPASS, STDIO_ENV: 'GOOD_1, 1BAD, BAD-NAME, A=B' } };
    expect(configProblems(input).map((p) => p.message.split(' is not')[0])).toEqual([
      '"1BAD"',
      '"BAD-NAME"',
      '"A=B"',
    ]);
  });
});

describe('describeServers (check-config)', () => {
  it('lists the servers of servers:, one line each', () => {
    const configFile = serversFile(
      FILES.replace('/srv', '"/srv/my files"'),
      `${SEARCH.slice(0, -2)}, allowed_groups: [eng, ops], mcp_access: { rules: [{ tools: ["*"], allow: {} }] } }`,
    );
    expect(describeServers(loadConfig({ env: OIDC, configFile }))).toEqual([
      '# servers: 2, from servers:; a path no server owns gets 404',
      "files   /files/mcp   command npx -y @modelcontextprotocol/server-filesystem '/srv/my files'; isolation session",
      'search  /search/mcp  url http://127.0.0.1:3001/mcp; allowed_groups eng,ops; mcp_access rules',
    ]);
  });

  it('names where the one server of the single-target case comes from', () => {
    expect(describeServers(loadConfig({ env: BYPASS }))).toEqual([
      '# server: one, from PROXY_TARGET_URL (or host/port) and MCP_PATH; it also gets every path the proxy does not answer itself',
      'default  /mcp  url http://localhost:3000/',
    ]);
    expect(describeServers(loadConfig({ env: { ...BYPASS, PROXY_TARGET_COMMAND: 'server --x' } }))[1]).toBe(
      'default  /mcp  command server --x; isolation session',
    );
  });
});
