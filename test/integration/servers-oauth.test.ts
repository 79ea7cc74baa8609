import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CookieJar } from '../helpers/headless-login.js';
import {
  alice,
  type ConnectedMcpClient,
  connectMcpClient,
  HeadlessOAuthProvider,
  REDIRECT_URL,
  requestAuthorization,
  walkAuthorization,
} from '../helpers/mcp-oauth-client.js';
import { type McpTestServer, startMcpServer } from '../helpers/mcp-server.js';
import { rawGet } from '../helpers/raw-http.js';
import { waitFor } from '../helpers/servers.js';
import {
  PROBE_COMMAND,
  type ServersOidcStack,
  type ServerYaml,
  startServersOidcStack,
} from '../helpers/servers-config.js';

const bob = { username: 'bob', password: 'bob-password' };

/**
 * alice: groups engineering, mcp-users; bob: group sales. Both servers have a tool named echo;
 * only search's rules refuse it. Each names a step-up scope of its own.
 */
function serversConfig(search: McpTestServer, filesGroups?: string[]): ServerYaml[] {
  return [
    {
      name: 'search',
      path: '/search/mcp',
      url: `${search.url}/mcp`,
      mcp_access: {
        rules: [
          { tools: ['echo'], allow: { groups: ['nobody'] } },
          { tools: ['count'], allow: { groups: ['engineering'] }, scope: 'search:admin' },
        ],
      },
    },
    {
      name: 'files',
      path: '/files/mcp',
      command: PROBE_COMMAND,
      ...(filesGroups ? { allowed_groups: filesGroups } : {}),
      mcp_access: { rules: [{ tools: ['crash'], allow: { groups: ['engineering'] }, scope: 'files:admin' }] },
    },
  ];
}

/** A POST with a bearer token to an MCP path of the proxy. */
function bearerPost(url: string, token: string): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${token}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
  });
}

function toolNames(connected: ConnectedMcpClient): Promise<string[]> {
  return connected.client.listTools().then(({ tools }) => tools.map((tool) => tool.name).sort());
}

function textOf(result: Record<string, unknown>): string {
  return (result.content as Array<{ text: string }>)[0]?.text ?? '';
}

describe('several servers behind one login (servers:, oidc mode)', () => {
  let search: McpTestServer;
  /** Requests the search server received. */
  let searchRequests = 0;
  let stack: ServersOidcStack;
  const resource = (path: string): string => `${stack.url}${path}`;
  const metadataUrl = (path: string): string => `${stack.url}/.well-known/oauth-protected-resource${path}`;
  const connected: ConnectedMcpClient[] = [];

  beforeAll(async () => {
    search = await startMcpServer();
    search.server.on('request', () => {
      searchRequests++;
    });
    stack = await startServersOidcStack(serversConfig(search));
  });
  afterAll(async () => {
    await Promise.all(connected.map((c) => c.client.close()));
    await stack?.close();
    await search?.close();
  });

  /** The SDK client connected to `path` as `user` (closed after the tests). */
  async function connect(
    path: string,
    user = alice,
    options: { jar?: CookieJar; like?: ConnectedMcpClient } = {},
  ): Promise<ConnectedMcpClient> {
    const client = await connectMcpClient(stack.url, user, {
      path,
      ...(options.jar ? { jar: options.jar } : {}),
      ...(options.like?.provider.info ? { clientInformation: options.like.provider.info } : {}),
    });
    connected.push(client);
    return client;
  }

  it('each server is a protected resource of its own; the root metadata is the first one', async () => {
    for (const path of ['/search/mcp', '/files/mcp']) {
      const res = await fetch(metadataUrl(path));
      expect(res.status, path).toBe(200);
      const metadata = (await res.json()) as { resource: string; authorization_servers: string[] };
      expect(metadata.resource).toBe(resource(path));
      expect(metadata.authorization_servers).toEqual([stack.url]);

      const refused = await fetch(resource(path), { method: 'POST' });
      expect(refused.status, path).toBe(401);
      expect(refused.headers.get('www-authenticate')).toContain(`resource_metadata="${metadataUrl(path)}"`);
    }
    const searchMetadata = (await (await fetch(metadataUrl('/search/mcp'))).json()) as Record<
      string,
      unknown
    >;
    expect(await (await fetch(metadataUrl(''))).json()).toEqual(searchMetadata);
    // Each resource lists its own step-up scope, not the other server's.
    expect(searchMetadata.scopes_supported).toEqual(['mcp', 'search:admin']);
    expect((await (await fetch(metadataUrl('/other/mcp'))).json()) as unknown).toMatchObject({
      error: 'not_found',
    });

    // A path no server owns is no protected resource: 404, not a challenge to log in somewhere.
    for (const path of ['/', '/mcp', '/files', '/files/mcpx']) {
      const res = await fetch(`${stack.url}${path}`, { method: 'POST' });
      expect(res.status, path).toBe(404);
      expect(res.headers.get('www-authenticate'), path).toBeNull();
    }
    for (const target of [
      '/files/mcp/../../search/mcp',
      '/files/mcp/%2e%2e/%2e%2e/search/mcp',
      '//search/mcp',
    ]) {
      expect((await rawGet(stack.url, target)).status, target).toBe(400);
    }
    expect((await fetch(metadataUrl('/search/mcp/x'))).status).toBe(404);

    // One authorization server for both: its scopes are the union.
    const as = (await (await fetch(`${stack.url}/.well-known/oauth-authorization-server`)).json()) as {
      scopes_supported: string[];
    };
    expect(as.scopes_supported).toEqual(expect.arrayContaining(['mcp', 'search:admin', 'files:admin']));
  });

  let aliceSearch: ConnectedMcpClient;
  let aliceFiles: ConnectedMcpClient;

  it('one login, a token per resource: the second server asks consent but no second IdP login', async () => {
    const idpOrigin = new URL(stack.idp.issuer).origin;
    aliceSearch = await connect('/search/mcp');
    expect(aliceSearch.provider.authorizationUrl?.searchParams.get('resource')).toBe(resource('/search/mcp'));
    expect(aliceSearch.visited.some((step) => step.startsWith(`POST ${idpOrigin}`))).toBe(true);
    expect(aliceSearch.visited).toContain(`POST ${stack.url}/authorize`);

    // The same client, the same browser: the proxy session is reused (the IdP is not even
    // visited), but the new resource is approved on its own.
    aliceFiles = await connect('/files/mcp', alice, { jar: aliceSearch.jar, like: aliceSearch });
    expect(aliceFiles.clientId).toBe(aliceSearch.clientId);
    expect(aliceFiles.provider.authorizationUrl?.searchParams.get('resource')).toBe(resource('/files/mcp'));
    expect(aliceFiles.visited.filter((step) => step.includes(idpOrigin))).toEqual([]);
    expect(aliceFiles.visited).toContain(`POST ${stack.url}/authorize`);

    // Asked again for the first resource, the approval given for it is remembered.
    const again = await connect('/search/mcp', alice, { jar: aliceSearch.jar, like: aliceSearch });
    expect(again.visited.filter((step) => step.includes(idpOrigin) || step.startsWith('POST'))).toEqual([]);

    expect(await toolNames(aliceFiles)).toEqual(expect.arrayContaining(['echo', 'sleep', 'whoami']));
    const whoami = JSON.parse(
      textOf(await aliceFiles.client.callTool({ name: 'whoami', arguments: {} })),
    ) as {
      env: Record<string, string>;
    };
    expect(whoami.env.MCP_USER).toBe('alice');
    const searched = await aliceSearch.client.callTool({ name: 'whoami', arguments: {} });
    expect(JSON.parse(textOf(searched))).toMatchObject({ user: 'alice', email: 'alice@example.com' });
  });

  it("a token is refused at the other server with a challenge naming that server's metadata", async () => {
    for (const [token, path] of [
      [aliceSearch.accessToken, '/files/mcp'],
      [aliceFiles.accessToken, '/search/mcp'],
    ] as const) {
      const res = await bearerPost(resource(path), token);
      expect(res.status, path).toBe(401);
      expect(((await res.json()) as { error: string }).error).toBe('invalid_token');
      const challenge = res.headers.get('www-authenticate') ?? '';
      expect(challenge).toContain('error="invalid_token"');
      expect(challenge).toContain(`resource_metadata="${metadataUrl(path)}"`);
    }
    // Each token works where it belongs.
    expect((await bearerPost(resource('/search/mcp'), aliceSearch.accessToken)).status).not.toBe(401);
  });

  it("/token refuses a refresh for the other server's resource; /authorize an unknown resource", async () => {
    const refresh = (resourceUrl: string): Promise<Response> =>
      fetch(`${stack.url}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({
          grant_type: 'refresh_token',
          refresh_token: aliceSearch.refreshToken,
          client_id: aliceSearch.clientId,
          resource: resourceUrl,
        }),
      });
    const refused = await refresh(resource('/files/mcp'));
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { error: string }).error).toBe('invalid_target');
    // The refused request did not spend the refresh token.
    expect((await refresh(resource('/search/mcp'))).status).toBe(200);

    const authorizationUrl = aliceSearch.provider.authorizationUrl as URL;
    for (const unknown of [
      resource('/other/mcp'),
      resource('/search'),
      resource('/files/mcp/x'),
      `${stack.url}/`,
    ]) {
      const asked = new URL(authorizationUrl);
      asked.searchParams.set('resource', unknown);
      const res = await fetch(asked, {
        headers: { cookie: aliceSearch.jar.get(stack.url) },
        redirect: 'manual',
      });
      expect(res.status, unknown).toBe(302);
      const back = new URL(res.headers.get('location') ?? '');
      expect(back.href.startsWith(REDIRECT_URL), unknown).toBe(true);
      expect(back.searchParams.get('error'), unknown).toBe('invalid_target');
      expect(back.searchParams.get('state')).toBe(authorizationUrl.searchParams.get('state'));
    }
  });

  it("one server's mcp_access rules leave the other's tool of the same name alone; calls are labelled by server", async () => {
    expect(await toolNames(aliceSearch)).toEqual(['count', 'whoami']);
    const requestsBefore = searchRequests;
    const denied = await aliceSearch.client.callTool({ name: 'echo', arguments: { text: 'hi' } }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(denied).toBeInstanceOf(McpError);
    expect(searchRequests - requestsBefore, 'the refused call reached the search server').toBe(0);

    const echoed = await aliceFiles.client.callTool({ name: 'echo', arguments: { text: 'hi' } });
    expect(textOf(echoed)).toBe('hi');

    const calls = stack.proxy.logs.filter((l) => l.audit === 'mcp_call' && l.name === 'echo');
    expect(calls).toEqual([
      expect.objectContaining({ server: 'search', name: 'echo', outcome: 'denied', sub: 'alice' }),
      expect.objectContaining({ server: 'files', name: 'echo', outcome: 'ok', sub: 'alice' }),
    ]);
    const metrics = await (await fetch(`${stack.url}/metrics`)).text();
    expect(metrics).toContain(
      'mcp_oidc_proxy_mcp_calls_total{server="search",method="tools/call",name="echo",outcome="denied"} 1',
    );
    expect(metrics).toContain(
      'mcp_oidc_proxy_mcp_calls_total{server="files",method="tools/call",name="echo",outcome="ok"} 1',
    );
  });

  it("one server's allow-list refuses an outsider there, token and /authorize alike, while the other still serves them", async () => {
    const bobSearch = await connect('/search/mcp', bob);
    const bobFiles = await connect('/files/mcp', bob, { jar: bobSearch.jar, like: bobSearch });
    expect(await toolNames(bobFiles)).toContain('echo');

    // files: engineering only, from now on. Bob (sales) holds a token minted before.
    stack.reload(serversConfig(search, ['engineering']));
    await waitFor(
      async () => (await bearerPost(resource('/files/mcp'), bobFiles.accessToken)).status === 403,
      5000,
      "bob's files token refused",
    );
    const refused = await bearerPost(resource('/files/mcp'), bobFiles.accessToken);
    expect(((await refused.json()) as { error: string }).error).toBe('access_denied');
    expect(await (await fetch(`${stack.url}/metrics`)).text()).toMatch(
      /mcp_oidc_proxy_auth_requests_total\{mode="oidc",result="denied"\} [1-9]/,
    );
    expect(await toolNames(bobSearch)).toEqual(['whoami']);
    // Alice is in the group: her token still works there.
    expect(textOf(await aliceFiles.client.callTool({ name: 'echo', arguments: { text: 'still' } }))).toBe(
      'still',
    );

    // A new authorization for files: refused with access_denied at /authorize, back to the client.
    const provider = new HeadlessOAuthProvider();
    provider.info = bobSearch.provider.info;
    const authorizationUrl = await requestAuthorization(new URL(resource('/files/mcp')), provider);
    const { callback } = await walkAuthorization(authorizationUrl, bobSearch.jar, bob);
    expect(callback.href.startsWith(REDIRECT_URL)).toBe(true);
    expect(callback.searchParams.get('error')).toBe('access_denied');
    expect(callback.searchParams.get('code')).toBeNull();

    // The refusal at /authorize is audited, naming the server (a refused bearer request is not:
    // it is answered on every call, and counted in auth_requests_total instead).
    const denials = stack.proxy.logs.filter((l) => l.audit === 'access_denied' && l.sub === 'bob');
    expect(denials).toEqual([
      expect.objectContaining({
        server: 'files',
        client_id: bobSearch.clientId,
        reason:
          'The account may not use the MCP server "files" (its allowed_emails, allowed_domains, allowed_groups).',
      }),
    ]);
  });
});
