import { accessSync, constants } from 'node:fs';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { BodyError, readBody } from '../http/body.js';
import { type ErrorAnswer, sendError } from '../http/errors.js';
import { sendJson } from '../http/respond.js';
import type { Logger } from '../observability/logger.js';
import type { ProcessBudget } from './budget.js';
import { BridgeChild, describeExit, type StdioChildInfo } from './child.js';
import type { StdioMetrics } from './metrics.js';
import type { OrphanReaper } from './reaper.js';
import { BridgeSession } from './session.js';
import { StartBackoff } from './start-backoff.js';

export type { StdioChildInfo };

export interface StdioIdentity {
  user: string;
  email?: string;
  groups: string[];
}

export interface StdioBridgeOptions {
  /** The server's name (logs, metrics label). */
  server: string;
  command: string[];
  isolation: 'session' | 'user';
  /** A child's whole environment for this identity (undefined identity: anonymous, bypass mode). */
  environment: (identity: StdioIdentity | undefined) => Record<string, string>;
  idleTimeoutMs: number;
  processes: ProcessBudget;
  /** Header names the proxy puts the caller's identity in (groups comma-separated). */
  identityHeaders: { user: string; email: string; groups: string };
  logger: Logger;
  metrics: StdioMetrics;
  reaper: OrphanReaper;
  killGraceMs?: number;
}

export interface StdioBridgeHealth {
  status: 'healthy' | 'unhealthy';
  error?: string;
  processes: number;
}

/** The SDK's own limit for a request body; the proxy in front refuses larger ones before. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;
/** How long a client refused at STDIO_MAX_PROCESSES is asked to wait before trying again. */
const FULL_RETRY_AFTER_S = 5;

/** readJson's result for a body it answered with an error. */
const UNREADABLE = Symbol('unreadable body');

/** An answer instead of a session: the bridge cannot serve this `initialize` now. */
class Refusal extends Error {
  constructor(readonly answer: ErrorAnswer) {
    super(answer.description);
  }
}

/**
 * Serves one stdio MCP server as Streamable HTTP on a unix socket, for the proxy to forward
 * authenticated requests to. Sessions are bound to the user who created them (the identity
 * header; none = anonymous). With `isolation: 'session'` each session gets its own child; with
 * `'user'` the sessions of one user share one. The proxy keeps authentication, access rules and
 * response editing; the bridge does only the MCP transport work.
 */
export class StdioBridge {
  private readonly sessions = new Map<string, BridgeSession>();
  private readonly live = new Set<BridgeChild>();
  /** User isolation: each user's child (key undefined: anonymous). */
  private readonly userChildren = new Map<string | undefined, BridgeChild>();
  private readonly backoff = new StartBackoff();
  private notFound: string | undefined;
  private closed: Promise<void> | undefined;

  private constructor(
    private readonly options: StdioBridgeOptions,
    private readonly server: Server,
    private readonly socketDir: string,
    readonly socketPath: string,
  ) {
    this.notFound = missingProgram(options.command, options.environment(undefined).PATH ?? '');
    if (this.notFound) options.logger.error({ server: options.server }, `stdio server: ${this.notFound}`);
  }

  /** Listens on a unix socket in a fresh directory only this user can enter. */
  static async start(options: StdioBridgeOptions): Promise<StdioBridge> {
    const socketDir = await mkdtemp(join(tmpdir(), 'mcp-oidc-proxy-stdio-'));
    try {
      await chmod(socketDir, 0o700);
      const socketPath = join(socketDir, 'bridge.sock');
      const server = createServer();
      const bridge = new StdioBridge(options, server, socketDir, socketPath);
      server.on('request', (req, res) => void bridge.handle(req, res));
      await new Promise<void>((resolveListen, reject) => {
        server.once('error', reject);
        server.listen(socketPath, () => {
          server.off('error', reject);
          resolveListen();
        });
      });
      return bridge;
    } catch (error) {
      await rm(socketDir, { recursive: true, force: true });
      throw error;
    }
  }

  children(): StdioChildInfo[] {
    return [...this.live].map((child) => child.info());
  }

  /** Unhealthy while the program is not on PATH or the command keeps failing at start. */
  health(): StdioBridgeHealth {
    const processes = this.live.size;
    const failure = this.backoff.lastFailure();
    const error = this.notFound ?? (failure && `the command fails at start: ${failure.reason}`);
    return error ? { status: 'unhealthy', error, processes } : { status: 'healthy', processes };
  }

  /** Stops taking requests, ends every child (SIGKILL at the deadline), removes the socket dir. */
  close(deadlineMs: number): Promise<void> {
    this.closed ??= this.shutDown(deadlineMs);
    return this.closed;
  }

  private async shutDown(deadlineMs: number): Promise<void> {
    const stopped = new Promise<void>((resolveClose) => this.server.close(() => resolveClose()));
    const children = [...this.live];
    const ended = Promise.all(children.map((child) => child.end('shutdown')));
    let deadline: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      ended.then(() => false),
      new Promise<boolean>((resolveLate) => {
        deadline = setTimeout(() => resolveLate(true), deadlineMs);
      }),
    ]);
    clearTimeout(deadline);
    if (late) for (const child of children) child.kill();
    await Promise.all(children.map((child) => child.whenGone()));
    this.server.closeAllConnections();
    await stopped;
    await rm(this.socketDir, { recursive: true, force: true });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.closed) {
        sendError(res, { status: 503, error: 'shutting_down', description: 'the proxy is shutting down' });
        return;
      }
      const user = this.header(req, this.options.identityHeaders.user);
      const sessionId = this.header(req, 'mcp-session-id');
      if (sessionId !== undefined) {
        const session = this.sessions.get(sessionId);
        // Another user's session is as unknown as one that never existed.
        if (!session || session.isEnded || session.user !== user) {
          sendJson(res, 404, {
            jsonrpc: '2.0',
            error: { code: -32001, message: 'Session not found' },
            id: null,
          });
          return;
        }
        if (req.method !== 'POST') {
          await session.handle(req, res);
          return;
        }
        // Read here and handed over parsed: the SDK would read it through a web stream made from
        // the request, about a tenth of the bridge's CPU per tools/call (bench, BENCH_STDIO).
        const body = await this.readJson(req, res);
        if (body !== UNREADABLE) await session.handle(req, res, body);
        return;
      }
      await this.handleWithoutSession(req, res, user);
    } catch (error) {
      if (error instanceof Refusal) {
        sendError(res, error.answer);
        return;
      }
      this.options.logger.error(
        { server: this.options.server, err: String(error) },
        'stdio bridge request failed',
      );
      if (!res.headersSent) jsonRpcError(res, 500, -32603, 'Internal error');
      else res.destroy();
    }
  }

  /** Only an `initialize` may come without a session id: it opens a session. */
  private async handleWithoutSession(
    req: IncomingMessage,
    res: ServerResponse,
    user: string | undefined,
  ): Promise<void> {
    if (req.method !== 'POST') {
      jsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
      return;
    }
    const body = await this.readJson(req, res);
    if (body === UNREADABLE) return;
    const initialize = Array.isArray(body) ? body.some(isInitializeRequest) : isInitializeRequest(body);
    if (!initialize) {
      jsonRpcError(res, 400, -32000, 'Bad Request: Mcp-Session-Id header is required');
      return;
    }
    const child = await this.childFor(this.identity(req, user));
    const session = new BridgeSession({
      server: this.options.server,
      user,
      child,
      logger: this.options.logger,
      onOpened: (opened) => {
        this.sessions.set(opened.id!, opened);
        this.options.logger.info(
          { server: this.options.server, pid: child.pid, user, session: opened.id },
          'mcp session opened',
        );
      },
      onEnded: (ended) => {
        if (ended.id !== undefined) this.sessions.delete(ended.id);
      },
    });
    await session.handle(req, res, body);
    // The SDK refused the initialize (a batch, a bad Accept header): no session came of it.
    if (session.id === undefined) session.end();
  }

  /** A POST's JSON body; UNREADABLE once answered with the SDK's error (too large, not JSON). */
  private async readJson(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
    try {
      return JSON.parse((await readBody(req, MAX_BODY_BYTES)).toString('utf8'));
    } catch (error) {
      if (error instanceof BodyError && error.reason === 'too_large') {
        res.setHeader('connection', 'close');
        jsonRpcError(res, 413, -32000, error.message);
      } else jsonRpcError(res, 400, -32700, 'Parse error: Invalid JSON');
      return UNREADABLE;
    }
  }

  /** The child a new session of this identity goes to, started if need be. */
  private async childFor(identity: StdioIdentity | undefined): Promise<BridgeChild> {
    if (this.options.isolation === 'session') return this.spawn(identity);
    const shared = this.userChildren.get(identity?.user);
    if (shared) {
      try {
        await shared.started;
      } catch (error) {
        throw this.startRefusal((error as Error).message);
      }
      if (shared.usable) return shared;
    }
    return this.spawn(identity);
  }

  private async spawn(identity: StdioIdentity | undefined): Promise<BridgeChild> {
    const waiting = this.backoff.waiting();
    if (waiting) throw this.startRefusal(waiting.reason, waiting.retryAt);
    const { processes } = this.options;
    if (!processes.tryAcquire()) {
      throw new Refusal({
        status: 503,
        error: 'too_many_processes',
        description: `the proxy already runs STDIO_MAX_PROCESSES (${processes.max}) stdio server processes; try again later`,
        headers: [['retry-after', String(FULL_RETRY_AFTER_S)]],
      });
    }
    const child = new BridgeChild({
      server: this.options.server,
      user: identity?.user,
      spec: { command: this.options.command, env: this.options.environment(identity) },
      idleTimeoutMs: this.options.idleTimeoutMs,
      logger: this.options.logger,
      metrics: this.options.metrics,
      reaper: this.options.reaper,
      ...(this.options.killGraceMs !== undefined ? { killGraceMs: this.options.killGraceMs } : {}),
      onInitialized: () => {
        this.backoff.succeeded();
        this.notFound = undefined;
      },
      onExit: (gone, { beforeInitialize, exit }) => {
        this.forget(gone);
        if (beforeInitialize)
          this.startFailed(`the command ${describeExit(exit)} before answering initialize`);
      },
    });
    this.live.add(child);
    if (this.options.isolation === 'user') this.userChildren.set(identity?.user, child);
    try {
      await child.started;
    } catch (error) {
      this.forget(child);
      const reason = (error as Error).message;
      this.startFailed(reason);
      throw this.startRefusal(reason);
    }
    return child;
  }

  private forget(child: BridgeChild): void {
    if (!this.live.delete(child)) return;
    this.options.processes.release();
    if (this.userChildren.get(child.user) === child) this.userChildren.delete(child.user);
  }

  private startFailed(reason: string): void {
    this.backoff.failed(reason);
    this.options.logger.warn(
      {
        server: this.options.server,
        reason,
        retryAt: new Date(this.backoff.lastFailure()!.retryAt).toISOString(),
      },
      'stdio server failed to start; backing off',
    );
  }

  private startRefusal(reason: string, retryAt = this.backoff.lastFailure()?.retryAt ?? Date.now()): Refusal {
    const seconds = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
    return new Refusal({
      status: 503,
      error: 'server_start_failed',
      description: `the stdio MCP server could not be started (${reason}); the next attempt is in ${seconds} s`,
      headers: [['retry-after', String(seconds)]],
    });
  }

  private identity(req: IncomingMessage, user: string | undefined): StdioIdentity | undefined {
    if (user === undefined) return undefined;
    const { email, groups } = this.options.identityHeaders;
    const emailValue = this.header(req, email);
    const groupList = (this.header(req, groups) ?? '')
      .split(',')
      .map((group) => group.trim())
      .filter(Boolean);
    return { user, ...(emailValue ? { email: emailValue } : {}), groups: groupList };
  }

  private header(req: IncomingMessage, name: string): string | undefined {
    const value = req.headers[name.toLowerCase()];
    const first = Array.isArray(value) ? value[0] : value;
    return first === undefined || first === '' ? undefined : first;
  }
}

function jsonRpcError(res: ServerResponse, status: number, code: number, message: string): void {
  sendJson(res, status, { jsonrpc: '2.0', error: { code, message }, id: null });
}

/**
 * Why the command's program cannot run, checked once at start so /health says so before any
 * client tries: not on the child's PATH, or (a path) not an executable file. Undefined if fine.
 */
function missingProgram(command: readonly string[], path: string): string | undefined {
  const program = command[0];
  if (!program) return 'the stdio command is empty';
  const executable = (file: string): boolean => {
    try {
      accessSync(file, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (program.includes('/'))
    return executable(resolve(program)) ? undefined : `command not found: ${program}`;
  const found = path
    .split(delimiter)
    .filter(Boolean)
    .some((dir) => executable(join(dir, program)));
  return found ? undefined : `command not found: ${program} (not on PATH)`;
}
