/**
 * Fuzzing client metadata documents (CIMD): a local server answers with fuzzed documents, headers
 * and statuses, read the way test/integration/cimd.test.ts reads them (private addresses and
 * plain http allowed: the running proxy refuses both before connecting, which that file tests).
 * Whatever the server sends, the resolver gives a public client the document's URL names, or a
 * ClientMetadataDocumentError (the 401 invalid_client of /authorize and /token): nothing else.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClientMetadataDocumentError, ClientMetadataDocuments } from '../../src/auth/facade/cimd.js';
import { MemoryStateStore } from '../../src/store/memory.js';
import {
  assertProperty,
  fuzzTimeout,
  hostileOrHuge,
  hostileString,
  watchProcessFailures,
} from './harness.js';

interface Served {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

describe('fuzzing client metadata documents', () => {
  const crashes = watchProcessFailures();
  const documents = new Map<string, Served>();
  let server: http.Server;
  let base: string;
  let store: MemoryStateStore;
  let next = 0;

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const doc = documents.get(req.url ?? '');
      if (!doc) {
        res.writeHead(404);
        res.end();
        return;
      }
      res.writeHead(doc.status, doc.headers);
      res.end(doc.body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    store = new MemoryStateStore();
  });
  afterAll(async () => {
    server.closeAllConnections();
    server.close();
    await store.close();
  });

  it(
    'a fuzzed document resolves to a public client or is refused as invalid_client',
    async () => {
      const resolver = new ClientMetadataDocuments({ store, allowPrivate: true, timeoutMs: 2000 });
      const value = (good: unknown[]) =>
        fc.oneof(
          { weight: 3, arbitrary: fc.constantFrom(...good) },
          { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
          { weight: 1, arbitrary: hostileOrHuge(3000) },
        );
      const fields = fc.record(
        {
          client_id: fc.constantFrom('self', 'self/', 'other', 'SELF'),
          client_name: value(['Claude', '']),
          redirect_uris: fc.oneof(
            fc.array(
              fc.oneof(
                fc.constantFrom(
                  'https://claude.ai/api/mcp/auth_callback',
                  'http://127.0.0.1/cb',
                  'http://evil.example/cb',
                  'javascript:alert(1)',
                  '',
                ),
                hostileString(),
              ),
              { maxLength: 3 },
            ),
            fc.jsonValue({ maxDepth: 1 }),
          ),
          grant_types: value([['authorization_code', 'refresh_token'], ['client_credentials'], []]),
          response_types: value([['code'], ['token']]),
          token_endpoint_auth_method: value(['none', 'client_secret_basic', 'private_key_jwt']),
          client_secret: value(['s3cret']),
          logo_uri: value(['https://claude.ai/logo.png', 'javascript:x']),
          jwks: value([{ keys: [] }]),
        },
        { requiredKeys: ['redirect_uris'] },
      );
      const body = fc.oneof(
        { weight: 4, arbitrary: fields.map((f) => ({ kind: 'fields' as const, fields: f })) },
        {
          weight: 1,
          arbitrary: fc
            .oneof(
              fc.uint8Array({ maxLength: 200 }),
              fc.jsonValue().map((v) => new TextEncoder().encode(JSON.stringify(v))),
            )
            .map((bytes) => ({ kind: 'raw' as const, bytes: Buffer.from(bytes) })),
        },
        {
          weight: 1,
          arbitrary: fc.integer({ min: 60_000, max: 70_000 }).map((n) => ({ kind: 'huge' as const, n })),
        },
      );
      const response = fc.record({
        status: fc.constantFrom(200, 200, 200, 201, 204, 301, 302, 404, 500),
        type: fc.constantFrom(
          'application/json',
          'application/json; charset=utf-8',
          'text/html',
          'application/octet-stream',
        ),
        cacheControl: fc.option(
          fc.oneof(fc.constantFrom('max-age=60', 'no-store', 'max-age=-1', 'max-age=1e9'), hostileString(6)),
          {
            nil: undefined,
          },
        ),
        encoding: fc.option(fc.constantFrom('gzip', 'identity', 'br'), { nil: undefined }),
        location: fc.option(fc.constant('https://evil.example/meta'), { nil: undefined }),
      });
      await assertProperty(
        fc.asyncProperty(body, response, async (b, r) => {
          const path = `/doc/${next++}`;
          const url = `${base}${path}`;
          let bytes: Buffer;
          if (b.kind === 'fields') {
            const named = b.fields.client_id;
            // Absent when the record left it out (JSON.stringify drops undefined).
            const client_id =
              named === undefined
                ? undefined
                : { self: url, 'self/': `${url}/`, other: `${base}/other`, SELF: url.toUpperCase() }[named];
            bytes = Buffer.from(JSON.stringify({ ...b.fields, client_id }));
          } else if (b.kind === 'raw') bytes = b.bytes;
          else
            bytes = Buffer.from(
              JSON.stringify({
                client_id: url,
                redirect_uris: ['https://a.example/cb'],
                pad: 'x'.repeat(b.n),
              }),
            );
          const headers: Record<string, string> = { 'content-type': r.type };
          if (r.cacheControl !== undefined)
            headers['cache-control'] = r.cacheControl.replace(/[^\x20-\x7e]/g, '');
          if (r.encoding !== undefined) headers['content-encoding'] = r.encoding;
          if (r.location !== undefined) headers.location = r.location;
          documents.set(path, { status: r.status, headers, body: bytes });
          const context = `${r.status} ${JSON.stringify(headers)} ${bytes.toString('utf8').slice(0, 400)}`;
          const outcome = await resolver.resolve(url).then(
            (client) => ({ client }),
            (error: unknown) => ({ error }),
          );
          if ('error' in outcome) {
            expect(outcome.error, `${context}: ${String(outcome.error)}`).toBeInstanceOf(
              ClientMetadataDocumentError,
            );
            expect((outcome.error as ClientMetadataDocumentError).code, context).toBe('invalid_client');
            return;
          }
          const { client } = outcome;
          expect(r.status, context).toBe(200);
          expect(client.client_id, context).toBe(url);
          expect(client.confidential, context).toBe(false);
          expect(client.token_endpoint_auth_method, context).toBe('none');
          expect(client.redirect_uris.length, context).toBeGreaterThan(0);
          for (const uri of client.redirect_uris) expect(typeof uri, context).toBe('string');
        }),
        100,
      );
      crashes.expectNone();
    },
    fuzzTimeout(),
  );
});
