import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DemoProcess, startDemo } from '../helpers/demo.js';
import { type ConnectedMcpClient, connectMcpClient } from '../helpers/mcp-oauth-client.js';
import { waitFor } from '../helpers/wait.js';

/** What the probe's whoami says of the child it runs in. */
interface ProbeSelf {
  pid: number;
  env: Record<string, string>;
}

/** Whether a process with this pid still exists (signal 0 only checks). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Long enough that a shutdown held to its deadline cannot pass for a prompt one. */
const SHUTDOWN_TIMEOUT_S = 30;

describe('mcp-oidc-proxy demo --stdio (the built CLI)', () => {
  let demo: DemoProcess;
  let alice: ConnectedMcpClient;

  beforeAll(async () => {
    demo = await startDemo([
      '--stdio',
      'node test/helpers/stdio-probe-server.mjs',
      '--shutdown-timeout',
      String(SHUTDOWN_TIMEOUT_S),
    ]);
  });
  afterAll(async () => {
    await alice?.client.close();
    await demo?.stop();
  });

  it('says in its banner that it serves the stdio command, not the sample server', () => {
    expect(demo.banner).toContain('stdio server   : node test/helpers/stdio-probe-server.mjs');
    expect(demo.banner).toContain('a child process per MCP session, its user in MCP_USER');
    expect(demo.banner).not.toContain('sample tools');
    expect(demo.banner).toContain('alice / alice-password');
  });

  it('lets the SDK client log in as the demo user and reach the stdio server, which gets that user in MCP_USER', async () => {
    const origin = new URL(demo.mcpUrl).origin;
    alice = await connectMcpClient(origin);
    const { tools } = await alice.client.listTools();
    expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['whoami', 'echo', 'sleep']));
    const whoami = await alice.client.callTool({ name: 'whoami', arguments: {} });
    const self = JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}') as ProbeSelf;
    expect(self.env).toMatchObject({
      MCP_USER: 'alice',
      MCP_USER_EMAIL: 'alice@example.com',
      MCP_USER_GROUPS: 'engineering,mcp-users',
    });
    // The demo's own client secret and session secret stay in the proxy.
    expect(Object.keys(self.env).filter((name) => /SECRET|OIDC|SESSION|ADMIN/.test(name))).toEqual([]);
  });

  it('stops cleanly on SIGTERM, the connected client notwithstanding, and leaves no child behind', async () => {
    const whoami = await alice.client.callTool({ name: 'whoami', arguments: {} });
    const { pid } = JSON.parse((whoami.content as Array<{ text: string }>)[0]?.text ?? '{}') as ProbeSelf;
    expect(alive(pid)).toBe(true);
    // The SDK client keeps a GET stream open and opens it again when the shutdown ends it: the
    // stream reopened while draining must not hold the exit to SHUTDOWN_TIMEOUT.
    const signalledAt = performance.now();
    expect(await demo.stop()).toBe(0);
    expect(performance.now() - signalledAt).toBeLessThan((SHUTDOWN_TIMEOUT_S * 1000) / 2);
    await waitFor(() => !alive(pid), 5000, `the stdio child ${pid} to end`);
  }, 40_000);
});
