import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ConnectedMcpClient, connectMcpClient } from '../helpers/mcp-oauth-client.js';
import { type JsonLog, jsonLines, terminate } from '../helpers/process.js';
import { freePort } from '../helpers/servers.js';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

/** What docs/mcp-access.md promises a demo user: three lines of YAML, SIGHUP, the tool is gone. */
describe('the demo with a --config file: a tool hidden and blocked for one group after SIGHUP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-demo-access-'));
  const file = join(dir, 'config.yaml');
  let child: ChildProcess;
  let log: JsonLog;
  let bob: ConnectedMcpClient;
  let origin: string;

  beforeAll(async () => {
    writeFileSync(file, 'log:\n  level: info\n');
    const port = await freePort();
    origin = `http://localhost:${port}`;
    child = spawn(process.execPath, [CLI, 'demo', '--port', String(port), '--config', file], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    log = jsonLines(child);
    await log.next((l) => l.msg === 'mcp-oidc-proxy listening', 'the demo to listen');
    bob = await connectMcpClient(origin, { username: 'bob', password: 'bob-password' });
  });
  afterAll(async () => {
    await bob?.client.close();
    if (child) await terminate(child);
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists whoami until the rule arrives, then neither lists nor runs it for bob', async () => {
    const names = async (): Promise<string[]> =>
      (await bob.client.listTools()).tools.map((t) => t.name).sort();
    expect(await names()).toEqual(['count', 'echo', 'whoami']);

    writeFileSync(
      file,
      'log:\n  level: info\nmcp_access:\n  rules:\n    - { tools: [whoami], allow: { groups: [engineering] } }\n',
    );
    const reloaded = log.next(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('configuration reloaded'),
      'the reload',
    );
    child.kill('SIGHUP');
    expect((await reloaded).applied).toContain('MCP_ACCESS');

    expect(await names()).toEqual(['count', 'echo']);
    const denied = log.next(
      (l) => l.audit === 'mcp_call' && l.outcome === 'denied',
      'the refusal in the audit log',
    );
    const error = await bob.client.callTool({ name: 'whoami', arguments: {} }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(McpError);
    expect((error as McpError).message).toContain('Tool "whoami" is not allowed for this user.');
    expect(await denied).toMatchObject({ method: 'tools/call', name: 'whoami', client_id: bob.clientId });
  });
});
