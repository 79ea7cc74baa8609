import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  StreamableHTTPClientTransport,
  type StreamableHTTPClientTransportOptions,
} from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { afterEach } from 'vitest';
import { type Finished, type JsonLog, jsonLines, untilExit } from './process.js';
import { waitFor } from './wait.js';

// The whole proxy in front of stdio MCP servers: the built CLI as a user starts it, SDK clients
// talking to it, and the checks for a child process being gone.

/** The built CLI: `npm test` builds before vitest; run `npm run build` before running a file alone. */
const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));
/** The repository root: the working directory of the CLI, so `node_modules/.bin/...` resolves. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The probe stdio server as the words after `--` on the command line. */
export const PROBE_ARGS = ['node', fileURLToPath(new URL('./stdio-probe-server.mjs', import.meta.url))];

/** A command line for PROXY_TARGET_COMMAND, each word single-quoted (split back like a shell would). */
export function commandLine(words: string[]): string {
  return words.map((word) => `'${word.replaceAll("'", `'\\''`)}'`).join(' ');
}

export interface CliProxy {
  child: ChildProcess;
  /** http://127.0.0.1:PORT, the port the proxy reported listening on. */
  url: string;
  log: JsonLog;
}

const running = new Set<ChildProcess>();
afterEach(() => {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
});

/** `mcp-oidc-proxy ARGS` with only PATH, loopback port 0 and `env`; killed after the test if still running. */
function spawnCli(args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', SERVER_HOST: '127.0.0.1', SERVER_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: ROOT,
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

/** Starts the CLI and resolves once it logged where it listens. */
export async function startCliProxy(args: string[], env: Record<string, string> = {}): Promise<CliProxy> {
  const child = spawnCli(args, env);
  const log = jsonLines(child);
  const listening = await log.next((l) => l.msg === 'mcp-oidc-proxy listening', 'the listening line');
  return { child, url: `http://${listening.listen as string}`, log };
}

/** Runs the CLI until it exits by itself (a refused configuration). */
export function runCli(args: string[], env: Record<string, string> = {}): Promise<Finished> {
  return untilExit(spawnCli(args, env), `mcp-oidc-proxy ${args.join(' ')}`, 15_000);
}

/** An SDK client connected to `url` (a full MCP endpoint URL). */
export async function connectClient(
  url: string,
  options: StreamableHTTPClientTransportOptions = {},
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), options);
  const client = new Client({ name: 'stdio-proxy-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}

/**
 * Whether no process runs under `pid` any more: none exists (ESRCH), or only its zombie is
 * left, waiting for a parent (or a container's init) that does not reap it.
 */
export function gone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw error;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true; // it went between the two looks
  }
}

/** Waits until every pid is gone; the error names the ones still running. */
export async function allGone(pids: number[], timeoutMs: number): Promise<void> {
  try {
    await waitFor(() => pids.every(gone), timeoutMs, 'every child to end');
  } catch (error) {
    throw new Error(`still running after ${timeoutMs} ms: ${pids.filter((pid) => !gone(pid)).join(', ')}`, {
      cause: error,
    });
  }
}

/** The samples of one metric in a Prometheus exposition text, `name{labels} value` lines. */
export function samples(exposition: string, name: string): string[] {
  return exposition.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

/** The value of the sample `name{labels}` exactly (0 when absent). */
export function sampleValue(exposition: string, nameAndLabels: string): number {
  const line = exposition.split('\n').find((l) => l.startsWith(`${nameAndLabels} `));
  return line ? Number(line.slice(nameAndLabels.length + 1)) : 0;
}
