// The release of `npm run build:all`: every binary is listed in SHA256SUMS with its real hash,
// install.sh installs from it, the linux-arm64 binary runs (under qemu-user, as an arm64 machine
// would run it) and the macOS one is a well-formed x86_64 Mach-O with the application injected.
// A Mac cannot be reached from here, so the macOS binary is checked by its structure only.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { firstHealthy, terminate, untilExit } from '../helpers/process.js';
import { freePort, type Listening, startEchoBackend } from '../helpers/servers.js';

const RELEASE = fileURLToPath(new URL('../../dist/bin/', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};
const BINARIES = ['mcp-oidc-proxy-linux-x64', 'mcp-oidc-proxy-linux-arm64', 'mcp-oidc-proxy-darwin-x64'];
const SEA_FUSE_FLIPPED = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2:1';
// The arm64 C runtime of the Debian packages libc6-arm64-cross and libstdc++6-arm64-cross.
const ARM64_SYSROOT = '/usr/aarch64-linux-gnu';

if (!existsSync(join(RELEASE, 'SHA256SUMS'))) {
  throw new Error(`${RELEASE}SHA256SUMS does not exist: run \`npm run build:all\` first`);
}

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-release-'));
const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function head(file: string, bytes: number): Buffer {
  const fd = openSync(file, 'r');
  const buf = Buffer.alloc(bytes);
  readSync(fd, buf, 0, bytes, 0);
  return buf;
}

/** Runs the arm64 binary through qemu-user, with only PATH and `env` in its environment. */
function arm64(args: string[], env: Record<string, string> = {}): ChildProcess {
  const child = spawn(
    'qemu-aarch64',
    ['-L', ARM64_SYSROOT, join(RELEASE, 'mcp-oidc-proxy-linux-arm64'), ...args],
    { cwd: dir, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.add(child);
  return child;
}

describe('release files (npm run build:all)', () => {
  it('SHA256SUMS lists every binary and install.sh with their real hashes', () => {
    const lines = readFileSync(join(RELEASE, 'SHA256SUMS'), 'utf8').trim().split('\n');
    const listed = new Map(lines.map((l) => l.split('  ').reverse() as [string, string]));
    expect([...listed.keys()].sort()).toEqual([...BINARIES, 'install.sh'].sort());
    for (const [file, hash] of listed) {
      const actual = createHash('sha256')
        .update(readFileSync(join(RELEASE, file)))
        .digest('hex');
      expect(actual, file).toBe(hash);
    }
  });

  it('install.sh installs this machine’s binary from the release and it runs', async () => {
    const prefix = join(dir, 'prefix');
    const installed = await untilExit(
      spawn('sh', [join(RELEASE, 'install.sh')], {
        env: {
          PATH: process.env.PATH ?? '',
          MCP_OIDC_PROXY_BASE_URL: pathToFileURL(RELEASE).href,
          PREFIX: prefix,
        },
      }),
      'install.sh',
      30_000,
    );
    expect(installed.code, installed.stderr).toBe(0);
    expect(installed.stdout).toContain('Installed');
    expect(installed.stdout.trim().split('\n').at(-1)).toBe(PACKAGE.version);
  });

  it('the linux-arm64 binary is an AArch64 executable that prints its version', async () => {
    const elf = head(join(RELEASE, 'mcp-oidc-proxy-linux-arm64'), 64);
    expect(elf.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
    expect(elf.readUInt16LE(18)).toBe(183); // e_machine: EM_AARCH64
    expect(readFileSync(join(RELEASE, 'mcp-oidc-proxy-linux-arm64')).includes(SEA_FUSE_FLIPPED)).toBe(true);
    expect(
      () => execFileSync('qemu-aarch64', ['-version']),
      'qemu-user is needed to run the arm64 binary here (apt-get install qemu-user libc6-arm64-cross libstdc++6-arm64-cross)',
    ).not.toThrow();
    const r = await untilExit(arm64(['--version']), 'arm64 --version', 30_000);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe(PACKAGE.version);
  });

  describe('the linux-arm64 binary serving', () => {
    let backend: Listening | undefined;
    afterAll(async () => {
      await backend?.close();
    });

    it('answers /health, proxies a request and stops on SIGTERM', async () => {
      backend = await startEchoBackend();
      const port = await freePort();
      const child = arm64([], {
        AUTH_MODE: 'bypass',
        SERVER_HOST: '127.0.0.1',
        SERVER_PORT: String(port),
        PROXY_TARGET_URL: backend.url,
      });
      // Emulated, the start takes seconds instead of milliseconds.
      const { body } = await firstHealthy(
        `http://127.0.0.1:${port}/health`,
        child,
        performance.now(),
        45_000,
      );
      expect(body).toMatchObject({ status: 'healthy' });
      const proxied = await fetch(`http://127.0.0.1:${port}/mcp`, { method: 'POST', body: '{}' });
      expect(proxied.status).toBe(200);
      expect(await proxied.json()).toMatchObject({ method: 'POST', url: '/mcp' });
      expect(await terminate(child)).toBe(0);
    });
  });

  it('the darwin-x64 binary is an x86_64 Mach-O executable with the application injected', () => {
    const file = join(RELEASE, 'mcp-oidc-proxy-darwin-x64');
    const macho = head(file, 64 * 1024);
    expect(macho.readUInt32LE(0)).toBe(0xfeedfacf); // MH_MAGIC_64
    expect(macho.readUInt32LE(4)).toBe(0x01000007); // CPU_TYPE_X86_64
    expect(macho.readUInt32LE(12)).toBe(2); // MH_EXECUTE
    // postject adds the NODE_SEA segment among the load commands, which sit in the first pages.
    expect(macho.includes('NODE_SEA')).toBe(true);
    expect(readFileSync(file).includes(SEA_FUSE_FLIPPED)).toBe(true);
  });
});
