import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { endSocketWithError, rawResponseHead } from '../http/errors.js';
import { classifyUpstreamError, failureAnswer, type UpstreamFailure } from './errors.js';
import { type Upstream, upstreamPath } from './upstream.js';

export interface TunnelResult {
  outcome: 'ok' | 'aborted' | UpstreamFailure['outcome'];
  upstreamStatus?: number;
  failure?: UpstreamFailure;
}

/** Live tunnels, so shutdown can close them with a proper WebSocket close frame. */
export interface TunnelRegistry {
  add(tunnel: Tunnel): void;
  delete(tunnel: Tunnel): void;
}

export interface Tunnel {
  client: Duplex;
  upstream: Duplex;
}

function headerPairs(headers: IncomingHttpHeaders): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) pairs.push([name, v]);
  }
  return pairs;
}

/**
 * Tunnels a WebSocket upgrade: the upstream's 101 response is relayed with its headers
 * as sent (Sec-WebSocket-Accept, -Protocol, -Extensions), then bytes flow both ways
 * untouched, so frames, pings and close pass through. A non-101 answer is relayed as is.
 */
export function tunnelWebSocket(
  upstream: Upstream,
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  pathAndQuery: string,
  headers: string[],
  registry: TunnelRegistry,
  extraResponseHeaders: ReadonlyArray<readonly [string, string]>,
  requestId: string,
): Promise<TunnelResult> {
  return new Promise<TunnelResult>((resolve) => {
    let abort: ((reason: Error) => void) | undefined;
    let wrote = false;
    let status: number | undefined;
    const onClientClose = (): void =>
      abort?.(Object.assign(new Error('client closed'), { code: 'CLIENT_GONE' }));
    client.once('close', onClientClose);
    client.on('error', () => client.destroy());

    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(controller) {
        abort = (reason) => controller.abort(reason);
        if (client.destroyed) controller.abort(new Error('client closed'));
      },
      onRequestUpgrade(_controller, statusCode, upgradeHeaders, socket) {
        client.off('close', onClientClose);
        status = statusCode;
        wrote = true;
        client.write(rawResponseHead(101, headerPairs(upgradeHeaders), 'Switching Protocols'));
        if (head.length > 0) socket.write(head);
        const tunnel: Tunnel = { client, upstream: socket };
        registry.add(tunnel);
        let closed = false;
        const close = (): void => {
          if (closed) return;
          closed = true;
          registry.delete(tunnel);
          client.destroy();
          socket.destroy();
          resolve({ outcome: 'ok', upstreamStatus: 101 });
        };
        socket
          .on('error', close)
          .on('close', close)
          .on('end', () => client.end());
        client
          .on('error', close)
          .on('close', close)
          .on('end', () => socket.end());
        socket.pipe(client);
        client.pipe(socket);
      },
      onResponseStart(_controller, statusCode, responseHeaders, statusMessage) {
        status = statusCode;
        wrote = true;
        const pairs = headerPairs(responseHeaders).filter(([n]) => n !== 'connection' && n !== 'keep-alive');
        for (const pair of extraResponseHeaders) {
          if (!pairs.some(([n]) => n === pair[0].toLowerCase())) pairs.push([pair[0], pair[1]]);
        }
        pairs.push(['connection', 'close']);
        client.write(rawResponseHead(statusCode, pairs, statusMessage || 'Upstream Response'));
      },
      onResponseData(_controller, chunk) {
        client.write(chunk);
      },
      onResponseEnd() {
        client.end();
        resolve({ outcome: 'ok', upstreamStatus: status });
      },
      onResponseError(_controller, err) {
        client.off('close', onClientClose);
        if ((err as { code?: string }).code === 'CLIENT_GONE' || client.destroyed) {
          client.destroy();
          resolve({ outcome: 'aborted', upstreamStatus: status });
          return;
        }
        const failure = classifyUpstreamError(err);
        if (wrote) client.destroy();
        else {
          endSocketWithError(client, failureAnswer(failure), requestId, extraResponseHeaders);
        }
        resolve({ outcome: failure.outcome, upstreamStatus: status, failure });
      },
    };
    upstream.pool.dispatch(
      {
        path: upstreamPath(upstream, pathAndQuery),
        method: (req.method ?? 'GET') as Dispatcher.HttpMethod,
        headers: [...headers, 'host', upstream.host],
        body: null,
        upgrade: 'websocket',
      },
      handler,
    );
  });
}

/** A WebSocket close frame with status 1001 (going away); masked when sent by a client. */
export function goingAwayFrame(masked: boolean): Buffer {
  const payload = Buffer.from([0x03, 0xe9]);
  if (!masked) return Buffer.concat([Buffer.from([0x88, payload.length]), payload]);
  const mask = Buffer.from([0x12, 0x34, 0x56, 0x78]);
  const body = Buffer.from(payload.map((b, i) => b ^ (mask[i % 4] as number)));
  return Buffer.concat([Buffer.from([0x88, 0x80 | payload.length]), mask, body]);
}
