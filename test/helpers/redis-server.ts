import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { waitFor } from './wait.js';

export interface RedisServer {
  port: number;
  url: string;
  child: ChildProcess;
  /** Kills the server (SIGKILL: it goes away as in a crash) and waits for it to exit. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** Clients must authenticate with this password (`--requirepass`); `url` carries it. */
  password?: string;
  /**
   * Serve TLS on the port, with plain TCP off, from these PEM files (clients need not present
   * a certificate); `url` is then `rediss://localhost:…`.
   */
  tls?: { certFile: string; keyFile: string; caFile: string };
  /** Run as a cluster node with its bus on `busPort`, keeping its nodes file in `dir`. */
  cluster?: { busPort: number; dir: string };
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

/** Servers started and not yet stopped (this test file's: each file has its own module). */
const running = new Set<RedisServer>();

function serverArgs(port: number, options: RedisServerOptions): string[] {
  const args = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  const { password, tls, cluster } = options;
  if (tls) {
    // `--port 0` turns plain TCP off, so only TLS answers on the port.
    args.push('--port', '0', '--tls-port', String(port));
    args.push(
      '--tls-cert-file',
      tls.certFile,
      '--tls-key-file',
      tls.keyFile,
      '--tls-ca-cert-file',
      tls.caFile,
    );
    args.push('--tls-auth-clients', 'no');
  } else {
    args.push('--port', String(port));
  }
  if (password !== undefined) args.push('--requirepass', password);
  if (cluster) {
    args.push('--cluster-enabled', 'yes', '--cluster-port', String(cluster.busPort));
    args.push('--cluster-config-file', join(cluster.dir, `nodes-${port}.conf`), '--dir', cluster.dir);
  }
  return args;
}

/**
 * A throwaway redis-server on `port` (no persistence, loopback only), resolved once it accepts
 * connections. Pick the port with freePort(): `--port 0` would disable TCP, not pick one.
 */
export async function startRedisServer(port: number, options: RedisServerOptions = {}): Promise<RedisServer> {
  const child = spawn('redis-server', serverArgs(port, options), { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const auth = options.password === undefined ? '' : `:${encodeURIComponent(options.password)}@`;
  const server: RedisServer = {
    port,
    url: options.tls ? `rediss://${auth}localhost:${port}` : `redis://${auth}127.0.0.1:${port}`,
    child,
    stop: async () => {
      running.delete(server);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
  running.add(server);
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
    await server.stop();
    throw err;
  }
  return server;
}

/** Stops every server this file started that is still running. */
export async function stopAllRedisServers(): Promise<void> {
  for (const server of [...running]) await server.stop();
}
