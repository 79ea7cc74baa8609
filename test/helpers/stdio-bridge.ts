import { fileURLToPath } from 'node:url';
import { Client, type ClientOptions } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { Registry } from 'prom-client';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterEach } from 'vitest';
import { StdioBridge, type StdioBridgeOptions } from '../../src/stdio/bridge.js';
import { ProcessBudget } from '../../src/stdio/budget.js';
import { createStdioMetrics } from '../../src/stdio/metrics.js';
import { OrphanReaper } from '../../src/stdio/reaper.js';
import { quietLogger } from './log-capture.js';

/** The probe stdio server (test/helpers/stdio-probe-server.mjs) as a command, with its flags. */
export function probeCommand(...flags: string[]): string[] {
  return [process.execPath, fileURLToPath(new URL('./stdio-probe-server.mjs', import.meta.url)), ...flags];
}

/** A child environment naming its user as the proxy's would: PATH plus MCP_USER*. */
export const identityEnvironment: StdioBridgeOptions['environment'] = (identity) => ({
  PATH: process.env.PATH ?? '',
  ...(identity
    ? {
        MCP_USER: identity.user,
        ...(identity.email ? { MCP_USER_EMAIL: identity.email } : {}),
        MCP_USER_GROUPS: identity.groups.join(','),
      }
    : {}),
});

export interface TestBridge {
  bridge: StdioBridge;
  registry: Registry;
  /** Fetch over the bridge's unix socket (any host in the URL). */
  fetch: FetchLike;
  url: URL;
}

const open: Array<{ bridge: StdioBridge; agent: Agent; reaper: OrphanReaper }> = [];

afterEach(async () => {
  for (const { bridge, agent, reaper } of open.splice(0)) {
    await bridge.close(2000);
    await agent.close();
    reaper.close();
  }
});

/** A bridge on the probe server (session isolation) unless told otherwise; closed after the test. */
export async function startBridge(overrides: Partial<StdioBridgeOptions> = {}): Promise<TestBridge> {
  const registry = new Registry();
  const reaper = OrphanReaper.start();
  const bridge = await StdioBridge.start({
    server: 'probe',
    command: probeCommand(),
    isolation: 'session',
    environment: identityEnvironment,
    idleTimeoutMs: 60_000,
    processes: new ProcessBudget(20),
    identityHeaders: { user: 'X-Forwarded-User', email: 'X-Forwarded-Email', groups: 'X-Forwarded-Groups' },
    logger: quietLogger(),
    metrics: createStdioMetrics(registry),
    reaper,
    killGraceMs: 2000,
    ...overrides,
  });
  const agent = new Agent({ connect: { socketPath: bridge.socketPath } });
  open.push({ bridge, agent, reaper });
  // undici's own fetch: the global one cannot be given a dispatcher of this undici version.
  const fetch = ((url: string | URL, init?: RequestInit) =>
    undiciFetch(url, { ...(init as object), dispatcher: agent })) as unknown as FetchLike;
  return { bridge, registry, fetch, url: new URL('http://stdio-bridge/mcp') };
}

export interface Identity {
  user: string;
  email?: string;
  groups?: string[];
}

/** Headers the proxy would add for this identity. */
export function identityHeaders(identity: Identity | undefined): Record<string, string> {
  if (!identity) return {};
  return {
    'x-forwarded-user': identity.user,
    ...(identity.email ? { 'x-forwarded-email': identity.email } : {}),
    ...(identity.groups ? { 'x-forwarded-groups': identity.groups.join(',') } : {}),
  };
}

/** An SDK client connected to the bridge as `identity` (anonymous if undefined). */
export async function connect(
  target: TestBridge,
  identity?: Identity,
  options: ClientOptions = { capabilities: { elicitation: {}, sampling: {} } },
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(target.url, {
    fetch: target.fetch,
    requestInit: { headers: identityHeaders(identity) },
  });
  const client = new Client({ name: 'stdio-bridge-test', version: '1.0.0' }, options);
  await client.connect(transport);
  return { client, transport };
}

/** The probe's `whoami` answer. */
export async function whoami(
  client: Client,
): Promise<{ pid: number; pgid: number; env: Record<string, string> }> {
  return JSON.parse(await toolText(client, 'whoami'));
}

export async function toolText(
  client: Client,
  name: string,
  args: Record<string, unknown> = {},
): Promise<string> {
  const result = await client.callTool({ name, arguments: args });
  return (result.content as Array<{ text: string }>)[0]!.text;
}

/** Whether a process with this pid exists (signal 0 only checks). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** An `initialize` POSTed by hand (no SDK client): for status codes and protocol versions. */
export function postInitialize(
  target: TestBridge,
  identity?: Identity,
  protocolVersion = '2025-06-18',
): Promise<Response> {
  return target.fetch(target.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...identityHeaders(identity),
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion, capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
}

/** A metric's samples as exposition lines, without the HELP and TYPE lines. */
export async function metric(registry: Registry, name: string): Promise<string> {
  const text = await registry.getSingleMetricAsString(name);
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .join('\n');
}
