import { readFileSync } from 'node:fs';

/** Set by scripts/build-binary.mjs (esbuild `define`) in the single-executable build. */
declare const __MCP_OIDC_PROXY_VERSION__: string | undefined;

/** The package.json version (src/cli and dist/cli are both two levels below it). */
export function packageVersion(): string {
  if (typeof __MCP_OIDC_PROXY_VERSION__ === 'string') return __MCP_OIDC_PROXY_VERSION__;
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}
