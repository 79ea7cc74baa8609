import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** `n` distinct free loopback ports: all bound at once (so none repeats), then released. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = createServer();
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    }
    return servers.map((s) => (s.address() as AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/**
 * Runs `start` with `n` ports chosen beforehand (a proxy whose public URL, and the IdP client
 * registered for it, must name its port before it listens). A released port can be taken by
 * anything in the meantime, an outgoing connection's local port included; on EADDRINUSE,
 * `start` runs again with fresh ports (it must clean up what it started itself, or register
 * the cleanup before it fails).
 */
export async function onFreshPorts<T>(n: number, start: (ports: number[]) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const ports = await freePorts(n);
    try {
      return await start(ports);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 5) throw err;
    }
  }
}
