import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../observability/logger.js';
import { type ChildExit, ChildProcessTransport, type ChildSpec } from './child-transport.js';
import { ChildRouter, type RoutedSession } from './message-router.js';
import type { ExitReason, StdioMetrics } from './metrics.js';
import type { OrphanReaper } from './reaper.js';
import { StderrLog } from './stderr-log.js';

/** What the bridge reports about one child (`StdioBridge.children()`). */
export interface StdioChildInfo {
  server: string;
  pid: number | undefined;
  user: string | undefined;
  sessions: string[];
  startedAt: number;
  lastActivityAt: number;
  inFlight: number;
  openStreams: number;
}

/** A session as its child sees it: routed messages, plus its id and a way to end it. */
export interface ChildSession extends RoutedSession {
  readonly id: string | undefined;
  /** Ends the session (its streams close; its id is unknown from then on). */
  end(): void;
}

export interface BridgeChildOptions {
  server: string;
  /** The user the child serves (user isolation), or its session's user; undefined when anonymous. */
  user: string | undefined;
  spec: ChildSpec;
  idleTimeoutMs: number;
  logger: Logger;
  metrics: StdioMetrics;
  reaper: OrphanReaper;
  killGraceMs?: number;
  /** The child answered `initialize`: the command starts fine. */
  onInitialized: () => void;
  /** The child is gone; `beforeInitialize` when it ended on its own before answering `initialize`. */
  onExit: (
    child: BridgeChild,
    outcome: { reason: ExitReason; exit: ChildExit; beforeInitialize: boolean },
  ) => void;
}

/**
 * One stdio server process and the MCP sessions it serves: the process (ChildProcessTransport),
 * the routing of their messages (ChildRouter), and its lifecycle: idle timeout, the end of its
 * last session, its exit (pending requests answered with errors, sessions ended), logs, metrics.
 */
export class BridgeChild {
  readonly startedAt = Date.now();
  lastActivityAt = this.startedAt;
  /** Standalone (GET) streams its sessions' clients hold open. */
  openStreams = 0;
  private readonly sessions = new Set<ChildSession>();
  private readonly transport: ChildProcessTransport;
  private readonly router: ChildRouter;
  private readonly stderr: StderrLog;
  private endReason: ExitReason | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly exited: Promise<void>;
  private markExited!: () => void;
  /** Settles when the process is running (rejects when it cannot start). */
  readonly started: Promise<void>;

  constructor(private readonly options: BridgeChildOptions) {
    this.exited = new Promise((resolve) => {
      this.markExited = resolve;
    });
    this.stderr = new StderrLog(
      (line) => this.options.logger.info({ ...this.logFields(), stderr: line }, 'stdio server stderr'),
      (dropped) =>
        this.options.logger.warn(
          { ...this.logFields(), dropped },
          `stdio server stderr: ${dropped} lines dropped (over 20 a second)`,
        ),
    );
    this.transport = new ChildProcessTransport(options.spec, {
      reaper: options.reaper,
      onStderrLine: (line) => this.stderr.line(line),
      ...(options.killGraceMs !== undefined ? { killGraceMs: options.killGraceMs } : {}),
    });
    this.router = new ChildRouter((message) => this.send(message), options.onInitialized);
    this.transport.onmessage = (message) => {
      this.touch();
      this.router.fromChild(message);
      this.checkIdle();
    };
    this.transport.onerror = (error) =>
      this.options.logger.warn({ ...this.logFields(), err: error.message }, 'stdio server message error');
    this.transport.onclose = () => this.onExit();
    this.started = this.start();
  }

  get pid(): number | undefined {
    return this.transport.pid;
  }

  get user(): string | undefined {
    return this.options.user;
  }

  /** Whether it is running and not being ended: new sessions may join it. */
  get usable(): boolean {
    return this.running && this.endReason === undefined;
  }

  info(): StdioChildInfo {
    return {
      server: this.options.server,
      pid: this.pid,
      user: this.options.user,
      sessions: [...this.sessions].flatMap((session) => (session.id ? [session.id] : [])),
      startedAt: this.startedAt,
      lastActivityAt: this.lastActivityAt,
      inFlight: this.router.inFlight(),
      openStreams: this.openStreams,
    };
  }

  attach(session: ChildSession): void {
    this.sessions.add(session);
    this.router.addSession(session);
    this.checkIdle();
  }

  /** A session ended: the child ends with its last one (nothing else could reach it). */
  detach(session: ChildSession): void {
    if (!this.sessions.delete(session)) return;
    this.router.removeSession(session);
    if (this.sessions.size === 0) void this.end('session_end');
    else this.checkIdle();
  }

  fromClient(session: ChildSession, message: JSONRPCMessage): void {
    this.touch();
    this.router.fromClient(session, message);
    this.checkIdle();
  }

  streamOpened(): void {
    this.openStreams++;
    this.touch();
    this.checkIdle();
  }

  streamClosed(): void {
    this.openStreams--;
    this.touch();
    this.checkIdle();
  }

  /** Ends the process (SIGTERM to its group, SIGKILL after the grace); resolves once it is gone. */
  async end(reason: ExitReason): Promise<void> {
    this.endReason ??= reason;
    clearTimeout(this.idleTimer);
    try {
      await this.started;
    } catch {
      return; // never ran
    }
    await this.transport.close();
    await this.exited;
  }

  /**
   * SIGKILL to the process group at once, for a shutdown whose deadline comes before the
   * process layer's own kill grace. The process layer starts each child as a group leader.
   */
  kill(): void {
    const pid = this.pid;
    if (pid === undefined || !this.running) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {}
  }

  /** Resolves once the process is gone (at once if it never started). */
  whenGone(): Promise<void> {
    return this.started.then(
      () => this.exited,
      () => undefined,
    );
  }

  private async start(): Promise<void> {
    const { server, metrics, logger } = this.options;
    await this.transport.start();
    this.running = true;
    metrics.spawns.inc({ server });
    metrics.processes.inc({ server });
    logger.info({ ...this.logFields(), command: this.options.spec.command[0] }, 'stdio server started');
    this.checkIdle();
  }

  private send(message: JSONRPCMessage): void {
    this.transport.send(message).catch((error: Error) => {
      this.options.logger.debug({ ...this.logFields(), err: error.message }, 'stdio server write failed');
    });
  }

  private touch(): void {
    this.lastActivityAt = Date.now();
  }

  /**
   * The idle clock runs from the moment nothing is in flight and no stream is open, and stops when
   * either changes; the child's own notifications meanwhile do not restart it.
   */
  private checkIdle(): void {
    const idle = this.usable && this.router.inFlight() === 0 && this.openStreams === 0;
    if (!idle || this.options.idleTimeoutMs <= 0) {
      clearTimeout(this.idleTimer);
      this.idleTimer = undefined;
      return;
    }
    if (this.idleTimer) return;
    this.idleTimer = setTimeout(() => void this.end('idle'), this.options.idleTimeoutMs);
    this.idleTimer.unref();
  }

  private onExit(): void {
    if (!this.running) return;
    this.running = false;
    clearTimeout(this.idleTimer);
    const { server, metrics, logger } = this.options;
    const exit = this.transport.exit ?? { code: null, signal: null };
    const reason = this.endReason ?? (exit.code === 0 && exit.signal === null ? 'exit' : 'crash');
    metrics.processes.dec({ server });
    metrics.exits.inc({ server, reason });
    if (reason === 'crash') metrics.crashes.inc({ server });
    this.stderr.flush();
    const fields = {
      ...this.logFields(),
      sessions: this.info().sessions,
      reason,
      // Not `code`: the logger redacts that name (an OAuth authorization code).
      exitCode: exit.code,
      exitSignal: exit.signal,
    };
    if (this.endReason) logger.info(fields, 'stdio server ended');
    else logger.warn(fields, `stdio server ${describeExit(exit)}`);
    this.router.failAll(
      this.endReason
        ? `the stdio MCP server was ended (${this.endReason}) before answering`
        : `the stdio MCP server ${describeExit(exit)} before answering`,
    );
    // Cleared first: a session ending here must not detach itself and end the child again.
    const sessions = [...this.sessions];
    this.sessions.clear();
    for (const session of sessions) session.end();
    this.options.onExit(this, {
      reason,
      exit,
      beforeInitialize: !this.endReason && !this.router.initialized,
    });
    this.markExited();
  }

  private logFields(): { server: string; pid: number | undefined; user: string | undefined } {
    return { server: this.options.server, pid: this.pid, user: this.options.user };
  }
}

/** "exited with code 3", "was killed by SIGKILL". */
export function describeExit(exit: ChildExit): string {
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}
