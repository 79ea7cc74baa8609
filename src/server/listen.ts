import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An HTTP server with the proxy's timeouts (the main listener and ADMIN_LISTEN's alike). */
export function httpServer(): Server {
  return createServer({
    // Uploads and tool calls may legitimately take long; idle sockets are reaped by keepAliveTimeout.
    requestTimeout: 0,
    headersTimeout: 30_000,
    keepAliveTimeout: 65_000,
  });
}

/** Resolves once `server` listens; rejects with the listen error (a port taken, say). */
export function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Where a listening server is: `host:port` as bound, and a URL to reach it (a wildcard as loopback). */
export function listeningAt(server: Server): { listen: string; url: string; port: number } {
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host;
  return {
    listen: `${host}:${address.port}`,
    url: `http://${reachable}:${address.port}`,
    port: address.port,
  };
}

/** Closes a server that listened: resolves once it stopped accepting and its connections ended. */
export function closed(server: Server): Promise<void> {
  return new Promise<void>((resolve) => server.close(() => resolve()));
}
