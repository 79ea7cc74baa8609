import { connect } from 'node:net';
import type { BreakerState } from '../proxy/breaker.js';

/** One MCP server's check: whether its backend listens (or its stdio command can start). */
export interface TargetHealth {
  status: 'healthy' | 'unhealthy';
  error?: string;
  circuit_breaker?: BreakerState;
  /** A stdio server: its children alive now. */
  processes?: number;
}

export interface HealthReport {
  status: 'healthy' | 'unhealthy';
  checks: {
    /** The single target (no `servers:`). */
    proxy_target?: TargetHealth;
    /** With `servers:`: each server by name. */
    servers?: Record<string, TargetHealth>;
    session_store: { status: 'healthy' | 'unhealthy'; active_sessions: number; error?: string };
    /** Present in AUTH_MODE=oidc: whether the upstream provider was discovered. */
    identity_provider?: { status: 'healthy' | 'unhealthy'; error?: string };
  };
}

export interface HealthSources {
  /** Each server's check, by name, in configuration order. */
  targets: (timeoutMs: number) => Promise<Array<[string, TargetHealth]>>;
  /** True without `servers:` (the one target reported as `proxy_target`). */
  singleTarget: () => boolean;
  activeSessions: () => Promise<number>;
  /** Why the identity provider is not usable, or undefined when it is (oidc mode only). */
  identityProviderProblem?: () => string | undefined;
  timeoutMs?: number;
}

/** Opens (and closes) a TCP connection to the target: the cheapest check that it listens. */
export function probeTcp(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: host.replace(/^\[|\]$/g, ''), port });
    const done = (error?: string): void => {
      socket.destroy();
      resolve(error);
    };
    socket.setTimeout(timeoutMs, () => done('connect timeout'));
    socket.once('connect', () => done());
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

/**
 * `/health` in the seed's shape. Concurrent callers share one probe, and a result is
 * reused for a second, so a busy load balancer cannot turn health checks into load.
 *
 * With several servers, the proxy is unhealthy (503) only when none of them is healthy: one
 * server down leaves the others serving, so a load balancer must not take the whole proxy out
 * of rotation; each server's state is under `checks.servers`.
 */
export class HealthChecker {
  private cached: { at: number; report: Promise<HealthReport> } | undefined;

  constructor(private readonly sources: HealthSources) {}

  check(): Promise<HealthReport> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < 1000) return this.cached.report;
    const report = this.run();
    this.cached = { at: now, report };
    return report;
  }

  private async run(): Promise<HealthReport> {
    const s = this.sources;
    const [targets, sessions] = await Promise.all([
      s.targets(s.timeoutMs ?? 2000),
      s.activeSessions().then(
        (n) => ({ n, error: undefined as string | undefined }),
        (err: Error) => ({ n: 0, error: err.message }),
      ),
    ]);
    const store: HealthReport['checks']['session_store'] = {
      status: sessions.error ? 'unhealthy' : 'healthy',
      active_sessions: sessions.n,
    };
    if (sessions.error) store.error = sessions.error;
    // The seed's order: the target first.
    const checks: HealthReport['checks'] = s.singleTarget()
      ? { proxy_target: targets[0]?.[1], session_store: store }
      : { servers: Object.fromEntries(targets), session_store: store };
    let healthy = targets.some(([, target]) => target.status === 'healthy') && !sessions.error;
    if (s.identityProviderProblem) {
      const problem = s.identityProviderProblem();
      checks.identity_provider = problem ? { status: 'unhealthy', error: problem } : { status: 'healthy' };
      healthy &&= !problem;
    }
    return { status: healthy ? 'healthy' : 'unhealthy', checks };
  }
}
