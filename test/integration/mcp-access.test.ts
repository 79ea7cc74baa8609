import { auth } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { approveConsent, loginThroughBrowserless } from '../helpers/headless-login.js';
import { type AccessBackend, startAccessBackend } from '../helpers/mcp-access-backend.js';
import {
  type ConnectedMcpClient,
  connectMcpClient,
  HeadlessOAuthProvider,
  REDIRECT_URL,
} from '../helpers/mcp-oauth-client.js';
import { type OidcStack, startOidcStack } from '../helpers/oidc-stack.js';
import { hostOf, rawRequest } from '../helpers/raw-http.js';

const bob = { username: 'bob', password: 'bob-password' };

/** alice: groups engineering, mcp-users, alice@example.com; bob: group sales, bob@other.org. */
const RULES = {
  default: 'allow',
  rules: [
    { tools: ['delete_*'], allow: { groups: ['engineering'] }, scope: 'mcp:admin' },
    { tools: ['secret_*'], allow: { groups: ['engineering'] } },
    { prompts: ['*'], allow: { domains: ['example.com'] } },
    { resources: ['file:///private/*'], allow: { groups: ['engineering'] } },
  ],
};

/** An MCP POST with a bearer token, as raw bytes. */
function post(
  stack: OidcStack,
  token: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${stack.url}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...headers,
    },
    body,
  });
}

/** A `tools/call` request body. */
function toolCall(id: number, name: string, text: string): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: { text } } });
}

async function refusal(promise: Promise<unknown>): Promise<McpError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(McpError);
  return error as McpError;
}

describe.each([
  ['JSON responses', true],
  ['SSE responses', false],
])('mcp_access with the official SDK server and client (%s)', (_label, json) => {
  let backend: AccessBackend;
  let stack: OidcStack;
  let alice: ConnectedMcpClient;
  let bobClient: ConnectedMcpClient;

  beforeAll(async () => {
    stack = await startOidcStack({ MCP_ACCESS: JSON.stringify(RULES) }, {}, async () => {
      backend = await startAccessBackend(json);
      return backend;
    });
    alice = await connectMcpClient(stack.url);
    bobClient = await connectMcpClient(stack.url, bob);
  });
  afterAll(async () => {
    await alice?.client.close();
    await bobClient?.client.close();
    await stack?.close();
  });

  it('lists to each user only what the rules let them use', async () => {
    const names = async (c: ConnectedMcpClient): Promise<string[]> =>
      (await c.client.listTools()).tools.map((t) => t.name).sort();
    // delete_file stays listed for alice: her rule allows her, the scope is asked when she calls it.
    expect(await names(alice)).toEqual(['delete_file', 'echo', 'read_file', 'secret_report']);
    expect(await names(bobClient)).toEqual(['echo', 'read_file']);
    expect((await alice.client.listPrompts()).prompts.map((p) => p.name)).toEqual(['greeting']);
    expect((await bobClient.client.listPrompts()).prompts).toEqual([]);
    const uris = async (c: ConnectedMcpClient): Promise<string[]> =>
      (await c.client.listResources()).resources.map((r) => r.uri).sort();
    expect(await uris(alice)).toEqual(['file:///private/keys', 'file:///public/readme']);
    expect(await uris(bobClient)).toEqual(['file:///public/readme']);
    const templates = async (c: ConnectedMcpClient): Promise<string[]> =>
      (await c.client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
    expect(await templates(alice)).toEqual(['file:///private/notes/{id}']);
    expect(await templates(bobClient)).toEqual([]);
  });

  it('answers a refused call itself: the backend never runs it', async () => {
    const before = backend.ran.length;
    const error = await refusal(
      bobClient.client.callTool({ name: 'secret_report', arguments: { text: 'x' } }),
    );
    expect(error.message).toContain('Tool "secret_report" is not allowed for this user.');
    await refusal(bobClient.client.getPrompt({ name: 'greeting' }));
    await refusal(bobClient.client.readResource({ uri: 'file:///private/keys' }));
    await refusal(bobClient.client.readResource({ uri: 'file:///private/notes/7' }));
    expect(backend.ran.slice(before)).toEqual([]);

    const allowed = await bobClient.client.callTool({ name: 'echo', arguments: { text: 'hi' } });
    expect(allowed.content).toEqual([{ type: 'text', text: 'echo: hi' }]);
    await alice.client.callTool({ name: 'secret_report', arguments: { text: 'q3' } });
    expect(backend.ran.slice(before)).toEqual(['tool:echo', 'tool:secret_report']);
  });

  it('records every call in the audit log and the metrics, never its arguments', async () => {
    await bobClient.client.callTool({ name: 'read_file', arguments: { text: 'arg-value-never-logged' } });
    await refusal(bobClient.client.callTool({ name: 'secret_report', arguments: { text: 'x' } }));
    const calls = stack.proxy.logs.filter((l) => l.audit === 'mcp_call');
    expect(calls).toContainEqual(
      expect.objectContaining({
        method: 'tools/call',
        name: 'read_file',
        outcome: 'ok',
        client_id: bobClient.clientId,
      }),
    );
    expect(calls).toContainEqual(
      expect.objectContaining({ method: 'tools/call', name: 'secret_report', outcome: 'denied' }),
    );
    expect(calls.every((l) => typeof l.sub === 'string')).toBe(true);
    expect(stack.proxy.logText()).not.toContain('arg-value-never-logged');
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metrics).toMatch(
      /mcp_oidc_proxy_mcp_calls_total\{server="default",method="tools\/call",name="read_file",outcome="ok"\} [1-9]/,
    );
    expect(metrics).toMatch(
      /mcp_oidc_proxy_mcp_calls_total\{server="default",method="tools\/call",name="secret_report",outcome="denied"\} [1-9]/,
    );
    // A call is no login or authorization step.
    expect(metrics).not.toContain('mcp_oidc_proxy_auth_events_total{event="mcp_call"');
    expect(metrics).toMatch(
      /mcp_oidc_proxy_mcp_call_duration_seconds_count\{server="default",method="tools\/call",name="read_file"\} [1-9]/,
    );
  });

  it('asks for the step-up scope (403 insufficient_scope) and forwards nothing', async () => {
    const before = backend.ran.length;
    const call = toolCall(9, 'delete_file', 'x');
    const res = await post(stack, alice.provider.saved?.access_token as string, call);
    expect(res.status).toBe(403);
    const challenge = res.headers.get('www-authenticate') ?? '';
    expect(challenge).toContain('error="insufficient_scope"');
    expect(challenge).toContain('scope="mcp mcp:admin"');
    expect(challenge).toContain(`resource_metadata="${stack.url}/.well-known/oauth-protected-resource/mcp"`);
    // bob's rule does not allow him: refused outright, whatever the scope.
    const bobs = await post(stack, bobClient.provider.saved?.access_token as string, call);
    expect(bobs.status).toBe(200);
    expect(((await bobs.json()) as { error: { message: string } }).error.message).toContain(
      'Tool "delete_file" is not allowed',
    );
    expect(backend.ran.slice(before)).toEqual([]);
    const metadata = (await (
      await fetch(`${stack.url}/.well-known/oauth-protected-resource/mcp`)
    ).json()) as {
      scopes_supported: string[];
    };
    expect(metadata.scopes_supported).toEqual(['mcp', 'mcp:admin']);
  });

  it('grants the step-up scope at /authorize only to users its rule allows, and the call then goes through', async () => {
    /** Authorizes a new SDK client for `scope` through the proxy's login and consent, as `user`. */
    const stepUp = async (user: { username: string; password: string }): Promise<HeadlessOAuthProvider> => {
      const provider = new HeadlessOAuthProvider();
      const serverUrl = `${stack.url}/mcp`;
      expect(await auth(provider, { serverUrl, scope: 'mcp mcp:admin' })).toBe('REDIRECT');
      expect(provider.authorizationUrl?.searchParams.get('scope')).toBe('mcp mcp:admin');
      const consentPages: string[] = [];
      const result = await loginThroughBrowserless((provider.authorizationUrl as URL).href, user, {
        stopAt: (target) => target.href.startsWith(REDIRECT_URL),
        onPage: (page) => {
          consentPages.push(page.body);
          return approveConsent(page);
        },
      });
      // The consent page names what is granted: the step-up scope only for a user it is granted to.
      expect(consentPages).toHaveLength(1);
      expect(consentPages[0]?.includes('<li>mcp:admin</li>')).toBe(user.username === 'alice');
      const code = new URL(result.finalUrl).searchParams.get('code') as string;
      expect(await auth(provider, { serverUrl, authorizationCode: code })).toBe('AUTHORIZED');
      return provider;
    };
    const admin = await stepUp({ username: 'alice', password: 'alice-password' });
    expect(admin.saved?.scope).toBe('mcp mcp:admin');
    const client = new Client({ name: 'step-up', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${stack.url}/mcp`), { authProvider: admin }),
    );
    const before = backend.ran.length;
    const deleted = await client.callTool({ name: 'delete_file', arguments: { text: 'old.log' } });
    expect(deleted.content).toEqual([{ type: 'text', text: 'delete_file: old.log' }]);
    expect(backend.ran.slice(before)).toEqual(['tool:delete_file']);
    await client.close();

    // bob asked for it too, but no rule naming mcp:admin allows him: the scope is dropped.
    const notAdmin = await stepUp(bob);
    expect(notAdmin.saved?.scope).toBe('mcp');
  });

  it('refuses a body it cannot judge unambiguously, forwarding nothing', async () => {
    const token = bobClient.provider.saved?.access_token as string;
    const before = backend.ran.length;
    const duplicate =
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"secret_report","arguments":{"text":"x"}}}';
    expect((await post(stack, token, duplicate)).status).toBe(400);
    const escaped =
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\\u0061me":"secret_report","arguments":{"text":"x"}}}';
    expect((await post(stack, token, escaped)).status).toBe(400);
    const mismatch = await post(stack, token, toolCall(2, 'secret_report', 'x'), {
      'mcp-method': 'tools/call',
      'mcp-name': 'echo',
    });
    expect(mismatch.status).toBe(400);
    expect(((await mismatch.json()) as { error: { code: number } }).error.code).toBe(-32020);
    const batch = `[${toolCall(3, 'echo', 'a')},${toolCall(4, 'secret_report', 'b')}]`;
    const batched = await post(stack, token, batch);
    expect(batched.status).toBe(200);
    expect(((await batched.json()) as Array<{ id: number }>).map((r) => r.id)).toEqual([3, 4]);
    const gzip = await post(stack, token, duplicate, { 'content-encoding': 'gzip' });
    expect(gzip.status).toBe(415);
    // Two Content-Types: Node reads the first, a backend might read the second.
    const call = toolCall(5, 'echo', 'x');
    const twice = await rawRequest(
      stack.url,
      [
        'POST /mcp HTTP/1.1',
        `Host: ${hostOf(stack.url)}`,
        `Authorization: Bearer ${token}`,
        'Content-Type: application/json',
        'Content-Type: text/plain',
        'Accept: application/json, text/event-stream',
        `Content-Length: ${Buffer.byteLength(call)}`,
      ],
      call,
    );
    expect(twice.status).toBe(400);
    expect(backend.ran.slice(before)).toEqual([]);
  });
});

describe('MCP_MAX_BODY_BYTES', () => {
  let stack: OidcStack;
  let backend: AccessBackend;
  let client: ConnectedMcpClient;

  beforeAll(async () => {
    stack = await startOidcStack(
      {
        MCP_ACCESS: JSON.stringify({ rules: [{ tools: ['secret_*'], allow: { groups: ['nobody'] } }] }),
        MCP_MAX_BODY_BYTES: '2048',
      },
      {},
      async () => {
        backend = await startAccessBackend(true);
        return backend;
      },
    );
    client = await connectMcpClient(stack.url);
  });
  afterAll(async () => {
    await client?.client.close();
    await stack?.close();
  });

  it('refuses a larger body with 413 and a JSON error, forwarding nothing', async () => {
    const before = backend.ran.length;
    const body = toolCall(1, 'echo', 'x'.repeat(4096));
    const res = await post(stack, client.provider.saved?.access_token as string, body);
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ error: 'request_too_large' });
    expect(backend.ran.slice(before)).toEqual([]);
    const small = await client.client.callTool({ name: 'echo', arguments: { text: 'fits' } });
    expect(small.content).toEqual([{ type: 'text', text: 'echo: fits' }]);
  });
});
