import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SETTINGS, type SettingSpec } from '../../src/config/settings.js';
import { type Finished, untilExit } from '../helpers/process.js';
import { freePort, type Listening, startEchoBackend } from '../helpers/servers.js';

// The built CLI: `npm test` builds before vitest; run `npm run build` before running this alone.
const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
const EXAMPLE = fileURLToPath(new URL('../../configs/config.example.yaml', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};
const SECRET = 'cli-test-s3cret-do-not-print';

const children = new Set<ChildProcess>();
const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-cli-'));
afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Only PATH from this process: a developer's or CI's own settings must not leak into the child. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', ...env };
}

function launch(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Runs the CLI to completion (it must exit on its own). */
function run(args: string[], env: Record<string, string> = {}, timeoutMs = 15_000): Promise<Finished> {
  return untilExit(launch(args, env), `mcp-oidc-proxy ${args.join(' ')}`, timeoutMs);
}

/** Lines the child writes to stdout, with a way to wait for one. */
function watchLines(child: ChildProcess): {
  lines: string[];
  waitFor(pred: (line: string) => boolean, what: string, timeoutMs?: number): Promise<string>;
} {
  const lines: string[] = [];
  let partial = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (c: Buffer) => {
    const parts = (partial + c.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts.filter(Boolean));
    for (const w of waiters) w();
  });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c;
  });
  return {
    lines,
    waitFor: (pred, what, timeoutMs = 15_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = lines.find(pred);
          if (hit !== undefined) finish(() => resolve(hit));
        };
        const onExit = (code: number | null): void =>
          finish(() => reject(new Error(`exited (${code}) before ${what}:\n${stderr}\n${lines.join('\n')}`)));
        const timer = setTimeout(
          () => finish(() => reject(new Error(`timed out waiting for ${what}:\n${stderr}`))),
          timeoutMs,
        );
        const finish = (then: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
          then();
        };
        waiters.add(check);
        child.once('exit', onExit);
        check();
      }),
  };
}

describe('mcp-oidc-proxy CLI', () => {
  it('--version prints the package.json version', async () => {
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${PACKAGE.version}\n`);
  });

  it('--help lists every environment variable, alias and YAML key', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const spec of SETTINGS as readonly SettingSpec[]) {
      for (const name of spec.yamlOnly ? [spec.yaml] : [spec.env, ...(spec.aliases ?? []), spec.yaml])
        expect(r.stdout, name).toContain(name);
    }
    expect(r.stdout).toContain('check-config');
  });

  it('exits 64 naming an unknown flag', async () => {
    const r = await run(['--prot', '8080']);
    expect(r.code).toBe(64);
    expect(r.stderr).toBe(
      'mcp-oidc-proxy: unknown flag "--prot"; did you mean --port? (see --help for the flags)\n',
    );
  });

  it('with no arguments and no OIDC settings exits 2 naming OIDC_DISCOVERY_URL and OIDC_CLIENT_ID', async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('OIDC_DISCOVERY_URL: is required when AUTH_MODE=oidc');
    expect(r.stderr).toContain('OIDC_CLIENT_ID: is required when AUTH_MODE=oidc');
    expect(r.stderr).toContain('check-config');
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stdout).toBe('');
  });

  it('exits 2 on bad values, naming every key and never printing a secret', async () => {
    const r = await run([], {
      AUTH_MODE: 'bypass',
      SERVER_PORT: 'abc',
      LOG_LEVEL: 'loud',
      MCP_PATH: 'mcp',
      TRUSTED_PROXIES: 'junk',
      OIDC_CLIENT_SECRET: `${SECRET}\tpasted`,
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('invalid configuration (5 problems)');
    for (const key of ['SERVER_PORT="abc"', 'LOG_LEVEL="loud"', 'MCP_PATH="mcp"', 'TRUSTED_PROXIES="junk"'])
      expect(r.stderr).toContain(key);
    expect(r.stderr).toContain('OIDC_CLIENT_SECRET="********"');
    expect(r.stderr + r.stdout).not.toContain(SECRET);
  });

  it('check-config prints the effective config with the secret masked and exits 0', async () => {
    const r = await run(['check-config', '--port', '9999'], {
      SERVER_PORT: '8888',
      OIDC_DISCOVERY_URL: 'https://idp.example.com/.well-known/openid-configuration',
      OIDC_CLIENT_ID: 'proxy-client',
      OIDC_CLIENT_SECRET: SECRET,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout + r.stderr).not.toContain(SECRET);
    expect(r.stdout).toMatch(/^OIDC_CLIENT_SECRET\s+= \*{8}\s+# env$/m);
    expect(r.stdout).toMatch(/^OIDC_CLIENT_ID\s+= proxy-client\s+# env$/m);
    expect(r.stdout).toMatch(/^SERVER_PORT\s+= 9999\s+# flag$/m);
    expect(r.stdout).toMatch(/^PUBLIC_URL\s+= http:\/\/localhost:9999\s+# derived from SERVER_PORT$/m);
    expect(r.stdout).toMatch(/configuration OK\n$/);
  });

  it('check-config exits 2 for an invalid config and reports every problem', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, `server:\n  port: 99999\noidc:\n  client_secret: ${SECRET}\n  clientid: x\n`);
    const r = await run(['check-config', '--config', file], { AUTH_MODE: 'bypass' });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^SERVER_PORT\s+= 99999\s+# file /m);
    expect(r.stderr).toContain(`SERVER_PORT="99999" (from file ${file}): must be an integer from 0 to 65535`);
    expect(r.stderr).toContain('oidc.clientid (from file');
    expect(r.stderr).toContain('did you mean oidc.client_id?');
    expect(r.stdout).not.toContain('configuration OK');
    expect(r.stdout + r.stderr).not.toContain(SECRET);
  });

  it('check-config exits 2 for bad mcp_access rules, naming each by its path', async () => {
    const file = join(dir, 'bad-mcp-access.yaml');
    writeFileSync(
      file,
      'mcp_access:\n  rules:\n    - tool: [x]\n    - tools: [y]\n      allow: { groups: [admins] }\n',
    );
    const r = await run(['check-config', '--config', file], { AUTH_MODE: 'bypass' });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `MCP_ACCESS (from file ${file}): mcp_access.rules[0].tool is not a known key; did you mean tools?`,
    );
    expect(r.stderr).toContain(`MCP_ACCESS (from file ${file}): mcp_access.rules[0] names no tools`);
    expect(r.stdout).not.toContain('configuration OK');

    // Valid rules that name people, in bypass mode: the cross-field rule says how to fix it.
    writeFileSync(file, 'mcp_access:\n  rules:\n    - tools: [y]\n      allow: { groups: [admins] }\n');
    const bypass = await run(['check-config', '--config', file], { AUTH_MODE: 'bypass' });
    expect(bypass.code).toBe(2);
    expect(bypass.stderr).toContain(
      'mcp_access.rules[0].allow names emails, domains or groups, but in bypass mode there is no user: use `allow: {}` or AUTH_MODE=oidc',
    );
  });

  it('check-config takes a stdio server after -- word for word, and lists the server it would run', async () => {
    const r = await run([
      'check-config',
      '--auth-mode',
      'bypass',
      '--',
      'npx',
      '-y',
      'server',
      'a b',
      '$HOME',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^PROXY_TARGET_COMMAND\s+= npx -y server 'a b' '\$HOME'\s+# flag$/m);
    expect(r.stdout).toMatch(
      /^PROXY_TARGET_URL\s+= .*# derived from PROXY_TARGET_HOST\/PORT, ignored: PROXY_TARGET_COMMAND is set$/m,
    );
    expect(r.stdout).toContain('# server: one, from PROXY_TARGET_COMMAND and MCP_PATH');
    expect(r.stdout).toMatch(
      /^default {2}\/mcp {2}command npx -y server 'a b' '\$HOME'; isolation session$/m,
    );
    expect(r.stdout).toMatch(/configuration OK\n$/);

    const demo = await run(['demo', '--', 'npx', 'server']);
    expect(demo.code).toBe(64);
    expect(demo.stderr).toContain('"demo" takes no command after --; only serve and check-config do');
    expect(demo.stderr).toContain(
      'the demo takes one as --stdio "npx -y @modelcontextprotocol/server-memory"',
    );
  });

  it('demo --stdio without a command, or with one that does not split, is a usage error (64) saying why', async () => {
    const missing = await run(['demo', '--stdio']);
    expect(missing.code).toBe(64);
    expect(missing.stderr).toBe(
      `mcp-oidc-proxy: flag --stdio needs the stdio MCP server's command: --stdio "npx -y @modelcontextprotocol/server-memory"\n`,
    );
    const beforeFlag = await run(['demo', '--stdio', '--port', '0']);
    expect(beforeFlag.code).toBe(64);
    expect(beforeFlag.stderr).toContain("flag --stdio needs the stdio MCP server's command");
    const empty = await run(['demo', '--stdio', '  ']);
    expect(empty.code).toBe(64);
    expect(empty.stderr).toContain('the --stdio command is empty; give the program and its arguments');
    const piped = await run(['demo', '--stdio', 'node server.js | tee log']);
    expect(piped.code).toBe(64);
    expect(piped.stderr).toContain(
      'the --stdio command contains the shell operator | at character 16, but no shell runs the command',
    );
    const unclosed = await run(['demo', "--stdio=node 'server.js"]);
    expect(unclosed.code).toBe(64);
    expect(unclosed.stderr).toContain("the --stdio command has an unclosed single quote (') at character 6");
    const twice = await run(['demo', '--stdio', 'node a.js', '--target-command', 'node b.js']);
    expect(twice.code).toBe(64);
    expect(twice.stderr).toContain('the command is given twice, by --target-command and --stdio');
    const serve = await run(['--stdio', 'node a.js']);
    expect(serve.code).toBe(64);
    expect(serve.stderr).toContain('--stdio is a flag of demo; to run a stdio MCP server with "serve"');
    // None of them got as far as starting anything.
    for (const r of [missing, beforeFlag, empty, piped, unclosed, twice, serve]) expect(r.stdout).toBe('');
  });

  it('check-config lists the servers of servers:, and exits 2 naming each bad entry by its key', async () => {
    const file = join(dir, 'servers.yaml');
    writeFileSync(
      file,
      [
        'servers:',
        '  - name: files',
        '    path: /files/mcp',
        '    command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/shared]',
        '    isolation: user',
        '  - name: search',
        '    path: /search/mcp',
        '    url: http://127.0.0.1:3001/mcp',
        '    allowed_groups: [eng]',
        '',
      ].join('\n'),
    );
    const ok = await run(['check-config', '--config', file], {
      AUTH_MODE: 'oidc',
      OIDC_DISCOVERY_URL: 'https://idp.example.com/.well-known/openid-configuration',
      OIDC_CLIENT_ID: 'proxy',
      OIDC_CLIENT_SECRET: 'proxy-secret',
    });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^servers\s+= \[\{"name":"files".*# file /m);
    expect(ok.stdout).toMatch(/^MCP_PATH\s+= \/mcp\s+# default, ignored: servers is set$/m);
    expect(ok.stdout).toContain(
      [
        '# servers: 2, from servers:; a path no server owns gets 404',
        'files   /files/mcp   command npx -y @modelcontextprotocol/server-filesystem /srv/shared; isolation user',
        'search  /search/mcp  url http://127.0.0.1:3001/mcp; allowed_groups eng',
      ].join('\n'),
    );

    writeFileSync(file, 'servers:\n  - name: files\n    path: /files/mcp\n    url: http://x/mcp?y=1\n');
    const bad = await run(['check-config', '--config', file], {
      AUTH_MODE: 'bypass',
      PROXY_TARGET_URL: 'http://backend:3000',
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      `servers[0].url (from file ${file}): must not contain a query string; remove the ?... part`,
    );
    expect(bad.stderr).toContain(
      'PROXY_TARGET_URL="http://backend:3000" (from env): cannot be used with servers: (the list names each server\'s target, path and rules); use a servers: entry\'s url instead, and remove PROXY_TARGET_URL',
    );
    expect(bad.stdout).not.toContain('configuration OK');
  });

  it('check-config accepts configs/config.example.yaml in bypass mode', async () => {
    const r = await run(['check-config', '--config', EXAMPLE], { AUTH_MODE: 'bypass' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('configuration OK');
  });

  it('reports a port already in use naming SERVER_PORT, and exits non-zero', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    try {
      const r = await run([], {
        AUTH_MODE: 'bypass',
        SERVER_HOST: '127.0.0.1',
        SERVER_PORT: String(port),
        PROXY_TARGET_URL: 'http://127.0.0.1:1',
      });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`cannot listen on 127.0.0.1:${port}: the port is already in use`);
      expect(r.stderr).toContain('SERVER_PORT');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  describe('serving with AUTH_MODE=bypass', () => {
    let backend: Listening | undefined;
    afterAll(async () => {
      await backend?.close();
    });

    it('warns loudly, logs the listening line, answers /health and stops on SIGTERM', async () => {
      backend = await startEchoBackend();
      const port = await freePort();
      const child = launch([], {
        AUTH_MODE: 'bypass',
        SERVER_HOST: '127.0.0.1',
        SERVER_PORT: String(port),
        PROXY_TARGET_URL: backend.url,
      });
      const out = watchLines(child);
      const listening = await out.waitFor(
        (l) => l.includes('mcp-oidc-proxy listening'),
        'the listening line',
      );
      const logs = out.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
      const warn = logs.find((l) => l.level === 'warn' && String(l.msg).includes('AUTH_MODE=bypass'));
      expect(warn?.msg).toMatch(/NO LOGIN/);
      expect(logs.indexOf(warn as Record<string, unknown>)).toBeLessThan(out.lines.indexOf(listening));
      expect(JSON.parse(listening)).toMatchObject({ listen: `127.0.0.1:${port}`, auth_mode: 'bypass' });

      const health = await fetch(`http://127.0.0.1:${port}/health`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({
        status: 'healthy',
        checks: { proxy_target: { status: 'healthy' } },
      });

      // 'close' comes after the exit and after stdout is fully read.
      const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await closed).toBe(0);
      expect(out.lines.some((l) => l.includes('shutdown complete'))).toBe(true);
    });
  });
});
