import { isDeepStrictEqual } from 'node:util';
import type { Config, ServerConfig } from '../config/types.js';
import { probeTcp, type TargetHealth } from '../observability/health.js';
import type { Logger } from '../observability/logger.js';
import { BREAKER_STATE_VALUE, type Metrics } from '../observability/metrics.js';
import { CircuitBreaker } from '../proxy/breaker.js';
import { Forwarder, type ForwardOptions, type StreamRegistry } from '../proxy/forward.js';
import { createUpstream, type Upstream } from '../proxy/upstream.js';
import type { StdioBridge } from '../stdio/bridge.js';
import { ProcessBudget } from '../stdio/budget.js';
import { childEnvironment } from '../stdio/environment.js';
import { createStdioMetrics, type StdioMetrics } from '../stdio/metrics.js';
import { OrphanReaper } from '../stdio/reaper.js';

/**
 * One MCP server behind the proxy, as the request path uses it: where its requests go (a pool to
 * an HTTP backend, or to the stdio bridge's socket), its circuit breaker, its forwarder.
 */
export interface Backend {
  /** Replaced by a reload that changes only its rules or allow-lists; the pool stays. */
  server: ServerConfig;
  readonly upstream: Upstream;
  readonly breaker: CircuitBreaker;
  /** Rebuilt when a reload changes the response headers; a request keeps the one it started with. */
  forwarder: Forwarder;
  /** The stdio bridge of a command server. */
  readonly bridge: StdioBridge | undefined;
}

export interface BackendsOptions {
  config: Config;
  logger: Logger;
  metrics: Metrics;
  streams: StreamRegistry;
  /** The forwarders' options, read whenever one is built (a reload may have changed them). */
  forwardOptions: () => ForwardOptions;
}

/** What every stdio server of the proxy shares: the process cap, the orphan reaper, the metrics. */
interface StdioRuntime {
  processes: ProcessBudget;
  reaper: OrphanReaper;
  metrics: StdioMetrics;
}

/**
 * The MCP servers behind the proxy: which one a path belongs to, and their lifecycle across
 * reloads (an unchanged server keeps its pool, breaker, children and live streams; a changed or
 * removed one finishes what it carries, then closes).
 */
export class Backends {
  private list: Backend[] = [];
  private singleTarget = true;
  private stdio: StdioRuntime | undefined;
  /** Pools and bridges a reload replaced, closing once their last request or stream ends. */
  private readonly retiring = new Set<Promise<void>>();

  private constructor(private readonly options: BackendsOptions) {}

  static async start(options: BackendsOptions): Promise<Backends> {
    const backends = new Backends(options);
    try {
      await backends.apply(options.config);
    } catch (error) {
      await backends.close(0);
      throw error;
    }
    return backends;
  }

  all(): readonly Backend[] {
    return this.list;
  }

  /**
   * The server a public path belongs to: with several, the one whose path is the path or a
   * parent of it (none: undefined, a 404); the single target takes every path.
   */
  match(path: string): Backend | undefined {
    if (this.singleTarget) return this.list[0];
    let best: Backend | undefined;
    for (const backend of this.list) {
      const prefix = backend.server.path;
      const owns =
        prefix === '/' || path === prefix || (path.startsWith(prefix) && path[prefix.length] === '/');
      if (owns && (best === undefined || prefix.length > best.server.path.length)) best = backend;
    }
    return best;
  }

  /**
   * The request target the backend gets for a public path and query: the path unchanged for the
   * single target (its URL's path prefix goes before it), else the part below the server's path
   * (its URL's path goes before that).
   */
  target(backend: Backend, path: string, search: string): string {
    if (this.singleTarget) return path + search;
    const prefix = backend.server.path;
    const rest = prefix === '/' ? path : path.slice(prefix.length);
    return (rest === '' && backend.upstream.prefix === '' ? '/' : rest) + search;
  }

  /**
   * Takes over the servers of a (reloaded) configuration: unchanged servers stay as they are,
   * new ones start, changed and removed ones retire. Throws when a new stdio server cannot be
   * set up; the running servers are then left as they were.
   */
  async apply(config: Config): Promise<void> {
    const running = new Map(this.list.map((backend) => [backend.server.name, backend]));
    // Unchanged servers take their new rules and allow-lists at once (synchronously: the next
    // request sees them); only new and changed servers wait for their backend to start.
    const kept = new Set<Backend>();
    for (const server of config.servers) {
      const current = running.get(server.name);
      if (current && sameConnection(current, server, config)) {
        current.server = server;
        kept.add(current);
      }
    }
    const next: Backend[] = [];
    const started: Backend[] = [];
    try {
      for (const server of config.servers) {
        const current = running.get(server.name);
        if (current && kept.has(current)) next.push(current);
        else {
          const backend = await this.build(server, config);
          started.push(backend);
          next.push(backend);
        }
      }
    } catch (error) {
      for (const backend of started) this.retire(backend, 0);
      throw error;
    }
    this.list = next;
    this.singleTarget = config.singleTarget;
    for (const backend of running.values()) {
      if (!kept.has(backend)) this.retire(backend, config.server.shutdownTimeoutMs);
    }
  }

  /**
   * A reload changed settings every server uses: new breaker thresholds for the HTTP servers,
   * new forwarders (response headers, timeouts) for all.
   */
  settingsChanged(): void {
    const { target, stdio } = this.options.config;
    if (this.stdio) this.stdio.processes.max = stdio.maxProcesses;
    for (const backend of this.list) {
      if (!backend.bridge) {
        const settings = { threshold: target.breakerThreshold, resetMs: target.breakerResetMs };
        backend.breaker.reconfigure(settings, false);
      }
      backend.forwarder = new Forwarder(
        backend.upstream,
        backend.breaker,
        this.options.forwardOptions(),
        this.options.streams,
      );
    }
  }

  /** Each server's health, by name, in configuration order. */
  async health(timeoutMs = 2000): Promise<Array<[string, TargetHealth]>> {
    return Promise.all(
      this.list.map(async (backend): Promise<[string, TargetHealth]> => {
        return [backend.server.name, await backendHealth(backend, timeoutMs)];
      }),
    );
  }

  /** Shutdown: every pool closes (after its requests, within the deadline), every child ends. */
  async close(deadlineMs: number): Promise<void> {
    const list = this.list;
    this.list = [];
    for (const backend of list) this.retire(backend, deadlineMs);
    await Promise.all([...this.retiring]);
    this.stdio?.reaper.close();
  }

  private async build(server: ServerConfig, config: Config): Promise<Backend> {
    const { logger, metrics } = this.options;
    const { target } = server;
    const breakerLog = (state: string): void => {
      metrics.breakerState.set({ server: server.name }, BREAKER_STATE_VALUE[state as 'open']);
      const log = state === 'open' ? logger.error.bind(logger) : logger.info.bind(logger);
      log({ breaker: state, server: server.name }, `circuit breaker ${state.replace('_', '-')}`);
    };
    let bridge: StdioBridge | undefined;
    let upstream: Upstream;
    let breaker: CircuitBreaker;
    if (target.kind === 'url') {
      upstream = createUpstream(target.url, config.target);
      breaker = new CircuitBreaker({
        threshold: config.target.breakerThreshold,
        resetMs: config.target.breakerResetMs,
        onStateChange: breakerLog,
      });
    } else {
      bridge = await this.startBridge(server, target, config);
      upstream = createUpstream(new URL('http://localhost'), config.target, bridge.socketPath);
      // The bridge is a local process: its 503s (process cap, a command failing at start) are
      // answers, not an outage to stop sending requests for (threshold 0: no breaker).
      breaker = new CircuitBreaker({ threshold: 0, resetMs: config.target.breakerResetMs });
    }
    metrics.breakerState.set({ server: server.name }, 0);
    const forwarder = new Forwarder(upstream, breaker, this.options.forwardOptions(), this.options.streams);
    return { server, upstream, breaker, forwarder, bridge };
  }

  private async startBridge(
    server: ServerConfig,
    target: Extract<ServerConfig['target'], { kind: 'command' }>,
    config: Config,
  ): Promise<StdioBridge> {
    // Loaded on demand: the bridge brings the MCP SDK (its Streamable HTTP transport, zod
    // schemas), which only a command server needs; a proxy in front of HTTP servers never loads it.
    const { StdioBridge } = await import('../stdio/bridge.js');
    const { logger, metrics } = this.options;
    this.stdio ??= {
      processes: new ProcessBudget(config.stdio.maxProcesses),
      reaper: OrphanReaper.start(),
      metrics: createStdioMetrics(metrics.registry),
    };
    const secretValues = proxySecrets(config);
    const warned = new Set<string>();
    const environment = (identity: { user: string; email?: string; groups: string[] } | undefined) => {
      const { env, withheld } = childEnvironment({
        parent: process.env,
        allowed: config.stdio.env,
        secretValues,
        identity,
      });
      for (const name of withheld) {
        if (warned.has(name)) continue;
        warned.add(name);
        logger.warn(
          { server: server.name, variable: name },
          `${name} is not passed to the stdio server: its value holds one of the proxy's secrets`,
        );
      }
      return env;
    };
    return StdioBridge.start({
      server: server.name,
      command: target.command,
      isolation: target.isolation,
      environment,
      // Read at each spawn: a reload's STDIO_IDLE_TIMEOUT applies to the children started after it.
      get idleTimeoutMs() {
        return config.stdio.idleTimeoutMs;
      },
      processes: this.stdio.processes,
      identityHeaders: config.auth.identityHeaders,
      logger,
      metrics: this.stdio.metrics,
      reaper: this.stdio.reaper,
    });
  }

  private retire(backend: Backend, deadlineMs: number): void {
    const { pool } = backend.upstream;
    const closing: Promise<void> = Promise.all([
      pool.close().catch(() => pool.destroy()),
      backend.bridge?.close(deadlineMs),
    ])
      .then(() => undefined)
      .finally(() => this.retiring.delete(closing));
    this.retiring.add(closing);
  }
}

/** A server as the start-up log line shows it: name, path, and its URL or command. */
export function describeServer(server: ServerConfig): Record<string, string> {
  const { target } = server;
  const where: Record<string, string> =
    target.kind === 'url' ? { url: target.url.href } : { command: target.command.join(' ') };
  return { name: server.name, path: server.path, ...where };
}

/** Whether a reloaded server still goes where the running one does, the same way. */
function sameConnection(backend: Backend, next: ServerConfig, config: Config): boolean {
  const current = backend.server;
  if (current.path !== next.path || !isDeepStrictEqual(current.target, next.target)) return false;
  // The pool's timeouts and CA come from the PROXY_* settings: a change builds a new pool.
  return next.target.kind === 'command' || backend.upstream.settings === JSON.stringify(config.target);
}

async function backendHealth(backend: Backend, timeoutMs: number): Promise<TargetHealth> {
  if (backend.bridge) {
    const { status, error, processes } = backend.bridge.health();
    return { status, ...(error ? { error } : {}), processes };
  }
  const { target } = backend.server;
  const url = target.kind === 'url' ? target.url : new URL('http://localhost');
  const port = Number(url.port) || (url.protocol === 'https:' ? 443 : 80);
  const unreachable = await probeTcp(url.hostname, port, timeoutMs);
  const breaker = backend.breaker.state;
  const health: TargetHealth = {
    status: unreachable === undefined && breaker !== 'open' ? 'healthy' : 'unhealthy',
  };
  if (unreachable) health.error = `target not reachable: ${unreachable}`;
  else if (breaker === 'open') health.error = 'circuit breaker open';
  if (breaker !== 'closed') health.circuit_breaker = breaker;
  return health;
}

/**
 * The values no stdio child may see, whatever variable would carry them: the session secret,
 * the OIDC client secret, the admin token, the Redis password, pre-registered clients' secrets,
 * the tracing exporter's header values.
 */
function proxySecrets(config: Config): string[] {
  const secrets = [
    config.session.secret,
    config.auth.oidc.clientSecret,
    config.admin.token,
    ...config.auth.mcpClients.preRegistered.map((client) => client.clientSecret),
  ];
  try {
    const redis = new URL(config.session.redisUrl);
    secrets.push(decoded(redis.password), redis.password);
  } catch {}
  for (const name of ['OTEL_EXPORTER_OTLP_HEADERS', 'OTEL_EXPORTER_OTLP_TRACES_HEADERS', 'TRACING_HEADERS']) {
    for (const pair of (process.env[name] ?? '').split(',')) {
      const value = pair.slice(pair.indexOf('=') + 1).trim();
      if (pair.includes('=') && value) secrets.push(value, decoded(value), ...credentials(decoded(value)));
    }
  }
  return [...new Set(secrets.filter((s): s is string => typeof s === 'string' && s !== ''))];
}

/**
 * The credentials of an authorization header value (`Bearer abc` → `abc`): the token alone is
 * the secret, and a variable holding just the token would not contain the whole header value.
 */
function credentials(headerValue: string): string[] {
  const match = /^[A-Za-z][\w.+-]*\s+(\S.*)$/.exec(headerValue);
  return match?.[1] ? [match[1].trim()] : [];
}

function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
