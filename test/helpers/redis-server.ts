import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { waitFor } from './wait.js';

export interface RedisServer {
  port: number;
  url: string;
  child: ChildProcess;
  /** Kills the server (SIGKILL: it goes away as in a crash) and waits for it to exit. */
  stop(): Promise<void>;
}

/** Whether something accepts TCP connections on the loopback port. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * A throwaway redis-server on `port` (no persistence, loopback only), resolved once it accepts
 * connections. Pick the port with freePort(): `--port 0` would disable TCP, not pick one.
 */
export async function startRedisServer(port: number): Promise<RedisServer> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  };
  try {
    await waitFor(
      async () => {
        if (child.exitCode !== null) {
          const err: NodeJS.ErrnoException = new Error(`redis-server on port ${port} exited: ${output}`);
          if (/address already in use/i.test(output)) err.code = 'EADDRINUSE';
          throw err;
        }
        return accepts(port);
      },
      10_000,
      `redis-server on port ${port}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, url: `redis://127.0.0.1:${port}`, child, stop };
}
