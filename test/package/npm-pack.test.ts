import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/ports.js';
import { type Finished, untilExit } from '../helpers/process.js';

// Packs the project as npm would publish it, installs the tarball into an empty project (its
// dependencies come from the registry) and runs the installed CLI. Uses the built dist/: `npm test`
// builds before vitest; run `npm run build` before running this alone.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-pack-'));
const project = join(dir, 'project');
const children = new Set<ChildProcess>();

/** PATH and HOME (npm's cache and user config), proxy settings, and nothing of the proxy's own settings. */
function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir };
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(https?_proxy|no_proxy|npm_config_(registry|cache|userconfig))$/i.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

function run(
  cmd: string,
  args: string[],
  cwd: string,
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<Finished> {
  const child = spawn(cmd, args, { cwd, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return untilExit(child, `${cmd} ${args.join(' ')}`, timeoutMs);
}

beforeAll(async () => {
  // --ignore-scripts: no `prepare` rebuild of dist/ while other test files use it.
  const pack = await run('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], ROOT, 60_000);
  expect(pack.code, pack.stderr).toBe(0);
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  expect(tarball).toBeDefined();
  writeFileSync(join(dir, 'package.json'), '{}\n'); // keeps npm from walking up to a parent project
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), '{ "name": "empty", "private": true }\n');
  const install = await run(
    'npm',
    ['install', '--no-audit', '--no-fund', join(dir, tarball as string)],
    project,
    120_000,
  );
  expect(install.code, install.stderr).toBe(0);
}, 200_000);

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('the npm package', () => {
  it('contains what runs and nothing of the sources, tests or source maps', () => {
    const installed = join(project, 'node_modules', 'mcp-oidc-proxy');
    expect(existsSync(join(installed, 'dist', 'cli', 'main.js'))).toBe(true);
    expect(existsSync(join(installed, 'configs', 'config.example.yaml'))).toBe(true);
    expect(existsSync(join(installed, 'LICENSE'))).toBe(true);
    expect(existsSync(join(installed, 'README.md'))).toBe(true);
    for (const absent of ['src', 'test', 'tsconfig.json', 'dist/cli/main.js.map']) {
      expect(existsSync(join(installed, absent)), absent).toBe(false);
    }
  });

  it('installs a working `mcp-oidc-proxy` command: --version and check-config', async () => {
    const version = await run('npx', ['--no', '--', 'mcp-oidc-proxy', '--version'], project, 30_000);
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout.trim()).toBe(PACKAGE.version);

    const check = await run('npx', ['--no', '--', 'mcp-oidc-proxy', 'check-config'], project, 30_000, {
      AUTH_MODE: 'bypass',
    });
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/AUTH_MODE\s+=\s+bypass/);
    expect(check.stdout).toContain('configuration OK');
  });

  it('runs the demo, which answers /health with 200', async () => {
    await withInstalledCommand(['demo'], async () => {});
  });

  it('serves a stdio MCP server given after --', async () => {
    const probe = fileURLToPath(new URL('../helpers/stdio-probe-server.mjs', import.meta.url));
    const args = ['--auth-mode', 'bypass', '--host', '127.0.0.1', '--', process.execPath, probe];
    await withInstalledCommand(args, async (url) => {
      const client = new Client({ name: 'package-stdio', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`)));
      const echoed = await client.callTool({ name: 'echo', arguments: { text: 'through the package' } });
      expect(echoed.content).toEqual([{ type: 'text', text: 'through the package' }]);
      await client.close();
    });
  });
});

/**
 * Runs the installed command (`npx --no -- mcp-oidc-proxy ...args --port P`) until /health
 * answers 200, hands its URL to `use`, then stops it (its whole process group: npx's child node
 * goes with it).
 */
async function withInstalledCommand(args: string[], use: (url: string) => Promise<void>): Promise<void> {
  const [port] = await freePorts(1);
  const child = spawn('npx', ['--no', '--', 'mcp-oidc-proxy', '--port', String(port), ...args], {
    cwd: project,
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.add(child);
  let output = '';
  child.stdout?.on('data', (c: Buffer) => {
    output += c;
  });
  child.stderr?.on('data', (c: Buffer) => {
    output += c;
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    let status = 0;
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && child.exitCode === null) {
      try {
        status = (await fetch(`http://127.0.0.1:${port}/health`)).status;
        if (status === 200) break;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(status, output).toBe(200);
    await use(`http://127.0.0.1:${port}`);
  } finally {
    if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      if (child.pid !== undefined && child.exitCode === null) process.kill(-child.pid, 'SIGKILL');
    }, 5_000);
    await exited;
    clearTimeout(timer);
    children.delete(child);
  }
}
