import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { type JSONRPCMessage, LATEST_PROTOCOL_VERSION } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  ChildProcessTransport,
  type ChildSpec,
  STDERR_CUT_MARK,
  STDERR_LINE_MAX_BYTES,
} from '../../src/stdio/child-transport.js';
import { OrphanReaper } from '../../src/stdio/reaper.js';
import { waitFor } from '../helpers/wait.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURE = path.join(ROOT, 'test/fixtures/stdio/child.mjs');
const ORPHAN_PARENT = path.join(ROOT, 'test/fixtures/stdio/orphan-parent.ts');
const MEMORY_SERVER = path.join(ROOT, 'node_modules/.bin/mcp-server-memory');
/** The memory server's `#!/usr/bin/env node` needs node on PATH. */
const NODE_PATH = `${path.dirname(process.execPath)}:/usr/bin:/bin`;
const HAS_PROC = existsSync('/proc/self/fd');

let reaper: OrphanReaper;
const transports: ChildProcessTransport[] = [];
const processes: ChildProcess[] = [];
/** Every pid a test learned of; afterEach makes sure none is left. */
const pids = new Set<number>();
let scratch: string;

beforeAll(() => {
  reaper = OrphanReaper.start();
  scratch = mkdtempSync(path.join(tmpdir(), 'stdio-child-'));
});

afterAll(() => {
  reaper.close();
  rmSync(scratch, { recursive: true, force: true });
});

afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.close()));
  for (const child of processes.splice(0)) child.kill('SIGKILL');
  for (const pid of pids) {
    for (const target of [-pid, pid]) {
      try {
        process.kill(target, 'SIGKILL');
      } catch {}
    }
  }
  pids.clear();
});

function transport(
  spec: ChildSpec,
  options: { killGraceMs?: number; onStderrLine?: (line: string) => void } = {},
) {
  const t = new ChildProcessTransport(spec, { reaper, ...options });
  transports.push(t);
  return t;
}

function fixture(...flags: string[]): ChildSpec {
  return { command: [process.execPath, FIXTURE, ...flags], env: {} };
}

/** Collects a transport's messages and errors; `next` waits for a matching message. */
function listen(t: ChildProcessTransport) {
  const messages: JSONRPCMessage[] = [];
  const errors: Error[] = [];
  let closes = 0;
  t.onmessage = (m) => messages.push(m);
  t.onerror = (e) => errors.push(e);
  t.onclose = () => closes++;
  return {
    messages,
    errors,
    closes: () => closes,
    async next(
      pred: (m: Record<string, unknown>) => boolean,
      what: string,
    ): Promise<Record<string, unknown>> {
      let hit: Record<string, unknown> | undefined;
      await waitFor(
        () => {
          hit = messages.find((m) => pred(m as Record<string, unknown>)) as
            | Record<string, unknown>
            | undefined;
          return hit !== undefined;
        },
        10_000,
        what,
      );
      return hit!;
    },
  };
}

const method = (name: string) => (m: Record<string, unknown>) => m.method === name;
const response = (id: number) => (m: Record<string, unknown>) => m.id === id;

/** Gone: no such process, or only a zombie waiting for a parent (or init) that may never reap it. */
function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return true;
    throw error;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true; // exited between the two looks
  }
}

/** What each of a process's descriptors points at (`pipe:[123]`, `socket:[456]`, a path). */
function descriptorTargets(pid: number | 'self'): Map<string, string> {
  const targets = new Map<string, string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      targets.set(fd, readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {} // closed meanwhile (readdir's own descriptor)
  }
  return targets;
}

describe('ChildProcessTransport', () => {
  it('answers initialize from a real stdio MCP server (server-memory)', async () => {
    const t = transport({
      command: [MEMORY_SERVER],
      env: { PATH: NODE_PATH, MEMORY_FILE_PATH: path.join(scratch, 'memory.jsonl') },
    });
    const heard = listen(t);
    await t.start();
    expect(t.pid).toBeGreaterThan(0);
    expect(t.exit).toBeUndefined();
    await t.send({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: {
        protocolVersion: LATEST_PROTOCOL_VERSION,
        capabilities: {},
        clientInfo: { name: 'test', version: '1' },
      },
    });
    const answer = await heard.next(response(1), 'the initialize result');
    expect(answer).toMatchObject({
      jsonrpc: '2.0',
      id: 1,
      result: { protocolVersion: LATEST_PROTOCOL_VERSION, serverInfo: { name: expect.any(String) } },
    });
    await t.close();
    expect(t.exit).toBeDefined();
    expect(t.exit?.signal).not.toBe('SIGKILL');
    expect(heard.closes()).toBe(1);
    expect(heard.errors).toEqual([]);
  });

  it('serves as the transport of the SDK Client', async () => {
    const t = transport({
      command: [MEMORY_SERVER],
      env: { PATH: NODE_PATH, MEMORY_FILE_PATH: path.join(scratch, 'memory-client.jsonl') },
    });
    const client = new Client({ name: 'test', version: '1' });
    await client.connect(t);
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toContain('create_entities');
    await client.close();
    expect(t.exit).toBeDefined();
  });

  it('gives the child exactly the environment in the spec', async () => {
    const env = { ONLY: 'this', SPACES_AND_GLOBS: '$HOME * ~ `id` "q"', EMPTY: '' };
    const t = transport({ ...fixture('--env'), env });
    const heard = listen(t);
    await t.start();
    const message = await heard.next(method('fixture/env'), 'the env notification');
    expect((message.params as { env: unknown }).env).toEqual(env);
  });

  it('passes arguments as they are, with no shell and no expansion', async () => {
    const t = transport(fixture('*', '$HOME', '; echo hi'));
    const heard = listen(t);
    await t.start();
    await t.send({ jsonrpc: '2.0', id: 7, method: 'x', params: { argv: true } });
    await heard.next(response(7), 'the echo');
    // The fixture saw unknown flags untouched; a shell would have expanded or split them.
    const cmdline = readFileSync(`/proc/${t.pid}/cmdline`, 'utf8').split('\0');
    expect(cmdline.slice(-4, -1)).toEqual(['*', '$HOME', '; echo hi']);
  });

  it('reports invalid lines to onerror, skips them and keeps working', async () => {
    const t = transport(fixture());
    const heard = listen(t);
    await t.start();
    await t.send({ jsonrpc: '2.0', id: 1, method: 'fixture/garbage' });
    await heard.next(response(1), 'the answer after the garbage');
    expect(heard.errors).toHaveLength(2);
    expect(heard.errors[0]?.message).toMatch(/^invalid message from stdio server/);
    await t.send({ jsonrpc: '2.0', id: 2, method: 'echo', params: { n: 2 } });
    expect(await heard.next(response(2), 'the second answer')).toMatchObject({ result: { echo: { n: 2 } } });
    expect(heard.messages.filter((m) => 'id' in m)).toHaveLength(2);
  });

  it('hands on stderr line by line across chunks, cuts long lines, and keeps a last line without newline', async () => {
    const lines: string[] = [];
    const t = transport(fixture('--stderr'), { onStderrLine: (line) => lines.push(line) });
    const heard = listen(t);
    await t.start();
    await heard.next(method('fixture/stderr-done'), 'the end of the stderr output');
    await t.close();
    const room = STDERR_LINE_MAX_BYTES - Buffer.byteLength(STDERR_CUT_MARK);
    // 'ab' then 2-byte characters: the cut backs off to a whole character.
    const cut = `ab${'é'.repeat(Math.floor((room - 2) / 2))}${STDERR_CUT_MARK}`;
    expect(lines).toEqual(['one', 'two', 'three', cut, 'last']);
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(STDERR_LINE_MAX_BYTES);
    expect(cut).not.toContain('\uFFFD');
  });

  it('rejects start with a clear error for a command that does not exist (ENOENT)', async () => {
    const t = transport({ command: ['no-such-command-for-this-test'], env: { PATH: '/usr/bin:/bin' } });
    const heard = listen(t);
    await expect(t.start()).rejects.toThrow('command not found: no-such-command-for-this-test (ENOENT)');
    expect(t.pid).toBeUndefined();
    await t.close();
    expect(heard.closes()).toBe(0);
    await expect(t.send({ jsonrpc: '2.0', method: 'x' })).rejects.toThrow('not running');
  });

  it('rejects start with a clear error for a file that is not executable (EACCES)', async () => {
    const script = path.join(scratch, 'not-executable.sh');
    writeFileSync(script, '#!/bin/sh\nexit 0\n');
    chmodSync(script, 0o644);
    const t = transport({ command: [script], env: {} });
    await expect(t.start()).rejects.toThrow(`permission denied: ${script} (EACCES)`);
  });

  it('says so when the working directory does not exist', async () => {
    const t = transport({ ...fixture(), cwd: path.join(scratch, 'missing') });
    await expect(t.start()).rejects.toThrow(
      `working directory not found: ${path.join(scratch, 'missing')} (ENOENT)`,
    );
  });

  it('rejects an empty command', async () => {
    await expect(transport({ command: [], env: {} }).start()).rejects.toThrow('empty command');
  });

  it('close() ends a child that ignores SIGTERM and stdin EOF with SIGKILL after killGraceMs', async () => {
    const t = transport(fixture('--stubborn'), { killGraceMs: 300 });
    const heard = listen(t);
    await t.start();
    await heard.next(method('fixture/ready'), 'the child to ignore SIGTERM');
    const pid = t.pid!;
    const began = performance.now();
    await t.close();
    expect(performance.now() - began).toBeGreaterThanOrEqual(290);
    expect(t.exit).toEqual({ code: null, signal: 'SIGKILL' });
    expect(isGone(pid)).toBe(true);
    expect(heard.closes()).toBe(1);
    await t.close(); // idempotent
    expect(heard.closes()).toBe(1);
  });

  it('close() ends a well-behaved child with SIGTERM, without waiting for the grace period', async () => {
    const t = transport(fixture(), { killGraceMs: 20_000 });
    await t.start();
    const began = performance.now();
    await Promise.all([t.close(), t.close()]);
    expect(performance.now() - began).toBeLessThan(10_000);
    expect(t.exit?.signal).not.toBe('SIGKILL');
  });

  it('close() ends the grandchildren in the process group, stubborn ones included', async () => {
    const t = transport(fixture('--grandchild'), { killGraceMs: 500 });
    const heard = listen(t);
    await t.start();
    const { params } = await heard.next(method('fixture/pids'), 'the pids');
    const { child, grandchild } = params as { child: number; grandchild: number };
    pids.add(grandchild);
    expect(child).toBe(t.pid);
    expect(isGone(grandchild)).toBe(false);
    await t.close();
    await waitFor(() => isGone(grandchild), 5000, 'the grandchild to be gone');
    expect(isGone(child)).toBe(true);
  });

  it('ends what is left of the group when the child exits by itself; onclose once, send refused', async () => {
    const t = transport(fixture('--grandchild'), { killGraceMs: 300 });
    const heard = listen(t);
    await t.start();
    const { params } = await heard.next(method('fixture/pids'), 'the pids');
    const { grandchild } = params as { grandchild: number };
    pids.add(grandchild);
    await t.send({ jsonrpc: '2.0', id: 1, method: 'fixture/exit' });
    await waitFor(() => heard.closes() === 1, 10_000, 'onclose');
    expect(t.exit).toEqual({ code: 3, signal: null });
    expect(isGone(grandchild)).toBe(true);
    await expect(t.send({ jsonrpc: '2.0', method: 'x' })).rejects.toThrow('not running');
  });

  it('a write the child cannot read (EPIPE) rejects the send and goes to onerror, without crashing', async () => {
    const t = transport(fixture('--close-stdin'));
    const heard = listen(t);
    await t.start();
    // Large enough that the write cannot finish before the pipe is known to be broken.
    const big = { jsonrpc: '2.0' as const, method: 'x', params: { pad: 'x'.repeat(256 * 1024) } };
    await waitFor(
      async () => {
        try {
          await t.send(big);
          return false;
        } catch (error) {
          return (error as NodeJS.ErrnoException).code === 'EPIPE';
        }
      },
      5000,
      'a send rejected with EPIPE',
    );
    expect(heard.errors.some((e) => (e as NodeJS.ErrnoException).code === 'EPIPE')).toBe(true);
    await expect(t.send(big)).rejects.toThrow();
    expect(t.exit).toBeUndefined(); // the child still runs
  });

  it.skipIf(!HAS_PROC)(
    'gives the child no descriptor of the watchdog pipe, and the watchdog none of the child',
    async () => {
      const before = descriptorTargets('self');
      const ownReaper = OrphanReaper.start();
      const reaperEnds = [...descriptorTargets('self').values()].filter(
        (target) => ![...before.values()].includes(target),
      );
      expect(reaperEnds.length).toBeGreaterThan(0);
      try {
        const beforeChild = descriptorTargets('self');
        const t = new ChildProcessTransport(
          { command: ['/bin/sleep', '30'], env: {} },
          { reaper: ownReaper },
        );
        transports.push(t);
        await t.start();
        const childEnds = [...descriptorTargets('self').values()].filter(
          (target) => ![...beforeChild.values()].includes(target),
        );
        const inChild = [...descriptorTargets(t.pid!).values()];
        for (const end of reaperEnds) expect(inChild).not.toContain(end);
        // And a watchdog started after the child holds none of the child's pipes.
        const laterReaper = OrphanReaper.start();
        try {
          const inWatchdog = [...descriptorTargets(laterReaper.pid!).values()];
          for (const end of childEnds) expect(inWatchdog).not.toContain(end);
          expect(readlinkSync(`/proc/${laterReaper.pid}/fd/1`)).toBe('/dev/null');
        } finally {
          laterReaper.close();
        }
        await t.close();
      } finally {
        ownReaper.close();
      }
    },
  );
});

describe('OrphanReaper', () => {
  it('ends the child, its grandchild and itself when the proxy process dies by SIGKILL', async () => {
    const proxy = spawn(process.execPath, ['--import', 'tsx', ORPHAN_PARENT], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    processes.push(proxy);
    let stdout = '';
    let stderr = '';
    proxy.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
    });
    proxy.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk;
    });
    await waitFor(
      () => {
        if (proxy.exitCode !== null) throw new Error(`the parent fixture exited:\n${stderr}`);
        return stdout.includes('\n');
      },
      20_000,
      'the parent fixture to report its pids',
    );
    const reported = JSON.parse(stdout.split('\n')[0]!) as Record<
      'parent' | 'watchdog' | 'child' | 'grandchild',
      number
    >;
    const descendants = [reported.watchdog, reported.child, reported.grandchild];
    for (const pid of descendants) pids.add(pid);
    for (const pid of descendants) expect(isGone(pid), `pid ${pid} runs`).toBe(false);

    process.kill(reported.parent, 'SIGKILL');

    // The watchdog's grace is 500 ms, so 1 s of `sleep`, then SIGKILL.
    await waitFor(() => descendants.every(isGone), 10_000, 'the watchdog, child and grandchild to be gone');
  });

  it('close() ends the watchdog without touching groups that were unwatched', async () => {
    const ownReaper = OrphanReaper.start();
    const t = new ChildProcessTransport(fixture(), { reaper: ownReaper });
    transports.push(t);
    await t.start();
    const watchdog = ownReaper.pid!;
    ownReaper.unwatch(t.pid!);
    ownReaper.close();
    await waitFor(() => isGone(watchdog), 5000, 'the watchdog to exit');
    expect(t.exit).toBeUndefined();
    expect(isGone(t.pid!)).toBe(false);
  });

  it('reports a watchdog that ended early through onError; watch() still does not throw', async () => {
    const errors: Error[] = [];
    const ownReaper = OrphanReaper.start({ onError: (error) => errors.push(error) });
    const watchdog = ownReaper.pid!;
    pids.add(watchdog);
    process.kill(watchdog, 'SIGKILL');
    await waitFor(() => errors.length > 0, 5000, 'the early exit to be reported');
    expect(errors[0]?.message).toBe('orphan reaper exited early (SIGKILL)');
    ownReaper.watch(123456);
    ownReaper.unwatch(123456);
    ownReaper.close();
  });

  it('a watched group is ended when the watchdog sees EOF, even from close()', async () => {
    const ownReaper = OrphanReaper.start({ graceMs: 0 });
    const t = new ChildProcessTransport(fixture('--stubborn'), { reaper: ownReaper });
    transports.push(t);
    const heard = listen(t);
    await t.start();
    await heard.next(method('fixture/ready'), 'the child to ignore SIGTERM');
    ownReaper.close();
    await waitFor(() => heard.closes() === 1, 5000, 'the child to be ended by the watchdog');
    expect(t.exit).toEqual({ code: null, signal: 'SIGKILL' });
  });
});
