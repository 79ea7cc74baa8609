import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestProxy, type TestProxy } from '../helpers/servers.js';
import { makeTestPki, type TestPki } from '../helpers/tls.js';

describe('an https target', () => {
  let pki: TestPki;
  let backendUrl: string;
  let closeBackend: () => void;
  const proxies: TestProxy[] = [];

  beforeAll(async () => {
    pki = makeTestPki();
    const server = createServer({ key: pki.key, cert: pki.cert }, (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ path: req.url, host: req.headers.host, tls: true }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    backendUrl = `https://localhost:${(server.address() as AddressInfo).port}`;
    closeBackend = () => {
      server.closeAllConnections();
      server.close();
    };
  });
  afterAll(async () => {
    for (const p of proxies) await p.close();
    closeBackend();
    pki.cleanup();
  });

  it('is reached over TLS when PROXY_CA_FILE trusts its CA, with a path prefix', async () => {
    const proxy = await startTestProxy({ PROXY_TARGET_URL: `${backendUrl}/base`, PROXY_CA_FILE: pki.caFile });
    proxies.push(proxy);
    const res = await fetch(`${proxy.url}/mcp?x=1`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ path: '/base/mcp?x=1', host: new URL(backendUrl).host, tls: true });
  });

  it('is refused with a 502 that says the certificate is not trusted when no CA is given', async () => {
    const proxy = await startTestProxy({ PROXY_TARGET_URL: backendUrl, PROXY_RETRIES: '0' });
    proxies.push(proxy);
    const res = await fetch(`${proxy.url}/mcp`);
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: string; error_description: string };
    expect(body.error).toBe('upstream_tls_error');
    expect(body.error_description).toMatch(/certificate/i);
    expect(body.error_description).toMatch(/PROXY_CA_FILE/);
  });
});
