// Child processes of the soak (Redis, the backend, the proxies): started, watched, stopped; every
// one still alive is SIGKILLed when the soak exits, whatever the reason. Also the /proc readings.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';

const children = new Set();
process.on('exit', () => {
  for (const entry of children) entry.child.kill('SIGKILL');
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it returns truthy (that value) or `timeoutMs` passes (throws). */
export async function waitFor(what, check, timeoutMs, everyMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** `n` distinct free loopback ports: all bound at once (so none repeats), then released. */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(() => resolve()))));
  }
}

/** Whether something accepts TCP connections on the loopback port. */
export function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Spawns `command`; the entry's `exit` promise settles when it is gone. `output` (a writable stream)
 * gets its stdout and stderr unless `pipeStdout` keeps stdout readable for the caller.
 */
export function startChild(name, command, args, { env = {}, output, pipeStdout = false } = {}) {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const entry = { name, child, pid: child.pid, exited: false };
  children.add(entry);
  entry.exit = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      entry.exited = true;
      entry.code = code;
      entry.signal = signal;
      children.delete(entry);
      resolve();
    });
    child.once('error', (error) => {
      entry.error = error;
      if (child.pid === undefined) {
        entry.exited = true;
        children.delete(entry);
        resolve();
      }
    });
  });
  if (output) {
    if (!pipeStdout) child.stdout.pipe(output, { end: false });
    child.stderr.pipe(output, { end: false });
  }
  return entry;
}

/** SIGTERM (SIGKILL after `graceMs`), or `signal` at once; resolves once the process is gone. */
export async function stopChild(entry, { signal = 'SIGTERM', graceMs = 5000 } = {}) {
  if (!entry || entry.exited) return;
  entry.child.kill(signal);
  const timer = setTimeout(() => entry.child.kill('SIGKILL'), graceMs);
  await entry.exit;
  clearTimeout(timer);
}

/** The first JSON line a child prints on stdout (the backend's {"port":N}). */
export function firstJsonLine(entry, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(
      () => reject(new Error(`${entry.name}: no start-up line in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onData = (chunk) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      entry.child.stdout.off('data', onData);
      entry.child.stdout.resume();
      try {
        resolve(JSON.parse(buffered.slice(0, nl)));
      } catch (error) {
        reject(error);
      }
    };
    entry.child.stdout.setEncoding('utf8').on('data', onData);
    entry.exit.then(() => reject(new Error(`${entry.name} exited before it was ready`)));
  });
}

/** Resident memory (MiB) and open file descriptors of a live process, from /proc; undefined once gone. */
export function procUsage(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    return { rssMb: Math.round((kb / 1024) * 10) / 10, fds };
  } catch {
    return undefined;
  }
}
