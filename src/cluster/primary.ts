/**
 * The primary process of SERVER_WORKERS > 1. It serves nothing itself: it forks the workers
 * (node:cluster, sharing the listen port), starts a worker again when one dies, passes SIGHUP
 * and SIGTERM/SIGINT on to every worker, and gathers the workers' metrics for /metrics.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../observability/logger.js';
import { AggregatorRegistry } from '../observability/prom-client.js';
import { StartBackoff } from '../stdio/start-backoff.js';
import { type MetricsReply, messageOf, type ReloadOrder, type ShutdownOrder } from './messages.js';

/** A worker that dies sooner than this after its start counts as failing to start: backoff. */
const STABLE_AFTER_MS = 10_000;

/** Beyond SHUTDOWN_TIMEOUT, what a worker gets to close its store and stdio children and exit. */
export const SHUTDOWN_MARGIN_MS = 5000;

export interface PrimaryOptions {
  workers: number;
  logger: Logger;
  /** SESSION_SECRET as configured; without one, the primary makes one for all its workers. */
  sessionSecret: string | undefined;
  /** SHUTDOWN_TIMEOUT now (reloadable: read on every shutdown). */
  shutdownTimeoutMs: () => number;
}

interface Running {
  worker: Worker;
  startedAt: number;
  listening: boolean;
}

/**
 * Forks the workers and runs them until SIGTERM/SIGINT. Resolves with the exit code: 0 when
 * every worker shut down within the deadline, 1 when one had to be killed, or the code of a
 * worker that exited before all of them first listened (a port in use, say: as a single
 * process would).
 */
export function runPrimary(options: PrimaryOptions): Promise<number> {
  return new WorkerPool(options).run();
}

class WorkerPool {
  private readonly running = new Map<number, Running>();
  private readonly backoff = new StartBackoff();
  private readonly restarts = new Set<NodeJS.Timeout>();
  /** Handed to every worker: the configured SESSION_SECRET, or one made here. */
  private readonly sessionSecret: string;
  private started = false;
  /** Set once shutting down: the exit code so far (0 until a worker fails or is killed). */
  private stopping: { exitCode: number } | undefined;
  private finish: (code: number) => void = () => {};

  constructor(private readonly options: PrimaryOptions) {
    // Passed on even when configured: a worker started again later reads the --config file
    // as it is then, and a changed secret there would split the workers' sessions.
    this.sessionSecret = options.sessionSecret ?? randomBytes(48).toString('base64url');
    if (!options.sessionSecret)
      options.logger.warn(
        'SESSION_SECRET is not set: the workers share a random key made at start, so sessions end when the proxy restarts',
      );
  }

  run(): Promise<number> {
    const done = new Promise<number>((resolve) => {
      this.finish = resolve;
    });
    this.gatherMetrics();
    process.on('SIGHUP', () => this.reload());
    process.on('SIGTERM', () => this.stop('SIGTERM'));
    process.on('SIGINT', () => this.stop('SIGINT'));
    this.options.logger.info({ workers: this.options.workers }, 'starting the workers');
    for (let i = 0; i < this.options.workers; i++) this.fork();
    return done;
  }

  private fork(): void {
    // The environment carries the secret, never the command line (visible to every user in ps).
    const worker = cluster.fork({ SESSION_SECRET: this.sessionSecret });
    const entry: Running = { worker, startedAt: Date.now(), listening: false };
    this.running.set(worker.id, entry);
    worker.once('listening', () => {
      entry.listening = true;
      if (!this.started && [...this.running.values()].every((r) => r.listening)) {
        this.started = true;
        this.options.logger.info({ worker_pids: this.pids() }, 'every worker listens');
      }
    });
    worker.once('exit', (code, signal) => this.exited(entry, code, signal));
  }

  private exited(entry: Running, code: number | null, signal: string | null): void {
    const { worker, startedAt } = entry;
    this.running.delete(worker.id);
    const pid = worker.process.pid;
    if (this.stopping) {
      // SIGTERM is how a worker that was still starting is stopped.
      if (code !== 0 && signal !== 'SIGTERM') {
        this.options.logger.warn(
          { worker_pid: pid, exit_code: code, signal },
          'worker exited while shutting down',
        );
        this.stopping.exitCode ||= 1;
      }
      if (this.running.size === 0) this.exit(this.stopping.exitCode);
      return;
    }
    if (!this.started) {
      // Every worker fails the same way at start (port in use, store unreachable...): stop
      // and report it, as a single process would, rather than restart forever.
      this.options.logger.error(
        { worker_pid: pid, exit_code: code, signal },
        'a worker exited while starting: stopping',
      );
      this.stop('start failure', code || 1);
      return;
    }
    if (Date.now() - startedAt < STABLE_AFTER_MS) this.backoff.failed(`exit ${signal ?? code}`);
    else this.backoff.succeeded();
    const delayMs = Math.max(0, (this.backoff.waiting()?.retryAt ?? 0) - Date.now());
    this.options.logger.error(
      { worker_pid: pid, exit_code: code, signal, restart_in_ms: delayMs },
      'worker exited: starting another',
    );
    const timer = setTimeout(() => {
      this.restarts.delete(timer);
      this.fork();
    }, delayMs);
    this.restarts.add(timer);
  }

  /** SIGHUP: every worker re-reads the --config file and logs its own result. */
  private reload(): void {
    this.options.logger.info({ worker_pids: this.pids() }, 'SIGHUP: every worker reloads the configuration');
    const order: ReloadOrder = { type: 'mcp-oidc-proxy:reload' };
    // A worker still starting reads the file anyway; it would not understand the order yet.
    for (const { worker, listening } of this.running.values()) if (listening) send(worker, order);
  }

  /**
   * Graceful shutdown of every worker; a second signal (or the deadline) kills the ones
   * left. `exitCode` replaces the 0 of a clean shutdown (a start failure's code).
   */
  private stop(signal: string, exitCode = 0): void {
    const { logger } = this.options;
    if (this.stopping) {
      if (signal === 'SIGTERM' || signal === 'SIGINT') {
        logger.warn({ signal }, 'second signal: killing the workers');
        this.kill();
      }
      return;
    }
    this.stopping = { exitCode };
    for (const timer of this.restarts) clearTimeout(timer);
    this.restarts.clear();
    const deadlineMs = this.options.shutdownTimeoutMs() + SHUTDOWN_MARGIN_MS;
    logger.info({ signal, worker_pids: this.pids(), deadline_ms: deadlineMs }, 'shutting down the workers');
    if (this.running.size === 0) return this.exit(exitCode);
    const order: ShutdownOrder = { type: 'mcp-oidc-proxy:shutdown' };
    for (const { worker, listening } of this.running.values()) {
      // A worker that does not listen yet has nothing in flight, nor a handler for the order.
      if (listening) send(worker, order);
      else worker.process.kill('SIGTERM');
    }
    setTimeout(() => {
      logger.warn(
        { worker_pids: this.pids() },
        'workers still running at the shutdown deadline: killing them',
      );
      this.kill();
    }, deadlineMs).unref();
  }

  private kill(): void {
    if (this.stopping) this.stopping.exitCode ||= 1;
    for (const { worker } of this.running.values()) worker.process.kill('SIGKILL');
  }

  private exit(code: number): void {
    this.options.logger.info({ exit_code: code }, 'every worker exited');
    this.finish(code);
  }

  /**
   * A worker that receives a scrape asks here; prom-client's AggregatorRegistry then asks every
   * worker for its registry and aggregates them (each metric's `aggregator`: sum by default).
   */
  private gatherMetrics(): void {
    const aggregator = new AggregatorRegistry();
    cluster.on('message', (worker: Worker, message: unknown) => {
      const request = messageOf(message, 'mcp-oidc-proxy:metrics-request');
      if (!request) return;
      const reply = (answer: Omit<MetricsReply, 'type' | 'id'>): void =>
        send(worker, { type: 'mcp-oidc-proxy:metrics-reply', id: request.id, ...answer });
      aggregator.clusterMetrics().then(
        (metrics) => reply({ metrics }),
        (err: Error) => reply({ error: err.message }),
      );
    });
  }

  private pids(): Array<number | undefined> {
    return [...this.running.values()].map((r) => r.worker.process.pid);
  }
}

/** Sends unless the worker's channel is already closed (it is exiting: its exit is handled). */
function send(worker: Worker, message: MetricsReply | ReloadOrder | ShutdownOrder): void {
  if (worker.isConnected()) worker.send(message);
}
