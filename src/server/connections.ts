import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Knows which client connections carry a request right now, so shutdown can close every
 * other one at once: idle keep-alive sockets, and sockets that connected but never sent
 * a request (Node's `closeIdleConnections` leaves those open until its headers timeout).
 */
export class ConnectionTracker {
  private readonly sockets = new Map<Socket, number>();
  private draining = false;

  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.sockets.set(socket, 0);
      socket.once('close', () => this.sockets.delete(socket));
    });
    server.on('request', (req) => {
      const socket = req.socket as Socket;
      this.sockets.set(socket, (this.sockets.get(socket) ?? 0) + 1);
    });
    // An upgraded socket belongs to its tunnel from now on.
    server.on('upgrade', (req) => this.sockets.delete(req.socket as Socket));
  }

  /** Called when a response is done; while draining its socket closes once it is idle. */
  responseDone(socket: Socket | null): void {
    if (!socket) return;
    const n = (this.sockets.get(socket) ?? 1) - 1;
    if (!this.sockets.has(socket)) return;
    this.sockets.set(socket, n);
    if (this.draining && n <= 0) socket.end();
  }

  /** Starts draining: idle connections close now, busy ones when their response is done. */
  drain(): void {
    this.draining = true;
    for (const [socket, n] of this.sockets) if (n <= 0) socket.end();
  }

  destroyAll(): void {
    for (const socket of this.sockets.keys()) socket.destroy();
  }
}
