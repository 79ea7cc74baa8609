import dc from 'node:diagnostics_channel';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CIMD_DEFAULT_TTL_MS,
  CIMD_MAX_TTL_MS,
  type CimdFailure,
  ClientMetadataDocumentError,
  ClientMetadataDocuments,
  type ClientMetadataDocumentsOptions,
  cacheTtlMs,
} from '../../src/auth/facade/cimd.js';
import { ClientRegistry } from '../../src/auth/facade/clients.js';
import { isForbiddenAddress } from '../../src/net/public-address.js';
import { MemoryStateStore } from '../../src/store/memory.js';

type Route = (req: http.IncomingMessage, res: http.ServerResponse) => void;

let server: http.Server;
let port: number;
let base: string;
const routes = new Map<string, Route>();
const requests: Array<{ path: string; headers: http.IncomingHttpHeaders }> = [];
const serverSockets: Socket[] = [];
let connections = 0;
/** TCP client sockets this process opened (node:net publishes each one). */
let clientSockets = 0;
const onClientSocket = () => {
  clientSockets++;
};

let store: MemoryStateStore;

function documents(options: Partial<ClientMetadataDocumentsOptions> = {}): ClientMetadataDocuments {
  return new ClientMetadataDocuments({ store, allowPrivate: true, ...options });
}

function metadataFor(clientId: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    client_id: clientId,
    client_name: 'Claude',
    redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    ...extra,
  };
}

function serveJson(path: string, body: unknown, headers: Record<string, string> = {}): string {
  const text = JSON.stringify(body);
  routes.set(path, (_req, res) => {
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(text)),
      ...headers,
    });
    res.end(text);
  });
  return `${base}${path}`;
}

/** Resolves when the socket closes, however it closes (a reset included). */
function closedPromise(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

/** The refusal reason `promise` rejects with. */
async function failure(promise: Promise<unknown>): Promise<ClientMetadataDocumentError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ClientMetadataDocumentError);
  return error as ClientMetadataDocumentError;
}

beforeAll(async () => {
  server = http.createServer((req, res) => {
    requests.push({ path: req.url ?? '', headers: req.headers });
    const route = routes.get(req.url ?? '');
    if (route) route(req, res);
    else {
      res.writeHead(404);
      res.end();
    }
  });
  server.on('connection', (socket: Socket) => {
    connections++;
    serverSockets.push(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  dc.subscribe('net.client.socket', onClientSocket);
});

afterAll(async () => {
  dc.unsubscribe('net.client.socket', onClientSocket);
  for (const socket of serverSockets) socket.destroy();
  server.close();
  await once(server, 'close');
});

beforeEach(() => {
  store = new MemoryStateStore();
  routes.clear();
  requests.length = 0;
  connections = 0;
  clientSockets = 0;
});

afterEach(async () => {
  await store.close();
});

describe('fetching a client metadata document', () => {
  it('returns the public client the document describes', async () => {
    const url = serveJson(
      '/oauth/meta',
      metadataFor(`${base}/oauth/meta`, { logo_uri: 'https://claude.ai/logo.png' }),
    );
    const client = await documents().resolve(url);
    expect(client).toEqual({
      client_id: url,
      client_id_issued_at: 0,
      client_name: 'Claude',
      redirect_uris: ['https://claude.ai/api/mcp/auth_callback'],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      logo_uri: 'https://claude.ai/logo.png',
      source: 'metadata-document',
      confidential: false,
    });
    expect(requests).toHaveLength(1);
    expect(requests[0]!.headers.accept).toBe('application/json');
    expect(requests[0]!.headers['accept-encoding']).toBe('identity');
    // The positive control for the "no connection" assertions below.
    expect(clientSockets).toBe(1);
  });

  it('treats an absent token_endpoint_auth_method as none', async () => {
    const doc = metadataFor(`${base}/meta`);
    delete doc.token_endpoint_auth_method;
    const url = serveJson('/meta', doc);
    expect((await documents().resolve(url)).token_endpoint_auth_method).toBe('none');
  });

  it('connects to the address it resolved and checked, sending the hostname as Host', async () => {
    const url = `http://client.example.test:${port}/meta`;
    serveJson('/meta', metadataFor(url));
    const resolved: string[] = [];
    const docs = documents({
      resolveHost: async (hostname) => {
        resolved.push(hostname);
        return [{ address: '127.0.0.1', family: 4 }];
      },
    });
    expect((await docs.resolve(url)).client_id).toBe(url);
    expect(resolved).toEqual(['client.example.test']);
    expect(requests[0]!.headers.host).toBe(`client.example.test:${port}`);
  });

  it('works through the client registry: a document client authenticates as a public client', async () => {
    const url = serveJson('/meta', metadataFor(`${base}/meta`));
    const registry = new ClientRegistry({ store, dcrEnabled: true, metadataDocuments: documents() });
    expect((await registry.authenticate(url, undefined, 'none')).client_id).toBe(url);
    const error = await registry.authenticate(url, 'a-secret', 'client_secret_post').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'invalid_client' });
  });
});

describe('caching', () => {
  it('serves the document from the store until max-age runs out', async () => {
    const url = serveJson('/meta', metadataFor(`${base}/meta`), { 'cache-control': 'public, max-age=120' });
    const ttls: number[] = [];
    const set = store.set.bind(store);
    store.set = async (key, value, ttl) => {
      ttls.push(ttl);
      return set(key, value, ttl);
    };
    const docs = documents();
    await docs.resolve(url);
    const again = await documents().resolve(url);
    expect(again.client_id).toBe(url);
    expect(requests).toHaveLength(1);
    expect(ttls).toEqual([120_000]);
    await docs.forget(url);
    await docs.resolve(url);
    expect(requests).toHaveLength(2);
  });

  it('does not cache a no-store document, nor a failure', async () => {
    const url = serveJson('/meta', metadataFor(`${base}/meta`), { 'cache-control': 'no-store' });
    await documents().resolve(url);
    await documents().resolve(url);
    expect(requests).toHaveLength(2);

    let fail = true;
    routes.set('/flaky', (_req, res) => {
      if (fail) {
        res.writeHead(503);
        res.end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(metadataFor(`${base}/flaky`)));
    });
    expect((await failure(documents().resolve(`${base}/flaky`))).reason).toBe('CIMD_HTTP_STATUS');
    fail = false;
    expect((await documents().resolve(`${base}/flaky`)).client_id).toBe(`${base}/flaky`);
  });

  it('fetches once for concurrent lookups of one document', async () => {
    const url = serveJson('/meta', metadataFor(`${base}/meta`));
    const docs = documents();
    const results = await Promise.all([docs.resolve(url), docs.resolve(url), docs.resolve(url)]);
    expect(results.map((c) => c.client_id)).toEqual([url, url, url]);
    expect(requests).toHaveLength(1);
  });

  // [Cache-Control, TTL in ms or undefined for "not cached"]
  const policies: Array<[string | undefined, number | undefined]> = [
    [undefined, CIMD_DEFAULT_TTL_MS],
    ['public', CIMD_DEFAULT_TTL_MS],
    ['max-age=60', 60_000],
    ['public, MAX-AGE=3600, must-revalidate', 3_600_000],
    ['max-age=31536000', CIMD_MAX_TTL_MS],
    ['max-age=0', undefined],
    ['no-store', undefined],
    ['no-cache, max-age=600', undefined],
    ['max-age=abc', CIMD_DEFAULT_TTL_MS],
  ];
  it.each(policies)('Cache-Control %s -> %s ms', (header, ttl) => {
    expect(cacheTtlMs(header, CIMD_DEFAULT_TTL_MS, CIMD_MAX_TTL_MS)).toBe(ttl);
  });
});

describe('SSRF guard (private addresses not allowed)', () => {
  // [client id, reason]; each must be refused before any socket is opened.
  const refused = (): Array<[string, CimdFailure]> => [
    [`https://127.0.0.1:${port}/meta`, 'CIMD_ADDRESS_FORBIDDEN'],
    [`https://localhost:${port}/meta`, 'CIMD_ADDRESS_FORBIDDEN'],
    [`https://[::1]:${port}/meta`, 'CIMD_ADDRESS_FORBIDDEN'],
    [`https://[::ffff:7f00:1]:${port}/meta`, 'CIMD_ADDRESS_FORBIDDEN'],
    [`https://0.0.0.0:${port}/meta`, 'CIMD_ADDRESS_FORBIDDEN'],
    ['https://169.254.169.254/latest/meta-data', 'CIMD_ADDRESS_FORBIDDEN'],
    ['https://10.0.0.1/meta', 'CIMD_ADDRESS_FORBIDDEN'],
    ['https://192.168.1.1/meta', 'CIMD_ADDRESS_FORBIDDEN'],
    ['https://100.64.0.1/meta', 'CIMD_ADDRESS_FORBIDDEN'],
    ['https://[fd00::1]/meta', 'CIMD_ADDRESS_FORBIDDEN'],
    ['https://[fe80::1]/meta', 'CIMD_ADDRESS_FORBIDDEN'],
    ['https://224.0.0.1/meta', 'CIMD_ADDRESS_FORBIDDEN'],
    [`http://127.0.0.1:${port}/meta`, 'CIMD_URL_INVALID'],
    ['http://example.com/meta', 'CIMD_URL_INVALID'],
    ['https://user@claude.ai/oauth/meta', 'CIMD_URL_INVALID'],
    ['https://claude.ai/oauth/meta#x', 'CIMD_URL_INVALID'],
    ['https://claude.ai/', 'CIMD_URL_INVALID'],
    ['https://claude.ai/a/../oauth/meta', 'CIMD_URL_INVALID'],
    ['https://CLAUDE.ai/oauth/meta', 'CIMD_URL_INVALID'],
    ['ftp://claude.ai/oauth/meta', 'CIMD_URL_INVALID'],
  ];

  it('refuses private, loopback, link-local and non-https client ids without connecting', async () => {
    const docs = documents({ allowPrivate: false });
    for (const [url, reason] of refused()) {
      const error = await failure(docs.resolve(url));
      expect({ url, reason: error.reason }).toEqual({ url, reason });
      expect(error.code).toBe('invalid_client');
      expect(error.status).toBe(401);
    }
    expect(clientSockets).toBe(0);
    expect(connections).toBe(0);
    expect(requests).toHaveLength(0);
  });

  it('refuses a hostname when any address it resolves to is private, and does not name the address', async () => {
    const docs = documents({
      allowPrivate: false,
      resolveHost: async () => [
        { address: '93.184.215.14', family: 4 },
        { address: '10.1.2.3', family: 4 },
      ],
    });
    const error = await failure(docs.resolve('https://rebind.example.test/meta'));
    expect(error.reason).toBe('CIMD_ADDRESS_FORBIDDEN');
    expect(error.message).not.toContain('10.1.2.3');
    expect(String((error.cause as Error).message)).toContain('10.1.2.3');
    expect(clientSockets).toBe(0);
  });

  it('reports a host that does not resolve', async () => {
    const docs = documents({
      allowPrivate: false,
      resolveHost: async () => {
        throw Object.assign(new Error('getaddrinfo ENOTFOUND'), { code: 'ENOTFOUND' });
      },
    });
    expect((await failure(docs.resolve('https://nowhere.example.test/meta'))).reason).toBe('CIMD_DNS_FAILED');
    expect(clientSockets).toBe(0);
  });

  // [address, forbidden]
  const addresses: Array<[string, boolean]> = [
    ['127.0.0.1', true],
    ['127.255.255.254', true],
    ['0.0.0.0', true],
    ['10.20.30.40', true],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['192.168.0.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['100.127.255.255', true],
    ['224.0.0.251', true],
    ['255.255.255.255', true],
    ['198.18.0.1', true],
    ['::', true],
    ['::1', true],
    ['fe80::1', true],
    ['fe80::1%eth0', true],
    ['fc00::1', true],
    ['fd12:3456::1', true],
    ['ff02::1', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:7f00:1', true],
    ['::ffff:169.254.169.254', true],
    ['::ffff:10.0.0.1', true],
    ['::127.0.0.1', true],
    ['64:ff9b::a9fe:a9fe', true],
    ['2002:7f00:1::', true],
    ['2001:db8::1', true],
    ['not-an-ip', true],
    // Public addresses.
    ['93.184.215.14', false],
    ['8.8.8.8', false],
    ['172.32.0.1', false],
    ['100.128.0.1', false],
    ['::ffff:8.8.8.8', false],
    ['64:ff9b::808:808', false],
    ['2002:808:808::1', false],
    ['2606:4700:4700::1111', false],
    ['2a00:1450:4001:80b::200e', false],
  ];
  it.each(addresses)('isForbiddenAddress(%s) = %s', (address, forbidden) => {
    expect(isForbiddenAddress(address)).toBe(forbidden);
  });
});

describe('limits and document checks', () => {
  it('refuses a document larger than the limit by its Content-Length', async () => {
    const url = serveJson('/big', metadataFor(`${base}/big`, { padding: 'x'.repeat(70 * 1024) }));
    expect((await failure(documents().resolve(url))).reason).toBe('CIMD_TOO_LARGE');
  });

  it('refuses a streamed document (no Content-Length) once it passes the limit', async () => {
    const body = Buffer.from(
      JSON.stringify(metadataFor(`${base}/stream`, { padding: 'x'.repeat(100 * 1024) })),
    );
    routes.set('/stream', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      for (let i = 0; i < body.length; i += 16 * 1024) res.write(body.subarray(i, i + 16 * 1024));
      res.end();
    });
    expect((await failure(documents().resolve(`${base}/stream`))).reason).toBe('CIMD_TOO_LARGE');
    // Under a higher limit the same document is fine: the size is what was refused.
    expect((await documents({ maxBytes: 256 * 1024 }).resolve(`${base}/stream`)).client_id).toBe(
      `${base}/stream`,
    );
  });

  it('gives up at the deadline when the server does not answer, and closes the connection', async () => {
    let closed: Promise<unknown> | undefined;
    routes.set('/slow', (req) => {
      closed = closedPromise(req.socket);
    });
    const started = Date.now();
    const error = await failure(documents({ timeoutMs: 300 }).resolve(`${base}/slow`));
    expect(error.reason).toBe('CIMD_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(closed).toBeDefined();
    await closed;
  });

  it('gives up at the deadline when the body stalls after the headers', async () => {
    routes.set('/stall', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"client_id":');
    });
    expect((await failure(documents({ timeoutMs: 300 }).resolve(`${base}/stall`))).reason).toBe(
      'CIMD_TIMEOUT',
    );
  });

  it('does not follow redirects', async () => {
    const target = serveJson('/target', metadataFor(`${base}/moved`));
    routes.set('/moved', (_req, res) => {
      res.writeHead(302, { location: target });
      res.end();
    });
    expect((await failure(documents().resolve(`${base}/moved`))).reason).toBe('CIMD_REDIRECT');
    expect(requests.map((r) => r.path)).toEqual(['/moved']);
  });

  it('refuses a document whose client_id is not its URL', async () => {
    const url = serveJson('/meta', metadataFor('https://claude.ai/oauth/mcp-oauth-client-metadata'));
    const error = await failure(documents().resolve(url));
    expect(error.reason).toBe('CIMD_CLIENT_ID_MISMATCH');
    expect(error.message).toContain('must be its own URL');
    const missing = metadataFor(url);
    delete missing.client_id;
    serveJson('/meta', missing);
    expect((await failure(documents().resolve(url))).reason).toBe('CIMD_CLIENT_ID_MISMATCH');
  });

  // [what, document (for client id base + /doc), reason, part of the message]
  const badDocuments = (): Array<[string, unknown, CimdFailure, string]> => [
    [
      'an invalid redirect URI',
      metadataFor(`${base}/doc`, { redirect_uris: ['javascript:alert(1)'] }),
      'CIMD_INVALID_METADATA',
      'javascript: scheme',
    ],
    [
      'a shared-secret auth method',
      metadataFor(`${base}/doc`, { token_endpoint_auth_method: 'client_secret_basic' }),
      'CIMD_INVALID_METADATA',
      'use one of none',
    ],
    [
      'a client_secret',
      metadataFor(`${base}/doc`, { client_secret: 'shh' }),
      'CIMD_INVALID_METADATA',
      'must not contain a client_secret',
    ],
    ['an array', [metadataFor(`${base}/doc`)], 'CIMD_INVALID_JSON', 'not a JSON object'],
  ];
  it.each([0, 1, 2, 3])('refuses document %i of the bad ones', async (i) => {
    const [, doc, reason, message] = badDocuments()[i]!;
    const url = serveJson('/doc', doc);
    const error = await failure(documents().resolve(url));
    expect(error.reason).toBe(reason);
    expect(error.message).toContain(message);
  });

  it('refuses a body that is not JSON, and a non-200 status', async () => {
    routes.set('/html', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html>login</html>');
    });
    expect((await failure(documents().resolve(`${base}/html`))).reason).toBe('CIMD_INVALID_JSON');
    expect((await failure(documents().resolve(`${base}/absent`))).reason).toBe('CIMD_HTTP_STATUS');
  });

  it('reports a refused connection', async () => {
    const closedServer = http.createServer();
    closedServer.listen(0, '127.0.0.1');
    await once(closedServer, 'listening');
    const closedPort = (closedServer.address() as AddressInfo).port;
    closedServer.close();
    await once(closedServer, 'close');
    const error = await failure(documents().resolve(`http://127.0.0.1:${closedPort}/meta`));
    expect(error.reason).toBe('CIMD_CONNECT_FAILED');
  });
});
