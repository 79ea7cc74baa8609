import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { FetchLike } from '@modelcontextprotocol/sdk/shared/transport.js';
import { describe, expect, it } from 'vitest';
import { ProcessBudget } from '../../src/stdio/budget.js';
import { captureLogs } from '../helpers/log-capture.js';
import {
  alive,
  connect,
  identityHeaders,
  metric,
  postInitialize,
  probeCommand,
  startBridge,
  type TestBridge,
  toolText,
  whoami,
} from '../helpers/stdio-bridge.js';
import { waitFor } from '../helpers/wait.js';

const alice = { user: 'alice', groups: [] };

/** The same fetch, minus the standalone GET stream (answered 405, which clients accept). */
function withoutStandaloneStream(target: TestBridge): TestBridge {
  const fetch: FetchLike = (url, init) =>
    init?.method === 'GET' ? Promise.resolve(new Response(null, { status: 405 })) : target.fetch(url, init);
  return { ...target, fetch };
}

/** Posts `tools/list` in `sessionId` and returns the status: 404 once the session is gone. */
async function statusIn(target: TestBridge, sessionId: string): Promise<number> {
  const response = await target.fetch(target.url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': '2025-06-18',
      ...identityHeaders(alice),
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 99, method: 'tools/list' }),
  });
  await response.body?.cancel();
  return response.status;
}

describe('stdio bridge: lifecycle', () => {
  it('fails pending requests at once when the child crashes, then answers 404 for its session', async () => {
    const logs = captureLogs('info');
    const target = await startBridge({ logger: logs.logger });
    const { client, transport } = await connect(target, alice);
    const { pid } = await whoami(client);
    const sessionId = transport.sessionId!;
    const startedAt = Date.now();
    const slow = client.callTool({ name: 'sleep', arguments: { ms: 20_000 } });
    const crash = client.callTool({ name: 'crash', arguments: {} });
    await Promise.all([
      expect(slow).rejects.toThrow(/exited with code 3/),
      expect(crash).rejects.toThrow(/exited with code 3/),
    ]);
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(await statusIn(target, sessionId)).toBe(404);
    expect(target.bridge.children()).toEqual([]);

    expect(await metric(target.registry, 'mcp_oidc_proxy_stdio_crashes_total')).toBe(
      'mcp_oidc_proxy_stdio_crashes_total{server="probe"} 1',
    );
    expect(await metric(target.registry, 'mcp_oidc_proxy_stdio_exits_total')).toBe(
      'mcp_oidc_proxy_stdio_exits_total{server="probe",reason="crash"} 1',
    );
    expect(await metric(target.registry, 'mcp_oidc_proxy_stdio_processes')).toBe(
      'mcp_oidc_proxy_stdio_processes{server="probe"} 0',
    );
    const lines = logs.lines();
    expect(lines).toContainEqual(
      expect.objectContaining({ msg: 'stdio server started', pid, user: 'alice', server: 'probe' }),
    );
    expect(lines).toContainEqual(
      expect.objectContaining({ pid, user: 'alice', reason: 'crash', exitCode: 3, sessions: [sessionId] }),
    );
  });

  it('ends a child idle for idleTimeoutMs, and its session with it', async () => {
    const target = await startBridge({ idleTimeoutMs: 300 });
    const { client, transport } = await connect(target, alice);
    const { pid } = await whoami(client);
    const sessionId = transport.sessionId!;
    // The client's standalone GET stream keeps the child in use; closing the client (no DELETE) ends it.
    expect(target.bridge.children()[0]!.openStreams).toBe(1);
    await client.close();
    await waitFor(() => !alive(pid), 5000, `idle child ${pid} to end`);
    expect(await statusIn(target, sessionId)).toBe(404);
    expect(await metric(target.registry, 'mcp_oidc_proxy_stdio_exits_total')).toBe(
      'mcp_oidc_proxy_stdio_exits_total{server="probe",reason="idle"} 1',
    );
  });

  it('does not end a child for idleness while a request is in flight', async () => {
    const target = await startBridge({ idleTimeoutMs: 200 });
    const { client } = await connect(withoutStandaloneStream(target), alice);
    const { pid } = await whoami(client);
    expect(await toolText(client, 'sleep', { ms: 800 })).toBe('slept 800 ms');
    expect(alive(pid)).toBe(true);
    await waitFor(() => !alive(pid), 5000, `idle child ${pid} to end`);
  });

  it('refuses an initialize over STDIO_MAX_PROCESSES with 503 at once, and serves again once a child ends', async () => {
    const processes = new ProcessBudget(1);
    const target = await startBridge({ processes });
    const first = await connect(target, alice);
    const startedAt = Date.now();
    const refused = await postInitialize(target, alice);
    expect(Date.now() - startedAt).toBeLessThan(1000);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toMatch(/^\d+$/);
    const body = (await refused.json()) as { error: string; error_description: string };
    expect(body.error).toBe('too_many_processes');
    expect(body.error_description).toContain('STDIO_MAX_PROCESSES');
    expect(processes.inUse).toBe(1);

    await first.transport.terminateSession();
    await waitFor(() => processes.inUse === 0, 3000, 'the process slot to be released');
    const second = await connect(target, alice);
    expect(await toolText(second.client, 'echo', { text: 'again' })).toBe('again');
  });

  it('backs off a command that exits at start: 503 saying why and when, health unhealthy', async () => {
    const target = await startBridge({ command: probeCommand('--exit-at-start') });
    expect(target.bridge.health()).toEqual({ status: 'healthy', processes: 0 });

    // The first attempt runs the command; its initialize gets the child's exit as a JSON-RPC error.
    const first = await postInitialize(target, alice);
    expect(await first.text()).toMatch(/exited with code 1/);

    const refused = await postInitialize(target, alice);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    const body = (await refused.json()) as { error: string; error_description: string };
    expect(body.error).toBe('server_start_failed');
    expect(body.error_description).toMatch(
      /exited with code 1 before answering initialize.*next attempt is in 1 s/,
    );
    const health = target.bridge.health();
    expect(health.status).toBe('unhealthy');
    expect(health.error).toMatch(/exited with code 1/);

    // Once the delay is over the command is tried again; failing again doubles the delay.
    let retried = '';
    await waitFor(
      async () => {
        const retry = await postInitialize(target, alice);
        retried = await retry.text();
        return retry.status === 200;
      },
      5000,
      'the retry',
    );
    expect(retried).toMatch(/exited with code 1/);
    const again = await postInitialize(target, alice);
    expect(again.status).toBe(503);
    expect(again.headers.get('retry-after')).toBe('2');
  });

  it('reports a program missing from PATH as unhealthy from the start, and refuses with 503', async () => {
    const target = await startBridge({ command: ['no-such-stdio-server-command'] });
    expect(target.bridge.health()).toEqual({
      status: 'unhealthy',
      error: 'command not found: no-such-stdio-server-command (not on PATH)',
      processes: 0,
    });
    const refused = await postInitialize(target, alice);
    expect(refused.status).toBe(503);
    expect(((await refused.json()) as { error_description: string }).error_description).toContain(
      'command not found: no-such-stdio-server-command',
    );
    expect(target.bridge.children()).toEqual([]);
  });

  it('logs stderr lines with the pid, at most 20 a second, then how many were dropped', async () => {
    const logs = captureLogs('info');
    const target = await startBridge({ command: probeCommand('--stderr-lines', '50'), logger: logs.logger });
    const { client } = await connect(target, alice);
    const { pid } = await whoami(client);
    await waitFor(
      () => logs.lines().some((line) => line.dropped !== undefined),
      5000,
      'the dropped-lines report',
    );
    const stderr = logs.lines().filter((line) => line.msg === 'stdio server stderr');
    expect(stderr).toHaveLength(20);
    expect(stderr[0]).toMatchObject({ server: 'probe', pid, user: 'alice', stderr: 'probe stderr line 1' });
    expect(logs.lines().find((line) => line.dropped !== undefined)).toMatchObject({ pid, dropped: 30 });
  });

  it('close() ends every child, SIGKILL at the deadline, fails pending requests, removes the socket dir', async () => {
    const target = await startBridge({ command: probeCommand('--ignore-sigterm'), killGraceMs: 30_000 });
    const sessions = await Promise.all([
      connect(target, alice),
      connect(target, { user: 'bob', groups: [] }),
    ]);
    const pids = await Promise.all(sessions.map(({ client }) => whoami(client).then((who) => who.pid)));
    const pending = sessions[0]!.client.callTool({ name: 'sleep', arguments: { ms: 60_000 } });
    const failed = pending.then(
      () => 'answered',
      (error: Error) => error.message,
    );
    await waitFor(
      () => target.bridge.children().some((child) => child.inFlight === 1),
      3000,
      'the call in flight',
    );
    const startedAt = Date.now();
    await target.bridge.close(500);
    expect(Date.now() - startedAt).toBeLessThan(5000);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(await failed).toMatch(/ended \(shutdown\)/);
    expect(existsSync(dirname(target.bridge.socketPath))).toBe(false);
    expect(await metric(target.registry, 'mcp_oidc_proxy_stdio_exits_total')).toBe(
      'mcp_oidc_proxy_stdio_exits_total{server="probe",reason="shutdown"} 2',
    );
  });
});
