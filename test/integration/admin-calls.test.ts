/**
 * `GET /admin/api/calls`: the MCP calls the inspection stage recorded, listed for the admin. A
 * bypass-mode proxy with `mcp_access` rules in front of a real MCP server (official SDK), driven
 * by the official SDK client.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { McpCallEntry } from '../../src/mcp/call-audit.js';
import { type AccessBackend, type AccessProxy, startAccessProxy } from '../helpers/mcp-access-backend.js';
import type { TestProxy } from '../helpers/servers.js';

const ADMIN_TOKEN = randomBytes(36).toString('base64url');
/** An argument value that must never appear in an admin answer. */
const ARGUMENT = `argument-${randomBytes(12).toString('hex')}`;
/** Everything but these is refused; the backend has no prompt `missing`. */
const RULES = {
  default: 'deny',
  rules: [
    { tools: ['echo', 'read_file'], allow: {} },
    { prompts: ['missing'], allow: {} },
  ],
};

type Calls = { calls: McpCallEntry[]; total: number; truncated: boolean };

describe('GET /admin/api/calls (bypass mode, mcp_access)', () => {
  let stack: AccessProxy;
  let backend: AccessBackend;
  let proxy: TestProxy;
  let client: Client;
  const bodies: string[] = [];

  async function admin(path: string, init: RequestInit = {}, token: string | null = ADMIN_TOKEN) {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(`${proxy.url}${path}`, { ...init, headers });
    const text = await res.text();
    bodies.push(text);
    return new Response(text, { status: res.status, headers: res.headers });
  }
  async function calls(query = ''): Promise<Calls> {
    const res = await admin(`/admin/api/calls${query}`);
    expect(res.status, `${query}: ${await res.clone().text()}`).toBe(200);
    return (await res.json()) as Calls;
  }
  /** A call the proxy or the server may refuse: the refusal is the point. */
  const attempt = (call: Promise<unknown>): Promise<unknown> => call.catch((error: unknown) => error);

  beforeAll(async () => {
    stack = await startAccessProxy(RULES, ADMIN_TOKEN);
    ({ backend, proxy, client } = stack);
    // Oldest first: ok, a tool's own error (arguments fail its schema), a JSON-RPC error (no such
    // prompt), a refusal.
    await client.callTool({ name: 'echo', arguments: { text: ARGUMENT } });
    await attempt(client.callTool({ name: 'read_file', arguments: { path: ARGUMENT } }));
    await attempt(client.getPrompt({ name: 'missing', arguments: { text: ARGUMENT } }));
    await attempt(client.callTool({ name: 'secret_report', arguments: { text: ARGUMENT } }));
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('lists every call newest first with its outcome, duration and argument size, and no argument value', async () => {
    const list = await calls();
    expect(list.total).toBe(4);
    expect(list.truncated).toBe(false);
    expect(list.calls.map((c) => [c.name, c.outcome])).toEqual([
      ['secret_report', 'denied'],
      ['missing', 'error'],
      ['read_file', 'tool_error'],
      ['echo', 'ok'],
    ]);
    expect(list.calls.map((c) => c.method)).toEqual([
      'tools/call',
      'prompts/get',
      'tools/call',
      'tools/call',
    ]);
    for (const call of list.calls) {
      expect(call.sub).toBeUndefined(); // bypass mode: nobody signed in
      expect(call.jsonrpc_id).toEqual(expect.any(String));
      expect(call.duration_ms).toBeGreaterThanOrEqual(0);
      expect(call.argument_bytes).toBeGreaterThan(ARGUMENT.length);
      expect(Date.parse(call.time)).not.toBeNaN();
    }
    const times = list.calls.map((c) => Date.parse(c.time));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    // The refused call never reached the server; the others did (or were refused by it).
    expect(backend.ran).toEqual(['tool:echo']);
  });

  it('filters by outcome, name, text, user and client, and pages with limit', async () => {
    expect((await calls('?outcome=denied')).calls.map((c) => c.name)).toEqual(['secret_report']);
    expect((await calls('?outcome=ok&name=echo')).total).toBe(1);
    expect((await calls('?outcome=ok&name=read_file')).total).toBe(0);
    expect((await calls('?name=missing')).calls.map((c) => [c.method, c.outcome])).toEqual([
      ['prompts/get', 'error'],
    ]);
    expect((await calls('?q=READ')).calls.map((c) => c.name)).toEqual(['read_file']);
    expect((await calls('?user=someone')).calls).toEqual([]);
    expect((await calls('?client_id=some-client')).calls).toEqual([]);
    const paged = await calls('?limit=2');
    expect(paged).toMatchObject({ total: 4, truncated: true });
    expect(paged.calls.map((c) => c.name)).toEqual(['secret_report', 'missing']);
  });

  it('refuses bad parameters, other methods and callers without the token', async () => {
    for (const query of [
      '?outcome=failed',
      '?outcome=ok&outcome=error',
      '?limit=0',
      '?limit=1001',
      '?limit=x',
    ]) {
      const res = await admin(`/admin/api/calls${query}`);
      expect(res.status, query).toBe(400);
      expect(((await res.json()) as { error: string }).error, query).toBe('invalid_request');
    }
    for (const method of ['DELETE', 'POST']) {
      const res = await admin('/admin/api/calls', { method });
      expect(res.status, method).toBe(405);
      expect(res.headers.get('allow'), method).toBe('GET');
    }
    expect((await admin('/admin/api/calls/anything')).status).toBe(404);
    const anonymous = await admin('/admin/api/calls', {}, null);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.text()).not.toContain('secret_report');
    expect((await admin('/admin/api/calls', {}, 'x'.repeat(48))).status).toBe(401);
  });

  it('keeps calls out of the recent audit events, and still logs each as an mcp_call audit line', async () => {
    const status = (await (await admin('/admin/api/status')).json()) as {
      recent_audit: Array<{ event: string }>;
    };
    expect(status.recent_audit.map((e) => e.event)).not.toContain('mcp_call');
    const lines = proxy.logs.filter((l) => l.audit === 'mcp_call');
    expect(lines.map((l) => [l.name, l.outcome])).toEqual([
      ['echo', 'ok'],
      ['read_file', 'tool_error'],
      ['missing', 'error'],
      ['secret_report', 'denied'],
    ]);
  });

  it('never answers with an argument value or the admin token', () => {
    const everything = bodies.join('\n');
    expect(everything).toContain('secret_report');
    expect(everything).not.toContain(ARGUMENT);
    expect(everything).not.toContain(ADMIN_TOKEN);
  });
});
