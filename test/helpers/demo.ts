import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { terminate } from './process.js';
import { freePort } from './servers.js';

// The built CLI: `npm test` builds before vitest; run `npm run build` before running this alone.
const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface DemoProcess {
  child: ChildProcess;
  /** Everything the demo wrote to stderr up to its "Press Ctrl+C" line. */
  banner: string;
  /** The MCP server URL the banner names. */
  mcpUrl: string;
  /** SIGTERM, and the exit code once it has closed (at once if it already has). */
  stop(): Promise<number | null>;
}

/** `mcp-oidc-proxy demo` on a free port with `args` added, once its banner is out. */
export async function startDemo(args: string[] = []): Promise<DemoProcess> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [CLI, 'demo', '--port', String(port), '--log-level', 'warn', ...args],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let banner = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`demo exited (${code}):\n${banner}`)));
    child.stderr?.on('data', (d: Buffer) => {
      banner += d.toString();
      if (banner.includes('Press Ctrl+C to stop.')) resolve();
    });
  });
  const mcpUrl = /MCP server URL : (\S+)/.exec(banner)?.[1];
  if (!mcpUrl) throw new Error(`the banner names no MCP server URL:\n${banner}`);
  return {
    child,
    banner,
    mcpUrl,
    stop: async () => (child.exitCode !== null ? child.exitCode : terminate(child)),
  };
}
