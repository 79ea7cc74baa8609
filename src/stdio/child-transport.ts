import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { ReadBuffer, serializeMessage } from '@modelcontextprotocol/sdk/shared/stdio.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { OrphanReaper } from './reaper.js';

export interface ChildSpec {
  /** argv: the program and its arguments, run without a shell. */
  command: string[];
  /** The child's whole environment; nothing is added. */
  env: Record<string, string>;
  cwd?: string;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Longest stderr line handed on, the cut mark included. */
export const STDERR_LINE_MAX_BYTES = 4096;
/** Ends a stderr line that was longer than STDERR_LINE_MAX_BYTES; the rest of it is dropped. */
export const STDERR_CUT_MARK = ' [line cut]';

const DEFAULT_KILL_GRACE_MS = 5000;
const IS_WINDOWS = process.platform === 'win32';
/** How often an ending looks whether the group's last process is gone: no event tells. */
const GROUP_POLL_MS = 50;
/**
 * After the whole group is gone, how long the pipes may stay open before they are destroyed:
 * only a process that left the group (its own `setsid`) can still hold them.
 */
const PIPE_DRAIN_MS = 1000;

/**
 * An MCP client transport to a stdio MCP server run as a child process.
 *
 * Not the SDK's StdioClientTransport: that one cannot spawn the child detached, so the child
 * gets no process group of its own and `npx`'s grandchildren (the actual server) survive it;
 * and it adds USER, LOGNAME, SHELL and TERM to the environment, where the proxy must pass
 * exactly the variables it chose. The framing is the SDK's (ReadBuffer, serializeMessage).
 *
 * The child leads its own process group (`detached`), and the group is what gets ended: on
 * close(), and also when the child exits by itself while processes it started linger. The
 * reaper knows the group for as long as it may hold processes, in case this process dies
 * without ending it.
 */
export class ChildProcessTransport implements Transport {
  onmessage?: (message: JSONRPCMessage) => void;
  onerror?: (error: Error) => void;
  /** Called once, when the child exited (for any reason) and its output was read. */
  onclose?: () => void;

  private child: ChildProcess | undefined;
  private exitInfo: ChildExit | undefined;
  private spawned = false;
  private closeRequested = false;
  private leaderExited: Promise<void> | undefined;
  private groupEnded: Promise<void> | undefined;
  private transportClosed: Promise<void> | undefined;
  private markTransportClosed: (() => void) | undefined;
  private readonly readBuffer = new ReadBuffer();
  private readonly killGraceMs: number;

  constructor(
    private readonly spec: ChildSpec,
    private readonly options: {
      reaper: OrphanReaper;
      /** Each complete stderr line (without the newline), at most 4 KiB each (longer: cut, marked). */
      onStderrLine?: (line: string) => void;
      /** SIGTERM first; SIGKILL to the whole process group after this (default 5000 ms). */
      killGraceMs?: number;
    },
  ) {
    this.killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Set once the child exited. */
  get exit(): ChildExit | undefined {
    return this.exitInfo;
  }

  /**
   * Spawns the child; resolves once it runs. Rejects with an Error saying what failed, e.g.
   * `command not found: foo (ENOENT)` or `permission denied: ./x (EACCES)`; a child that never
   * ran gets no onclose.
   */
  start(): Promise<void> {
    if (this.child) return Promise.reject(new Error('stdio server already started'));
    const [program, ...args] = this.spec.command;
    if (!program) return Promise.reject(new Error('empty command'));
    let child: ChildProcess;
    try {
      child = spawn(program, args, {
        env: this.spec.env,
        cwd: this.spec.cwd,
        stdio: ['pipe', 'pipe', 'pipe'],
        shell: false,
        // Its own process group (setsid): kill(-pid) then reaches what it starts, such as the
        // server process behind `npx`.
        detached: true,
        windowsHide: true,
      });
    } catch (error) {
      // Thrown for arguments spawn refuses outright (a NUL in an argument or value, ...).
      return Promise.reject(new Error(`cannot start ${program}: ${messageOf(error)}`, { cause: error }));
    }
    this.child = child;
    // pid is known at once when the spawn worked; watch before anything can go wrong.
    if (child.pid !== undefined) this.options.reaper.watch(child.pid);
    this.leaderExited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.transportClosed = new Promise((resolve) => {
      this.markTransportClosed = resolve;
    });
    this.wireStreams(child);
    child.on('exit', (code, signal) => {
      this.exitInfo = { code, signal };
      if (child.pid !== undefined) void this.endGroup();
    });
    child.on('close', () => this.finish());
    return new Promise((resolve, reject) => {
      child.once('spawn', () => {
        this.spawned = true;
        resolve();
      });
      child.on('error', (error: NodeJS.ErrnoException) => {
        if (this.spawned) this.report(error);
        else reject(spawnFailure(error, program, this.spec.cwd));
      });
    });
  }

  /**
   * Writes one message to the child's stdin. Rejects when the child is not running or the write
   * failed (EPIPE when the child died meanwhile); a write error also goes to onerror.
   */
  send(message: JSONRPCMessage): Promise<void> {
    const stdin = this.child?.stdin;
    if (!this.spawned || !stdin?.writable || this.exitInfo || this.closeRequested) {
      return Promise.reject(new Error('stdio server is not running'));
    }
    return new Promise((resolve, reject) => {
      stdin.write(serializeMessage(message), (error) => (error ? reject(error) : resolve()));
    });
  }

  /**
   * Ends the child: its stdin is closed and its process group gets SIGTERM, then SIGKILL once
   * killGraceMs passed with any of the group left. Resolves when the child exited, its group is
   * gone (or was sent SIGKILL) and onclose was called. Idempotent.
   */
  async close(): Promise<void> {
    const child = this.child;
    if (!child || child.pid === undefined) return;
    if (!this.closeRequested) {
      this.closeRequested = true;
      if (child.stdin?.writable) child.stdin.end();
    }
    await this.endGroup();
    await this.transportClosed;
  }

  private wireStreams(child: ChildProcess): void {
    child.stdout?.on('data', (chunk: Buffer) => this.receive(chunk));
    child.stdout?.on('error', (error) => this.report(error));
    const stderrLines = new LineSplitter(STDERR_LINE_MAX_BYTES, (line) => {
      try {
        this.options.onStderrLine?.(line);
      } catch (error) {
        this.report(error);
      }
    });
    // Read even without a listener: a full stderr pipe would block the child.
    child.stderr?.on('data', (chunk: Buffer) => stderrLines.push(chunk));
    child.stderr?.on('end', () => stderrLines.end());
    child.stderr?.on('error', (error) => this.report(error));
    child.stdin?.on('error', (error: NodeJS.ErrnoException) => {
      // The child stops reading once asked to end; a broken pipe then is no news.
      if (this.closeRequested && (error.code === 'EPIPE' || error.code === 'ECONNRESET')) return;
      this.report(error);
    });
  }

  private receive(chunk: Buffer): void {
    try {
      this.readBuffer.append(chunk);
    } catch (error) {
      // A line over the SDK's 10 MB limit: the buffer was cleared; the next newline resyncs.
      this.report(error);
      return;
    }
    for (;;) {
      let message: JSONRPCMessage | null;
      try {
        message = this.readBuffer.readMessage();
      } catch (error) {
        // ReadBuffer has already taken the line off: skip it, keep reading.
        this.report(new Error(`invalid message from stdio server: ${messageOf(error)}`, { cause: error }));
        continue;
      }
      if (message === null) return;
      try {
        this.onmessage?.(message);
      } catch (error) {
        this.report(error);
      }
    }
  }

  private endGroup(): Promise<void> {
    this.groupEnded ??= this.terminateGroup();
    return this.groupEnded;
  }

  /** SIGTERM to the group, then SIGKILL if any of it is left after killGraceMs. */
  private async terminateGroup(): Promise<void> {
    const child = this.child!;
    const pgid = child.pid!;
    this.signal('SIGTERM');
    const deadline = performance.now() + this.killGraceMs;
    if (!(await this.groupGoneBy(deadline))) {
      this.signal('SIGKILL');
      await this.leaderExited;
    }
    this.options.reaper.unwatch(pgid);
    // Normally the pipes closed already; a process outside the group may still hold them.
    const drained = await Promise.race([
      this.transportClosed!.then(() => true),
      delay(PIPE_DRAIN_MS, false, { ref: false }),
    ]);
    if (!drained) {
      child.stdin?.destroy();
      child.stdout?.destroy();
      child.stderr?.destroy();
    }
  }

  private signal(signal: NodeJS.Signals): void {
    // Windows has no process groups: only the child itself can be ended there.
    if (IS_WINDOWS) this.child?.kill(signal);
    else signalGroup(this.child!.pid!, signal);
  }

  /** Whether the child exited and no process of its group is left, by `deadline`. */
  private async groupGoneBy(deadline: number): Promise<boolean> {
    const untilDeadline = Math.max(0, deadline - performance.now());
    const timeout = new AbortController();
    await Promise.race([
      this.leaderExited,
      delay(untilDeadline, undefined, { signal: timeout.signal }).catch(() => {}),
    ]);
    timeout.abort();
    if (!this.exitInfo) return false;
    while (!IS_WINDOWS && groupExists(this.child!.pid!)) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await delay(Math.min(GROUP_POLL_MS, left));
    }
    return true;
  }

  private finish(): void {
    if (!this.spawned || !this.markTransportClosed) return;
    const mark = this.markTransportClosed;
    this.markTransportClosed = undefined;
    mark();
    try {
      this.onclose?.();
    } catch (error) {
      this.report(error);
    }
  }

  private report(error: unknown): void {
    this.onerror?.(error instanceof Error ? error : new Error(String(error)));
  }
}

/** The spawn error as a sentence about the command (or its working directory). */
function spawnFailure(error: NodeJS.ErrnoException, program: string, cwd: string | undefined): Error {
  const options = { cause: error };
  // A missing working directory fails the spawn with ENOENT as well.
  if (error.code === 'ENOENT' && cwd !== undefined && !existsSync(cwd)) {
    return new Error(`working directory not found: ${cwd} (ENOENT)`, options);
  }
  if (error.code === 'ENOENT') return new Error(`command not found: ${program} (ENOENT)`, options);
  if (error.code === 'EACCES') return new Error(`permission denied: ${program} (EACCES)`, options);
  return new Error(`cannot start ${program}: ${error.message}`, options);
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    // ESRCH: nothing left in the group. EPERM: a member changed its user; nothing to do.
  }
}

/** Whether any process (a zombie too) is left in the group. */
function groupExists(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Splits a byte stream into lines (without `\n`, nor a `\r` before it). A line longer than
 * `maxBytes` is handed on cut, with STDERR_CUT_MARK, as soon as it is known to be too long; the
 * rest of it is dropped, so no more than `maxBytes` is ever held.
 */
class LineSplitter {
  private pending: Buffer = Buffer.alloc(0);
  private cutting = false;

  constructor(
    private readonly maxBytes: number,
    private readonly emit: (line: string) => void,
  ) {}

  push(chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(0x0a, start);
      if (newline === -1) {
        this.hold(chunk.subarray(start));
        return;
      }
      this.hold(chunk.subarray(start, newline));
      this.endLine();
      start = newline + 1;
    }
  }

  /** The stream ended: a last line without a newline is still a line. */
  end(): void {
    if (this.pending.length > 0) this.endLine();
  }

  private hold(part: Buffer): void {
    if (this.cutting || part.length === 0) return;
    this.pending = Buffer.concat([this.pending, part]);
    if (this.pending.length > this.maxBytes) {
      const room = this.maxBytes - Buffer.byteLength(STDERR_CUT_MARK);
      this.emit(utf8Prefix(this.pending, room) + STDERR_CUT_MARK);
      this.pending = Buffer.alloc(0);
      this.cutting = true;
    }
  }

  private endLine(): void {
    if (!this.cutting) this.emit(this.pending.toString('utf8').replace(/\r$/, ''));
    this.pending = Buffer.alloc(0);
    this.cutting = false;
  }
}

/** The first `maxBytes` bytes of UTF-8 `bytes` or fewer, never ending inside a character. */
function utf8Prefix(bytes: Buffer, maxBytes: number): string {
  let end = Math.min(maxBytes, bytes.length);
  // A continuation byte (10xxxxxx) at `end` means the character before it would be split.
  while (end > 0 && end < bytes.length && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.toString('utf8', 0, end);
}
