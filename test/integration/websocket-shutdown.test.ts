import { createServer } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket, WebSocketServer } from 'ws';
import { type Listening, listen, startTestProxy, waitFor } from '../helpers/servers.js';

describe('shutdown with a WebSocket open', () => {
  let backend: Listening;
  let wss: WebSocketServer;
  const backendCloses: number[] = [];

  beforeAll(async () => {
    const server = createServer();
    wss = new WebSocketServer({ server });
    wss.on('connection', (ws) => {
      ws.on('message', (data, binary) => ws.send(data, { binary }));
      ws.on('close', (code) => backendCloses.push(code));
    });
    backend = await listen(server);
  });
  afterAll(async () => {
    wss.close();
    await backend.close();
  });

  it('sends both sides a 1001 close frame and finishes promptly', async () => {
    const proxy = await startTestProxy({ PROXY_TARGET_URL: backend.url, SHUTDOWN_TIMEOUT: '5' });
    const ws = new WebSocket(`${proxy.url.replace('http', 'ws')}/ws`);
    await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));
    const echoed = new Promise<string>((resolve) => ws.once('message', (d) => resolve(String(d))));
    ws.send('hello');
    expect(await echoed).toBe('hello');

    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    const started = Date.now();
    await proxy.close();
    expect(await closed).toBe(1001);
    expect(Date.now() - started).toBeLessThan(3000);
    await waitFor(() => backendCloses.length > 0, 3000, 'the backend to see the close');
    expect(backendCloses).toEqual([1001]);
  });
});
